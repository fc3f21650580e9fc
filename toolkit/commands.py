"""``python -m toolkit <command>``: one table of every toolkit command, each a ``main(argv)``.

A command's module is imported only when it runs, so ``healthcheck`` or ``image`` start without
torch. ``scripts/NAME.py`` and the Makefile call :func:`run_command` with the command's name.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import sys
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Command:
    """A command's name, where its ``main(argv) -> int`` lives, and what it does."""

    name: str
    target: str  # "package.module:function"
    summary: str


COMMANDS = (
    Command(
        "serve", "toolkit.cli:serve_main", "build the archive, start TorchServe, register the model, print a curl line"
    ),
    Command("stop", "toolkit.cli:stop_main", "stop the TorchServe that serve started"),
    Command("build", "toolkit.cli:build_main", "build the archive for MODEL= into model_store/"),
    Command("download", "toolkit.cli:download_main", "download a Hub model (or build a test model), print its folder"),
    Command("register", "toolkit.cli:register_main", "register an archive of the model store"),
    Command("scale", "toolkit.cli:scale_main", "set a registered model's worker count"),
    Command("describe", "toolkit.cli:describe_main", "print a registered model's describe answer"),
    Command("unregister", "toolkit.cli:unregister_main", "unregister a model"),
    Command("key", "toolkit.serve.keys:main", "renew the inference (or management) key and print it"),
    Command("test-model", "toolkit.models.tiny_model:main", "write a test model (random weights, offline)"),
    Command("settings-table", "toolkit.build.settings:main", "print (or --write) configuration.md's settings table"),
    Command("image", "toolkit.deploy.image_cli:main", "build the image with Docker or podman"),
    Command("container", "toolkit.deploy.container:main", "the image's entrypoint: build when needed, run TorchServe"),
    Command("healthcheck", "toolkit.deploy.healthcheck:main", "the image's HEALTHCHECK: /ping with the inference key"),
    Command("kserve-storage", "toolkit.deploy.kserve:storage_main", "lay out a KServe storage folder from an archive"),
    Command("validate-manifests", "toolkit.deploy.kserve:validate_main", "validate deploy/'s manifests offline"),
    Command("embed", "toolkit.corpus.cli:main", "embed a corpus file into Parquet shards (resumable), or Chroma"),
    Command("sample-corpus", "toolkit.corpus.sample:main", "write a sample corpus (JSONL) to try embed on"),
    Command("bench", "toolkit.bench.cli:main", "make bench: the server against the baseline and the limit"),
    Command(
        "fidelity-report", "toolkit.bench.fidelity_report:main", "make fidelity: each mode's fidelity and speed here"
    ),
    Command("bench-fill", "toolkit.bench.fill:main", "the client and the embed job against the server's capacity"),
    Command("soak-embed", "toolkit.bench.soak:main", "make soak: worker and frontend memory over a long embed run"),
    Command("capacity", "toolkit.bench.capacity:main", "one worker's memory, load time and pairs/s, as JSON"),
    Command("evaluate", "toolkit.evaluation.cli:evaluate_main", "make eval: retrieval quality on BEIR data"),
    Command("eval-scale", "toolkit.evaluation.scale:main", "how far make eval's corpus sizes carry"),
)
BY_NAME = {command.name: command for command in COMMANDS}


def run_command(name: str, argv: Sequence[str] | None = None) -> int:
    """Run one command with ``argv`` (None: the process's own arguments after the command)."""
    module, function = BY_NAME[name].target.split(":")
    main = getattr(importlib.import_module(module), function)
    sys.argv[0] = f"toolkit {name}"
    return main(argv)


def environment_only(description: str, argv: Sequence[str] | None) -> None:
    """For a command configured by the environment alone: ``--help`` and nothing else.

    ``argv`` None (the image calls it so) reads no process arguments: under a test runner they are the runner's.
    """
    if argv is not None:
        argparse.ArgumentParser(description=description).parse_args(argv)


def usage() -> str:
    """The command list ``python -m toolkit --help`` prints."""
    width = max(len(command.name) for command in COMMANDS)
    lines = [f"  {command.name.ljust(width)}  {command.summary}" for command in COMMANDS]
    return "usage: python -m toolkit <command> [options]\n\ncommands:\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m toolkit``: dispatch to a command; ``--help`` or nothing lists them."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] not in BY_NAME:
        print(f"error: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return run_command(argv[0], argv[1:])
