"""A TorchServe in a scratch folder on free loopback ports: for tests and measurements.

It runs beside ``make serve`` without clashing (every listener, gRPC included, gets its own
port) and is always stopped on exit, even when the body raises.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import requests

from toolkit import REPO_ROOT
from toolkit.serve import server
from toolkit.serve.management import ManagementClient, TokenKeys


@dataclasses.dataclass
class RunningServer:
    """A started TorchServe and how to talk to it."""

    layout: server.ServerLayout
    model_store: Path
    inference_url: str
    management_url: str
    metrics_url: str

    @property
    def management(self) -> ManagementClient:
        return ManagementClient(self.layout.key_file, self.management_url)

    def keys(self) -> TokenKeys:
        return TokenKeys.read(self.layout.key_file)

    def predict(self, name: str, body: object, timeout: float = 60, **kwargs: Any) -> requests.Response:
        """POST a JSON body to ``/predictions/NAME`` with the inference key."""
        headers = {"Authorization": f"Bearer {self.keys().inference}"}
        url = f"{self.inference_url}/predictions/{name}"
        return requests.post(url, json=body, headers=headers, timeout=timeout, **kwargs)

    def worker_pids(self, name: str) -> list[int]:
        """The process ids of the model's workers, from the Management API."""
        (description,) = self.management.describe(name)
        return [int(worker["pid"]) for worker in description["workers"]]

    def model_log(self) -> str:
        path = self.layout.log_dir / "model_log.log"
        return path.read_text() if path.exists() else ""


@contextlib.contextmanager
def running_server(
    workdir: Path,
    model_store: Path,
    properties: Mapping[str, str] | None = None,
    wait: bool = True,
    ready_timeout_s: float = 120,
) -> Iterator[RunningServer]:
    """TorchServe with the repo's config.properties, free loopback ports and ``model_store``.

    ``properties`` override more keys (``load_models`` for a cold start). With ``wait`` the
    body runs once the server answers ``/ping``; without, right after ``torchserve --start``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    config, addresses = server.write_loopback_config(workdir, model_store, REPO_ROOT / "config.properties", properties)
    layout = server.ServerLayout(workdir=workdir, config_file=config, run_dir=workdir / "run")
    running = RunningServer(
        layout,
        model_store,
        addresses["inference_address"],
        addresses["management_address"],
        addresses["metrics_address"],
    )
    server.start(layout)
    try:
        if wait:
            server.wait_until_up(layout, running.inference_url, timeout_s=ready_timeout_s)
        yield running
    finally:
        server.stop(layout)
