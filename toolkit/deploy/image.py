"""Build and run this project's image: Docker where an engine answers, else podman.

What a machine without Docker needs (seen on this project's machines, 2026-11):

- podman runs containers with ``runc`` (``crun`` fails on hybrid cgroups there), and the sandbox
  cannot raise resource limits, so every ``run`` and ``build`` passes explicit ulimits at or below
  the current hard limits.
- podman writes OCI images by default, which drop ``HEALTHCHECK``: builds use ``--format docker``.
- Without a reachable registry the base image is made locally: ``debootstrap --variant=minbase
  bookworm``, imported, plus Debian's python3 (see :func:`ensure_local_base`).
- pip inside the build has none of the machine's pip configuration. :func:`pip_sources` turns
  ``pip config list`` into a pip.conf and the folders it names, mounted read-only (podman build
  volumes) into the build of the ``deps`` stage only. Build volumes apply to every ``RUN`` and
  leave their empty mount points in each layer, so the image itself is built in a second pass
  without them, reusing the cached ``deps`` stage (the layer cache ignores volumes): the final
  image holds nothing of this machine.

Nothing here changes the Dockerfile: ``docker build .`` with the public base stays the plain path.
"""

from __future__ import annotations

import ast
import configparser
import dataclasses
import hashlib
import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from toolkit import REPO_ROOT
from toolkit.errors import ToolkitError

LOCAL_BASE = "localhost/instructor-base:bookworm"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
# What the Dockerfile's stages need from a base: python (3.11 in bookworm) with venv, and CA certificates.
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
PUBLIC_REGISTRY_PROBE = "https://registry-1.docker.io/v2/"
TORCH_INDEX_PROBE = "https://download.pytorch.org/whl/cpu/"
# Where the build reads the machine's pip configuration (pip's site-wide config file on Linux).
PIP_CONF_IN_BUILD = "/etc/pip.conf"
# The Dockerfile's stage that runs pip (the only one given the machine's pip sources).
PIP_STAGE = "deps"
# Open files and processes for podman's containers: enough for TorchServe, and at or below the hard
# limits a sandbox allows (here a shell reports 96365 processes, yet runc may set no more than 32768).
ULIMIT_CAP = 4096


class ImageError(ToolkitError):
    """No docker or podman, no base image, or a failed build; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class ContainerTool:
    """Docker or podman (the command line that drives a container engine) and the options this machine needs for it."""

    name: str
    executable: str
    global_options: tuple[str, ...] = ()
    limit_options: tuple[str, ...] = ()

    def command(self, *args: str) -> list[str]:
        """``engine [global options] args...``."""
        return [self.executable, *self.global_options, *args]

    def call(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``engine args...`` and capture its output; :class:`ImageError` on failure when ``check``."""
        result = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise ImageError(f"{self.name} {' '.join(args[:2])} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def image_exists(self, image: str) -> bool:
        return self.call("image", "inspect", image, check=False, timeout=60).returncode == 0


def _answers(executable: str) -> tuple[bool, str]:
    try:
        result = subprocess.run([executable, "info"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as err:
        return False, str(err)
    lines = (result.stderr or result.stdout).strip().splitlines()
    return result.returncode == 0, lines[-1] if lines else ""


def ulimit_options() -> tuple[str, ...]:
    """``--ulimit`` for open files and processes: :data:`ULIMIT_CAP`, or the hard limit when that is lower."""
    options: list[str] = []
    for name, limit in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        hard = resource.getrlimit(limit)[1]
        value = ULIMIT_CAP if hard == resource.RLIM_INFINITY else min(hard, ULIMIT_CAP)
        options += ["--ulimit", f"{name}={value}:{value}"]
    return tuple(options)


def find_container_tool() -> ContainerTool:
    """Docker when its engine answers ``docker info``, else podman (with runc and explicit ulimits).

    Raises:
        ImageError: neither answers; the message says why for each.
    """
    reasons = []
    docker = shutil.which("docker")
    if docker:
        ok, why = _answers(docker)
        if ok:
            return ContainerTool("docker", docker)
        reasons.append(f"docker: installed, but no engine answers ({why})")
    else:
        reasons.append("docker: not installed")
    podman = shutil.which("podman")
    if podman:
        ok, why = _answers(podman)
        if ok:
            runc = shutil.which("runc")
            runtime = ("--runtime", runc) if runc else ()
            return ContainerTool("podman", podman, runtime, ulimit_options())
        reasons.append(f"podman: installed, but `podman info` fails ({why})")
    else:
        reasons.append("podman: not installed (Debian: apt-get install podman runc debootstrap)")
    raise ImageError("no container engine (docker or podman): " + "; ".join(reasons))


def reachable(url: str, timeout_s: float = 5.0) -> bool:
    """Whether ``url`` answers at all (any HTTP status counts: the host resolves and accepts connections)."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s).close()
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False
    return True


@dataclasses.dataclass(frozen=True)
class PipSources:
    """The machine's pip configuration for the build: a pip.conf and the local paths it names."""

    config_text: str
    mounts: tuple[Path, ...]


def _local_paths(key: str, value: str) -> list[Path]:
    """Local files and folders a pip option names; for a ``file://`` index its parent (PEP 503 files sit beside it)."""
    paths = []
    for token in value.split():
        is_url = token.startswith("file://")
        path = Path(urllib.parse.urlparse(token).path) if is_url else Path(token)
        if not path.is_absolute() or not path.exists():
            continue
        paths.append(path.parent if is_url and key.endswith("index-url") else path)
    return paths


def pip_sources(config_list: str) -> PipSources:
    """A pip.conf from ``pip config list`` output (``section.key='value'``; ``:env:`` entries win) and its paths."""
    sections: dict[str, dict[str, str]] = {}
    env_values: dict[str, str] = {}
    for line in config_list.splitlines():
        name, sep, raw = line.partition("=")
        if not sep or "." not in name:
            continue
        section, key = name.rsplit(".", 1)
        value = str(ast.literal_eval(raw.strip()))
        if section == ":env:":
            env_values[key] = value
        else:
            sections.setdefault(section, {})[key] = value
    sections.setdefault("global", {}).update(env_values)
    parser = configparser.ConfigParser(interpolation=None)
    mounts: list[Path] = []
    for section, values in sections.items():
        parser[section] = values
        for key, value in values.items():
            mounts += _local_paths(key, value)
    text = io.StringIO()
    parser.write(text)
    unique = sorted(set(mounts))
    outermost = [path for path in unique if not any(other in path.parents for other in unique)]
    return PipSources(text.getvalue(), tuple(outermost))


def machine_pip_sources() -> PipSources:
    """:func:`pip_sources` of this machine's pip (``python -m pip config list``)."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60, check=False
    )
    return pip_sources(result.stdout if result.returncode == 0 else "")


# What Debian's own container images set (/etc/apt/apt.conf.d/docker-clean): no package caches
# left in layers (about 80 MB per apt-get layer without it).
APT_DOCKER_CLEAN = (
    'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb '
    '/var/cache/apt/*.bin || true"; }; APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
    '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; }; '
    'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";'
)


BASE_RECIPE_LABEL = "instructor.base.recipe"


def base_recipe() -> str:
    """A digest of how the local base is made: a base made by another recipe is made again."""
    recipe = "\n".join([DEBIAN_SUITE, "minbase", APT_DOCKER_CLEAN, *BASE_PACKAGES])
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def base_containerfile(minbase: str) -> str:
    """The layer that turns a debootstrapped Debian into what the Dockerfile's ``PYTHON_IMAGE`` must be."""
    packages = " ".join(BASE_PACKAGES)
    return (
        f"FROM {minbase}\n"
        f'LABEL {BASE_RECIPE_LABEL}="{base_recipe()}"\n'
        f"RUN echo '{APT_DOCKER_CLEAN}' > /etc/apt/apt.conf.d/docker-clean "
        f"&& apt-get update && apt-get install -y --no-install-recommends {packages} "
        "&& rm -rf /var/lib/apt/lists/*\n"
    )


def ensure_local_base(
    tool: ContainerTool, tag: str = LOCAL_BASE, rebuild: bool = False, log: io.TextIOBase | None = None
) -> str:
    """A Debian bookworm base with python3 made from Debian's packages; reused once made on this machine.

    Raises:
        ImageError: it must be made and this process is not root or has no debootstrap.
    """
    if not rebuild and tool.image_exists(tag):
        label = f'{{{{index .Config.Labels "{BASE_RECIPE_LABEL}"}}}}'
        if tool.call("image", "inspect", "--format", label, tag).stdout.strip() == base_recipe():
            return tag
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None or os.geteuid() != 0:
        raise ImageError(f"making {tag} needs root and debootstrap (apt-get install debootstrap)")
    out = log or sys.stdout
    minbase = f"{tag}-minbase"
    with tempfile.TemporaryDirectory(prefix="instructor-base-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        _stream([debootstrap, "--variant=minbase", DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR], out)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        _stream(tool.command("import", "-", minbase), out, stdin=tar.stdout)
        if tar.wait() != 0:
            raise ImageError(f"tar of {rootfs} failed")
        (Path(scratch) / "Containerfile").write_text(base_containerfile(minbase))
        context = Path(scratch) / "context"
        context.mkdir()
        build = ["build", *tool.limit_options, "-t", tag, "-f", str(Path(scratch) / "Containerfile"), str(context)]
        _stream(tool.command(*build), out)
    return tag


def _stream(command: Sequence[str], out: io.TextIOBase, stdin: object = None) -> None:
    """Run ``command`` with its output copied line by line to ``out``; :class:`ImageError` when it fails."""
    process = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    for line in process.stdout:
        out.write(line)
        out.flush()
        tail = [*tail[-30:], line]
    if process.wait() != 0:
        raise ImageError(f"{' '.join(command[:4])} ... failed ({process.returncode}):\n{''.join(tail)}")


def choose_base(tool: ContainerTool, base: str, log: io.TextIOBase | None = None) -> str | None:
    """The ``PYTHON_IMAGE`` build-arg: ``None`` keeps the Dockerfile's public base.

    ``auto``: the public base when the registry answers, else the local one; ``local``; ``public``;
    or any image name.
    """
    if base == "public" or (base == "auto" and reachable(PUBLIC_REGISTRY_PROBE)):
        return None
    if base in ("auto", "local"):
        return ensure_local_base(tool, log=log)
    return base


def choose_torch_index(torch_index: str) -> str | None:
    """The ``TORCH_INDEX_URL`` build-arg: ``None`` keeps the Dockerfile's default, ``""`` empties it.

    ``auto`` empties it when download.pytorch.org does not answer (pip's own sources must then carry
    the CPU torch wheel, as on this project's machines): an unreachable index costs retries per package.
    """
    if torch_index == "auto":
        return None if reachable(TORCH_INDEX_PROBE) else ""
    return torch_index


@dataclasses.dataclass(frozen=True)
class BuildResult:
    """A built image and how long the build took."""

    tag: str
    seconds: float
    size_bytes: int


def build_command(
    tool: ContainerTool,
    tag: str,
    build_args: Mapping[str, str],
    pip_volumes: Sequence[str] = (),
    target: str | None = None,
    context: Path = REPO_ROOT,
) -> list[str]:
    """The ``build`` command line: docker format on podman (keeps HEALTHCHECK), limits, volumes, target."""
    args = ["build", "-t", tag, *tool.limit_options]
    if tool.name == "podman":
        args += ["--format", "docker"]
    args += [option for volume in pip_volumes for option in ("-v", volume)]
    if target is not None:
        args += ["--target", target]
    for key, value in build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    return tool.command(*args, str(context))


def pip_volumes(pip: PipSources, pip_conf: Path) -> list[str]:
    """Read-only build volumes: the generated pip.conf and every local path it names, at the same path."""
    return [f"{pip_conf}:{PIP_CONF_IN_BUILD}:ro", *(f"{path}:{path}:ro" for path in pip.mounts)]


def build_image(
    tool: ContainerTool,
    tag: str,
    build_args: Mapping[str, str],
    pip: PipSources | None = None,
    log: io.TextIOBase | None = None,
    context: Path = REPO_ROOT,
) -> BuildResult:
    """Build the image; with podman and ``pip``, the ``deps`` stage first, with the machine's pip sources.

    Docker's ``build`` has no volumes, so there the machine's pip sources are not passed (the
    public indexes are used).
    """
    out = log or sys.stdout
    started = time.monotonic()
    if pip is not None and tool.name != "podman":
        out.write(f"note: {tool.name} build takes no volumes; this machine's pip configuration is not used\n")
    elif pip is not None:
        with tempfile.TemporaryDirectory(prefix="instructor-pip-") as scratch:
            pip_conf = Path(scratch) / "pip.conf"
            pip_conf.write_text(pip.config_text)
            pip_conf.chmod(0o644)
            deps = build_command(tool, f"{tag}-{PIP_STAGE}", build_args, pip_volumes(pip, pip_conf), PIP_STAGE, context)
            _stream(deps, out)
    _stream(build_command(tool, tag, build_args, context=context), out)
    seconds = time.monotonic() - started
    size = int(tool.call("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())
    return BuildResult(tag, seconds, size)
