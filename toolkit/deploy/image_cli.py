"""``make image``: pick docker or podman, the base and the torch index, pass the machine's pip sources, build."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from toolkit.deploy.image import (
    ImageError,
    build_image,
    choose_base,
    choose_torch_index,
    find_container_tool,
    machine_pip_sources,
)


def _build_arg(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def main(argv: Sequence[str] | None = None) -> int:
    """Build the image and print its tag, size and build time."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--tag", default="instructor-serve")
    parser.add_argument(
        "--base",
        default="auto",
        help="auto (public python image when the registry answers, else local), public, local "
        "(Debian bookworm via debootstrap, made once per machine) or an image name",
    )
    parser.add_argument(
        "--torch-index",
        default="auto",
        help="TORCH_INDEX_URL: auto (the Dockerfile's default when download.pytorch.org answers, else empty), "
        "a URL, or '' for none",
    )
    parser.add_argument("--no-pip-config", action="store_true", help="do not pass this machine's pip sources")
    parser.add_argument("--build-arg", type=_build_arg, action="append", default=[], help="KEY=VALUE, e.g. MODEL=...")
    args = parser.parse_args(argv)
    try:
        tool = find_container_tool()
        build_args = dict(args.build_arg)
        base = choose_base(tool, args.base)
        if base is not None:
            build_args["PYTHON_IMAGE"] = base
        torch_index = choose_torch_index(args.torch_index)
        if torch_index is not None:
            build_args["TORCH_INDEX_URL"] = torch_index
        pip = None if args.no_pip_config else machine_pip_sources()
        print(f"building {args.tag} with {tool.name}; build-args {build_args}", flush=True)
        result = build_image(tool, args.tag, build_args, pip)
    except ImageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"built {result.tag}: {result.size_bytes / 1e9:.2f} GB in {result.seconds:.0f} s ({tool.name})")
    return 0
