"""Command-line entry points behind ``scripts/`` and the Makefile. Each returns an exit code.

Errors the user can act on (a bad model folder, an unreachable Hub, a refused registration)
print one line to stderr and exit 1; they never dump a traceback.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from handler.settings import FASTEST, HandlerSettings
from toolkit import REPO_ROOT
from toolkit.build.archive import WorkerConfig, archive_for_source
from toolkit.build.fidelity_gate import auto_hint
from toolkit.build.settings import add_arguments
from toolkit.errors import reporting_errors
from toolkit.models import model_source
from toolkit.serve import server
from toolkit.serve.management import (
    DEFAULT_INFERENCE_URL,
    DEFAULT_MANAGEMENT_URL,
    ManagementClient,
    ManagementError,
    TokenKeys,
    key_expiry,
)
from toolkit.serve.rollover import Rollover, RolloverError, next_version, registered_versions


def _run(main: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = parser.parse_args(argv)
    return reporting_errors(lambda: main(args))


def _add_management_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--management-url", default=DEFAULT_MANAGEMENT_URL)
    parser.add_argument("--key-file", type=Path, default=REPO_ROOT / "key_file.json", help="TorchServe's key_file.json")


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, ("model", "revision", "models_dir"))


ARCHIVE_ARGS = (
    "name",
    "instruction_mode",
    "archive_format",
    "export_dir",
    "workers",
    "batch_size",
    "max_batch_delay",
    "response_timeout",
    "precision",
    "engine",
    "force",
    "max_items",
    "max_length",
)


def _add_archive_args(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser, ARCHIVE_ARGS)


def _build(args: argparse.Namespace, version: str = "1.0") -> tuple[model_source.ModelSource, Path]:
    source = model_source.resolve(args.model, args.models_dir, args.revision, args.instruction_mode)
    workers = WorkerConfig(
        min_workers=args.workers,
        max_workers=args.workers,
        batch_size=args.batch_size,
        max_batch_delay_ms=args.max_batch_delay,
        response_timeout_s=args.response_timeout,
    )
    archive = archive_for_source(
        source,
        args.export_dir,
        workers,
        args.name,
        archive_format=args.archive_format,
        max_items_per_request=args.max_items,
        precision=args.precision,
        engine=args.engine,
        force=args.force,
        max_length=args.max_length,
        version=version,
    )
    return source, archive


def download_main(argv: Sequence[str] | None = None) -> int:
    """Download a hub model (or build the tiny one) into ``models/`` and print its folder."""
    parser = argparse.ArgumentParser(description=download_main.__doc__)
    _add_model_args(parser)

    def main(args: argparse.Namespace) -> int:
        print(model_source.resolve(args.model, args.models_dir, args.revision).path)
        return 0

    return _run(main, parser, argv)


def build_main(argv: Sequence[str] | None = None) -> int:
    """Build the TorchServe archive for a model into ``model_store/``."""
    parser = argparse.ArgumentParser(description=build_main.__doc__)
    _add_model_args(parser)
    _add_archive_args(parser)

    def main(args: argparse.Namespace) -> int:
        source, archive = _build(args)
        print(f"built {archive} from {source.label} (instruction_mode={source.instruction_mode.value})")
        return 0

    return _run(main, parser, argv)


def _add_register_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--initial-workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the archive's model-config.yaml")
    parser.add_argument("--max-batch-delay", type=int, default=None, help="ms; default: the archive's")
    parser.add_argument("--response-timeout", type=int, default=None, help="s; default: the archive's")


def register_main(argv: Sequence[str] | None = None) -> int:
    """Register an archive from the model store through the Management API."""
    parser = argparse.ArgumentParser(description=register_main.__doc__)
    parser.add_argument("archive", nargs="?", default="instructor.mar", help="a file name inside model_store")
    _add_register_args(parser)
    _add_management_args(parser)

    def main(args: argparse.Namespace) -> int:
        client = ManagementClient(args.key_file, args.management_url)
        result = client.register(
            args.archive, args.initial_workers, args.batch_size, args.max_batch_delay, args.response_timeout
        )
        print(result.get("status", result))
        return 0

    return _run(main, parser, argv)


def scale_main(argv: Sequence[str] | None = None) -> int:
    """Set a model's worker count: PUT /models/NAME?min_worker=&max_worker=."""
    parser = argparse.ArgumentParser(description=scale_main.__doc__)
    parser.add_argument("--name", default="instructor")
    parser.add_argument("--min", dest="min_workers", type=int, required=True)
    parser.add_argument("--max", dest="max_workers", type=int, default=None, help="default: --min")
    _add_management_args(parser)

    def main(args: argparse.Namespace) -> int:
        client = ManagementClient(args.key_file, args.management_url)
        maximum = args.min_workers if args.max_workers is None else args.max_workers
        print(client.scale(args.name, args.min_workers, maximum).get("status", ""))
        return 0

    return _run(main, parser, argv)


def describe_main(argv: Sequence[str] | None = None) -> int:
    """Print a model's description (settings and workers) as JSON."""
    import json

    parser = argparse.ArgumentParser(description=describe_main.__doc__)
    parser.add_argument("--name", default="instructor")
    _add_management_args(parser)

    def main(args: argparse.Namespace) -> int:
        described = ManagementClient(args.key_file, args.management_url).describe(args.name, customized=True)
        print(json.dumps(described, indent=2))
        return 0

    return _run(main, parser, argv)


def unregister_main(argv: Sequence[str] | None = None) -> int:
    """Unregister a model: DELETE /models/NAME."""
    parser = argparse.ArgumentParser(description=unregister_main.__doc__)
    parser.add_argument("--name", default="instructor")
    _add_management_args(parser)

    def main(args: argparse.Namespace) -> int:
        print(ManagementClient(args.key_file, args.management_url).unregister(args.name).get("status", ""))
        return 0

    return _run(main, parser, argv)


def _add_server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO_ROOT,
        help="where TorchServe starts and writes key_file.json (default: the repo root)",
    )
    parser.add_argument("--config", type=Path, default=None, help="default: WORKDIR/config.properties")


def _layout(args: argparse.Namespace) -> server.ServerLayout:
    workdir = args.workdir.resolve()
    config = (args.config or workdir / "config.properties").resolve()
    return server.ServerLayout(workdir=workdir, config_file=config, run_dir=workdir / ".run")


def curl_example(name: str, key: str, inference_url: str = DEFAULT_INFERENCE_URL) -> str:
    """A working curl line for the served model."""
    body = '{"inputs": ["Represent the Science title:", "3D ActionSLAM: wearable person tracking"]}'
    return (
        f"curl -s {inference_url}/predictions/{name} -H 'Authorization: Bearer {key}' "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}"
    )


def _serve_archive(args: argparse.Namespace, model_store: Path, version: str) -> tuple[model_source.ModelSource, Path]:
    """Build the archive; a new version of a live name is built beside the one serving, as NAME-vVERSION."""
    if version == "1.0":
        args.export_dir = model_store
        return _build(args, version)
    with tempfile.TemporaryDirectory(prefix=f".{args.name}-v{version}-", dir=model_store) as building:
        args.export_dir = Path(building)
        source, built = _build(args, version)
        suffix = built.name.removeprefix(args.name)
        target = model_store / f"{args.name}-v{version}{suffix}"
        if target.is_dir():
            shutil.rmtree(target)
        built.replace(target)
    return source, target


def _start_or_reuse(layout: server.ServerLayout, args: argparse.Namespace, inference_url: str) -> list[str]:
    """Start TorchServe unless it runs; the versions of ``args.name`` it already serves."""
    expiry = f"{args.token_expiration_min:g}"
    pid = server.running_pid(layout)
    if pid is None:
        server.start(server.with_config_overrides(layout, {"token_expiration_min": expiry}))
        server.wait_until_up(layout, inference_url)
        return []
    server.wait_until_up(layout, inference_url)
    print(f"TorchServe already running (pid {pid}); a model served as {args.name} is updated in place")
    running_expiry = server.running_properties(layout).get("token_expiration_min", "60")
    if running_expiry != expiry:
        print(f"note: TorchServe (pid {pid}) runs with token_expiration_min={running_expiry}; {expiry} needs make stop")
    _, management_url = server.listener_urls(layout)
    return registered_versions(ManagementClient(layout.key_file, management_url), args.name)


def _register_first(client: ManagementClient, layout: server.ServerLayout, args: argparse.Namespace, url: str) -> None:
    try:
        client.register(url, initial_workers=args.workers)
    except ManagementError as err:
        worker_log = server.last_worker_error(layout)
        raise server.ServerError(f"registration failed ({err}); worker log: {worker_log}") from err
    server.wait_for(lambda: server.workers_ready(client, args.name), args.timeout, f"{args.name} workers")


def _roll_over(client: ManagementClient, layout: server.ServerLayout, args: argparse.Namespace, archive: Path) -> None:
    inference_url, _ = server.listener_urls(layout)
    rollover = Rollover(client, inference_url)
    version = archive.name.removeprefix(f"{args.name}-v").split(".")[0]
    try:
        rollover.run(args.name, archive.name, version, args.workers, args.timeout)
    except RolloverError as err:
        raise server.ServerError(f"{err}; worker log: {server.last_worker_error(layout)}") from err
    store = archive.parent
    for url in rollover.retired_urls:  # what the retired versions were registered from, when it is ours
        retired = store / url
        if url != archive.name and re.fullmatch(rf"{re.escape(args.name)}(-v\d+)?(\.mar|\.tar\.gz)?", url):
            shutil.rmtree(retired) if retired.is_dir() else retired.unlink(missing_ok=True)
    if archive.is_file():
        # TorchServe unpacked it at registration: NAME.mar (.tar.gz) keeps holding the served model,
        # so scripts/register.py and make archive users find it under its usual name.
        archive.replace(store / (args.name + archive.name.removeprefix(f"{args.name}-v{version}")))


def _say_served(args: argparse.Namespace, layout: server.ServerLayout, source: model_source.ModelSource) -> None:
    inference_url, _ = server.listener_urls(layout)
    keys = TokenKeys.read(layout.key_file)
    print(f"serving {source.label} at {inference_url}/predictions/{args.name}")
    print("try:\n  " + curl_example(args.name, keys.inference, inference_url))
    expiry = server.running_properties(layout).get("token_expiration_min", "60")
    print(
        f"the inference key expires at {key_expiry(layout.key_file)} (token_expiration_min={expiry}): "
        f"InstructorClient(key_file={str(layout.key_file)!r}) renews it by itself, "
        "python -m toolkit key prints a fresh one (docs/api.md#keys). Stop with: make stop"
    )


def serve_main(argv: Sequence[str] | None = None) -> int:
    """Build the archive, start TorchServe (once) and serve the model; on a live name, roll it over.

    A name already served is updated without a gap: the new archive is registered as the next
    version, made the default once its workers are ready, and the old version is drained and
    unregistered (:mod:`toolkit.serve.rollover`). A new version that fails leaves the old serving.
    """
    parser = argparse.ArgumentParser(description=serve_main.__doc__)
    _add_model_args(parser)
    _add_archive_args(parser)
    _add_server_args(parser)
    add_arguments(parser, ("token_expiration_min",))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the workers")

    def main(args: argparse.Namespace) -> int:
        layout = _layout(args)
        inference_url, management_url = server.listener_urls(layout)
        store_name = server.read_properties(layout.config_file.read_text()).get("model_store", "model_store")
        model_store = (layout.workdir / store_name).resolve()
        live = _start_or_reuse(layout, args, inference_url) if server.running_pid(layout) else []
        version = next_version(live) if live else "1.0"
        source, archive = _serve_archive(args, model_store, version)
        print(f"model: {source.label}; archive: {archive}")
        # Before any worker loads the model: the hint's one copy is never held beside a worker's.
        hint = None
        if args.precision != FASTEST:
            settings = HandlerSettings.from_mapping(
                {"instruction_mode": source.instruction_mode.value, "precision": args.precision, "engine": args.engine}
            )
            hint = auto_hint(source.path, settings)
        if not server.running_pid(layout):
            _start_or_reuse(layout, args, inference_url)
        client = ManagementClient(layout.key_file, management_url)
        if live:
            _roll_over(client, layout, args, archive)
        else:
            _register_first(client, layout, args, archive.name)
        _say_served(args, layout, source)
        if hint:
            print(f"note: {hint}")
        return 0

    return _run(main, parser, argv)


def stop_main(argv: Sequence[str] | None = None) -> int:
    """Stop the TorchServe that ``make serve`` started."""
    parser = argparse.ArgumentParser(description=stop_main.__doc__)
    _add_server_args(parser)

    def main(args: argparse.Namespace) -> int:
        print("TorchServe stopped" if server.stop(_layout(args)) else "TorchServe was not running")
        return 0

    return _run(main, parser, argv)
