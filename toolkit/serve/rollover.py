"""Replace the model behind ``/predictions/NAME`` on a live server without failing a request.

TorchServe serves several versions of one name side by side and routes ``/predictions/NAME`` to
the default one. An update is therefore: register the new archive as a new version, wait until
its workers are READY (the handler's start check runs before a worker reports ready), make it the
default, let the old versions finish what they were given, then unregister them. A new version
that fails to load is removed again and the old one keeps serving; the error says why.

Draining: a request is routed to a version when it arrives, so after the switch the old versions
only hold what is queued or in a batch. TorchServe answers a request in a batch whose worker is
stopped with an error, so each old version is unregistered only once its queue is empty and a
probe request sent to it directly (``/predictions/NAME/VERSION``, queued behind everything else)
has come back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import requests

from toolkit.errors import ToolkitError
from toolkit.serve import server
from toolkit.serve.management import ManagementClient, ManagementError, TokenSession

PROBE_BODY = {"inputs": [["", "rollover drain probe"]]}


class RolloverError(ToolkitError):
    """The new version was not put in service; the old one still serves (the message says why)."""


def next_version(versions: Iterable[str]) -> str:
    """The version after the highest numeric one registered (``1.0`` -> ``2``); ``1`` when none is."""
    numbers = [int(float(version)) for version in versions if re.fullmatch(r"\d+(\.\d+)?", version)]
    return str(max(numbers, default=0) + 1)


def registered_versions(client: ManagementClient, name: str) -> list[str]:
    """The versions registered under ``name`` (empty when the name is not registered)."""
    if name not in client.list_models():
        return []
    return [description["modelVersion"] for description in client.versions(name)]


def version_ready(client: ManagementClient, name: str, version: str) -> bool:
    """Whether every worker of ``name`` ``version`` is READY (and there is at least one)."""
    workers = client.describe_version(name, version).get("workers", [])
    return bool(workers) and all(worker.get("status") == "READY" for worker in workers)


class Rollover:
    """One update of ``name`` to the archive ``archive_url`` (a file of the model store) at ``version``.

    Args:
        client: the management client of the server.
        inference_url: where the drain probes go (with the key file's inference key, renewed if expired).
        say: where progress lines go.
    """

    def __init__(
        self,
        client: ManagementClient,
        inference_url: str,
        say: Callable[[str], None] = print,
        poll_s: float = 0.25,
    ) -> None:
        self.client = client
        self.inference_url = inference_url.rstrip("/")
        self.inference = TokenSession(client.session.key_file, "inference", client.base_url)
        self.say = say
        self.poll_s = poll_s
        self.retired_urls: list[str] = []

    def run(self, name: str, archive_url: str, version: str, workers: int, timeout_s: float) -> None:
        """Register, wait, switch, drain and unregister; the old versions serve until the switch.

        Raises:
            RolloverError: the new version did not load or become ready within ``timeout_s``;
                it was removed and the old default still serves.
        """
        old = registered_versions(self.client, name)
        old_urls = [self.client.describe_version(name, previous).get("modelUrl", "") for previous in old]
        if version in old:
            raise RolloverError(f"{name} version {version} is already registered")
        self.say(f"registering {name} version {version} beside {', '.join(old)} (they keep serving)")
        try:
            self.client.register(archive_url, initial_workers=workers)
            self._wait(lambda: version_ready(self.client, name, version), timeout_s, f"{name} {version} workers")
        except (ManagementError, RolloverError) as err:
            self._remove_failed(name, version)
            serving = ", ".join(old)
            raise RolloverError(f"{name} version {version} did not start, {serving} still serves: {err}") from err
        self.client.set_default(name, version)
        self.say(f"{name} now answers with version {version}; draining {', '.join(old)}")
        for previous in old:
            self.drain(name, previous, timeout_s)
            self.client.unregister_version(name, previous)
            self.say(f"unregistered {name} version {previous}")
        self.retired_urls = [url for url in old_urls if url]

    def drain(self, name: str, version: str, timeout_s: float) -> None:
        """Wait until ``version`` has answered everything it was given before the switch."""

        def queue_empty() -> bool:
            return self.client.describe_version(name, version).get("jobQueueStatus", {}).get("pendingRequests", 0) == 0

        self._wait(queue_empty, timeout_s, f"{name} {version}'s queue to empty")
        workers = len(self.client.describe_version(name, version).get("workers", [])) or 1
        # One probe per worker, queued behind everything the version holds: when all are answered,
        # every batch started before them has ended.
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda _: self._probe(name, version, timeout_s), range(workers)))

    def _probe(self, name: str, version: str, timeout_s: float) -> None:
        url = f"{self.inference_url}/predictions/{name}/{version}"
        try:
            self.inference.request("POST", url, json=PROBE_BODY, timeout=timeout_s)
        except (ManagementError, requests.RequestException) as err:
            self.say(f"drain probe to {url} got no answer ({err}); unregistering anyway")

    def _remove_failed(self, name: str, version: str) -> None:
        try:
            if version in registered_versions(self.client, name):
                self.client.unregister_version(name, version)
        except ManagementError as err:
            self.say(f"could not remove the failed version {name} {version}: {err}")

    def _wait(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        """:func:`toolkit.serve.server.wait_for`, its timeout as a :class:`RolloverError`."""
        try:
            server.wait_for(condition, timeout_s, what, self.poll_s)
        except server.ServerError as err:
            raise RolloverError(str(err)) from None
