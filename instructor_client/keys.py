"""TorchServe's ``key_file.json``, read and renewed, so a client outlives the keys' expiry.

TorchServe's inference key expires ``token_expiration_min`` minutes (60 by default) after it was
issued. ``POST <management>/token?type=inference``, authorized by the file's API key, issues a new
one: TorchServe rewrites its key file with it and the previous key stops working at once (the
answer carries no key). So a client that holds the server's own key file recovers from a refused
key in one of two ways: another client already renewed it (the file holds a key other than the one
refused: use that), or the key expired (renew it, then read the file again).

Renewals are serialized, between threads by a lock and between processes on one machine by an
advisory lock on ``key_file.json.lock`` beside the file: clients refused together renew once, not
once each (each renewal would invalidate the key the others just read).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from instructor_client.errors import AuthorizationError

try:
    import fcntl
except ImportError:  # Windows: threads are still serialized, processes are not
    fcntl = None  # type: ignore[assignment]

# TorchServe rewrites the file in place (truncate, then write): a read can land in between.
READ_ATTEMPTS = 20
READ_PAUSE_S = 0.05


def is_token_failure(status: int, message: str) -> bool:
    """Whether an answer is TorchServe refusing the key (400 ``InvalidKeyException``)."""
    return status in (400, 401) and ("Token Authorization failed" in message or "InvalidKeyException" in message)


@contextlib.contextmanager
def _process_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (no lock where the folder is read-only or fcntl is missing)."""
    if fcntl is None:
        yield
        return
    try:
        handle = open(path, "a")  # noqa: SIM115 - held for the body
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class KeyFile:
    """The inference key of a TorchServe key file, renewed through the management API when refused.

    Args:
        path: the server's own ``key_file.json`` (a copy is never rewritten by TorchServe, so a
            renewal could not reach it).
        management_url: the management address (``http://127.0.0.1:8081``); ``None``: never renew,
            only pick up keys renewed by others.
    """

    def __init__(self, path: str | Path, management_url: str | None = None, timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.management_url = management_url.rstrip("/") if management_url else None
        self.timeout_s = timeout_s
        self.renewals = 0
        self._lock = threading.Lock()

    def _read(self) -> dict:
        last: Exception | None = None
        for _ in range(READ_ATTEMPTS):
            try:
                raw = json.loads(self.path.read_text())
                raw["inference"]["key"]
                return raw
            except FileNotFoundError:
                raise AuthorizationError(0, f"{self.path} not found: is TorchServe running from there?") from None
            except (OSError, ValueError, KeyError, TypeError) as err:
                last = err
                time.sleep(READ_PAUSE_S)
        raise AuthorizationError(0, f"{self.path} is not a TorchServe key file: {last}")

    def inference_key(self) -> str:
        """The inference key the file holds now."""
        return str(self._read()["inference"]["key"])

    def recover(self, refused_key: str) -> str:
        """A key to retry with after the server refused ``refused_key``.

        Raises:
            AuthorizationError: the key cannot be renewed (no management URL, no API key, or
                TorchServe refused the renewal); the message says which.
        """
        with self._lock, _process_lock(self.path.with_name(self.path.name + ".lock")):
            current = self.inference_key()
            if current != refused_key:
                return current  # renewed by another client meanwhile
            self._renew()
            return self.inference_key()

    def _renew(self) -> None:
        if self.management_url is None:
            raise AuthorizationError(
                400, "the inference key was refused (expired?) and no management URL was given to renew it"
            )
        api_key = self._read().get("API", {}).get("key")
        if not api_key:
            raise AuthorizationError(400, f"{self.path} holds no API key to renew the inference key with")
        url = f"{self.management_url}/token"
        try:
            headers = {"Authorization": f"Bearer {api_key}"}
            response = requests.post(url, params={"type": "inference"}, headers=headers, timeout=self.timeout_s)
        except requests.ConnectionError as err:
            raise AuthorizationError(0, f"renewing the inference key: no answer from {url} ({err})") from None
        if response.status_code != 200:
            raise AuthorizationError(
                response.status_code, f"renewing the inference key: {response.text.strip()[:300] or response.reason}"
            )
        self.renewals += 1
