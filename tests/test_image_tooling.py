"""make image's pieces that need no container tool: pip sources, command lines, limits."""

from __future__ import annotations

import configparser
import resource
from pathlib import Path

from toolkit.deploy.image import (
    ContainerTool,
    base_containerfile,
    build_command,
    pip_sources,
    pip_volumes,
    ulimit_options,
)

PODMAN = ContainerTool("podman", "/usr/bin/podman", ("--runtime", "/usr/sbin/runc"), ("--ulimit", "nofile=4096:4096"))


def test_pip_sources_become_a_pip_conf_and_read_only_mounts(tmp_path: Path) -> None:
    index = tmp_path / "pypi" / "simple"
    index.mkdir(parents=True)
    wheels = tmp_path / "wheels"
    (wheels / "sub").mkdir(parents=True)
    cert = tmp_path / "ca.crt"
    cert.write_text("x")
    listing = "\n".join(
        [
            f":env:.find-links='{wheels}'",
            "global.find-links='/somewhere/else'",
            f"global.extra-index-url='file://{index} https://example.org/simple'",
            f"global.cert='{cert}'",
            "global.default-timeout='180'",
            f"install.find-links='{wheels / 'sub'}'",
            "not a setting",
        ]
    )
    sources = pip_sources(listing)
    config = configparser.ConfigParser(interpolation=None)
    config.read_string(sources.config_text)
    assert config["global"]["find-links"] == str(wheels), "the environment's value wins, as in pip"
    assert config["global"]["extra-index-url"] == f"file://{index} https://example.org/simple"
    assert config["global"]["default-timeout"] == "180" and config["install"]["find-links"] == str(wheels / "sub")
    # The index's parent (its files sit beside simple/), the cert; wheels/sub is inside wheels; no URLs.
    assert sources.mounts == tuple(sorted([tmp_path / "pypi", wheels, cert]))
    assert pip_volumes(sources, Path("/tmp/p.conf"))[0] == "/tmp/p.conf:/etc/pip.conf:ro"
    assert f"{cert}:{cert}:ro" in pip_volumes(sources, Path("/tmp/p.conf"))


def test_no_pip_configuration_gives_an_empty_conf() -> None:
    assert pip_sources("").mounts == ()


def test_podman_builds_in_docker_format_with_its_limits() -> None:
    command = build_command(PODMAN, "t", {"MODEL": "demo"}, ["/a:/a:ro"], "deps", Path("/ctx"))
    assert command[:3] == ["/usr/bin/podman", "--runtime", "/usr/sbin/runc"]
    assert command[3:] == [
        "build",
        "-t",
        "t",
        "--ulimit",
        "nofile=4096:4096",
        "--format",
        "docker",
        "-v",
        "/a:/a:ro",
        "--target",
        "deps",
        "--build-arg",
        "MODEL=demo",
        "/ctx",
    ]
    docker = build_command(ContainerTool("docker", "docker"), "t", {}, context=Path("/ctx"))
    assert docker == ["docker", "build", "-t", "t", "/ctx"]


def test_ulimits_stay_within_the_hard_limits() -> None:
    options = ulimit_options()
    values = dict(option.split("=") for option in options[1::2])
    for name, limit in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, hard = (int(part) for part in values[name].split(":"))
        assert soft == hard and (
            resource.getrlimit(limit)[1] == resource.RLIM_INFINITY or hard <= resource.getrlimit(limit)[1]
        )


def test_local_base_adds_what_the_dockerfile_needs() -> None:
    text = base_containerfile("localhost/minbase")
    assert text.startswith("FROM localhost/minbase\n")
    assert all(package in text for package in ("python3-venv", "python-is-python3", "ca-certificates"))
