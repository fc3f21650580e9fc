"""A small client for TorchServe's Management API, with token handling.

TorchServe (0.11.1+) writes ``key_file.json`` in the directory it starts from: a management
key and an inference key that expire after 60 minutes, and an API key that renews them
through ``POST /token?type=...``. This client renews an expired key and retries once instead
of failing, and raises :class:`ManagementError` carrying the server's own message.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import requests

from toolkit.errors import ToolkitError

DEFAULT_MANAGEMENT_URL = "http://127.0.0.1:8081"
DEFAULT_INFERENCE_URL = "http://127.0.0.1:8080"


class ManagementError(ToolkitError):
    """A Management API call failed; ``status`` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message


@dataclasses.dataclass(frozen=True)
class TokenKeys:
    """The three keys of ``key_file.json``."""

    management: str
    inference: str
    api: str

    @classmethod
    def read(cls, key_file: str | Path) -> TokenKeys:
        """Read ``key_file.json``; a missing file means TorchServe did not start from there."""
        path = Path(key_file)
        try:
            raw = json.loads(path.read_text())
            return cls(raw["management"]["key"], raw["inference"]["key"], raw["API"]["key"])
        except FileNotFoundError:
            raise ManagementError(0, f"{path} not found: is TorchServe running from {path.parent}?") from None
        except OSError as err:
            raise ManagementError(0, f"{path} cannot be read: {err}") from None
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise ManagementError(0, f"{path} is not a TorchServe key file: {err}") from None


def key_expiry(key_file: str | Path, kind: str = "inference") -> str:
    """When the ``kind`` key of ``key_file.json`` expires (TorchServe's UTC timestamp), or ``"unknown"``."""
    try:
        return str(json.loads(Path(key_file).read_text())[kind]["expiration time"])
    except (OSError, KeyError, TypeError, ValueError):
        return "unknown"


def _server_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason
    if isinstance(body, dict) and "message" in body:
        return str(body["message"])
    return json.dumps(body)


def _http(method: str, url: str, **kwargs: Any) -> requests.Response:
    """``requests.request``, where no answer at all is a :class:`ManagementError` (status 0)."""
    try:
        return requests.request(method, url, **kwargs)
    except requests.ConnectionError as err:
        raise ManagementError(0, f"no answer from {url}: is TorchServe running? ({err})") from None


def _is_token_failure(response: requests.Response) -> bool:
    return response.status_code in (400, 401) and "InvalidKeyException" in response.text


class TokenSession:
    """Sends requests with one kind of key (``management`` or ``inference``), renewing it on expiry."""

    def __init__(self, key_file: str | Path, kind: str, management_url: str, timeout_s: float = 30.0) -> None:
        self.key_file = Path(key_file)
        self.kind = kind
        self.management_url = management_url.rstrip("/")
        self.timeout_s = timeout_s

    def _key(self) -> str:
        return getattr(TokenKeys.read(self.key_file), self.kind)

    def renew(self) -> None:
        """Ask TorchServe for a fresh key with the API key; TorchServe rewrites the key file."""
        api_key = TokenKeys.read(self.key_file).api
        response = _http(
            "POST",
            f"{self.management_url}/token",
            params={"type": self.kind},
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=self.timeout_s,
        )
        if response.status_code != 200:
            raise ManagementError(response.status_code, f"renewing the {self.kind} key: {_server_message(response)}")

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """Send with the current key; on a token failure renew it once and resend."""
        response = self._send(method, url, **kwargs)
        if _is_token_failure(response):
            self.renew()
            response = self._send(method, url, **kwargs)
        return response

    def _send(self, method: str, url: str, headers: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        headers = dict(headers or {}) | {"Authorization": f"Bearer {self._key()}"}
        kwargs.setdefault("timeout", self.timeout_s)
        return _http(method, url, headers=headers, **kwargs)


class ManagementClient:
    """Register, scale, describe and unregister models through the Management API."""

    def __init__(self, key_file: str | Path, base_url: str = DEFAULT_MANAGEMENT_URL, timeout_s: float = 600.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = TokenSession(key_file, "management", self.base_url, timeout_s)

    def _call(self, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        clean = {key: value for key, value in (params or {}).items() if value is not None}
        response = self.session.request(method, f"{self.base_url}{path}", params=clean)
        if not 200 <= response.status_code < 300:
            raise ManagementError(response.status_code, _server_message(response))
        return response.json() if response.content else {}

    def register(
        self,
        archive: str,
        initial_workers: int = 1,
        batch_size: int | None = None,
        max_batch_delay_ms: int | None = None,
        response_timeout_s: int | None = None,
        synchronous: bool = True,
    ) -> dict[str, Any]:
        """``POST /models``: register an archive from the model store (a name, never a URL).

        Settings left as ``None`` come from the archive's ``model-config.yaml``.
        """
        params = {
            "url": archive,
            "initial_workers": initial_workers,
            "batch_size": batch_size,
            "max_batch_delay": max_batch_delay_ms,
            "response_timeout": response_timeout_s,
            "synchronous": str(synchronous).lower(),
        }
        return self._call("POST", "/models", params)

    def scale(self, name: str, min_workers: int, max_workers: int, synchronous: bool = True) -> dict[str, Any]:
        """``PUT /models/{name}``: change the worker count."""
        params = {"min_worker": min_workers, "max_worker": max_workers, "synchronous": str(synchronous).lower()}
        return self._call("PUT", f"/models/{name}", params)

    def versions(self, name: str) -> list[dict[str, Any]]:
        """``GET /models/{name}/all``: the description of every registered version."""
        return self._call("GET", f"/models/{name}/all")

    def describe_version(self, name: str, version: str) -> dict[str, Any]:
        """``GET /models/{name}/{version}``: one version's settings, workers and job queue."""
        (description,) = self._call("GET", f"/models/{name}/{version}")
        return description

    def set_default(self, name: str, version: str) -> dict[str, Any]:
        """``PUT /models/{name}/{version}/set-default``: where ``/predictions/{name}`` goes from now on."""
        return self._call("PUT", f"/models/{name}/{version}/set-default")

    def unregister_version(self, name: str, version: str) -> dict[str, Any]:
        """``DELETE /models/{name}/{version}``."""
        return self._call("DELETE", f"/models/{name}/{version}")

    def describe(self, name: str, customized: bool = False) -> list[dict[str, Any]]:
        """``GET /models/{name}``: versions, settings and workers.

        ``customized`` adds the handler's own description (``customizedMetadata``: engine,
        precision as a worker resolved it, fidelity figures).
        """
        return self._call("GET", f"/models/{name}", {"customized": "true"} if customized else None)

    def unregister(self, name: str) -> dict[str, Any]:
        """``DELETE /models/{name}``."""
        return self._call("DELETE", f"/models/{name}")

    def list_models(self) -> list[str]:
        """Names of the registered models."""
        return [model["modelName"] for model in self._call("GET", "/models").get("models", [])]
