"""A requests-based client: splits inputs to fit the server's limits, keeps order, retries overload."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import requests

from instructor_client.errors import (
    AuthorizationError,
    InstructorError,
    InvalidRequestError,
    ServerUnavailableError,
)

Pair = tuple[str, str]
RETRIED_STATUSES = (503, 507)
# TorchServe's max_request_size in this project's config.properties is 8 MiB; stay below it.
DEFAULT_MAX_REQUEST_BYTES = 8 * 2**20 - 64 * 2**10


# json.dumps's default item separator, which request_body writes between pairs.
PAIR_SEPARATOR = ", "


def request_body(pairs: Sequence[Pair]) -> bytes:
    """The exact bytes POSTed for ``pairs``: ``{"inputs": [[instruction, text], ...]}``."""
    return json.dumps({"inputs": [list(pair) for pair in pairs]}).encode()


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)


class InstructorClient:
    """Embeds ``[instruction, text]`` pairs through ``POST /predictions/<model>``.

    Args:
        url: the inference address, e.g. ``http://127.0.0.1:8080``.
        model: the endpoint name.
        token: the inference key; or ``key_file`` to read it from TorchServe's key file on each
            request (so a renewed key is picked up).
        max_pairs_per_request: the server's ``max_items_per_request``.
        max_request_bytes: the largest body sent; inputs are split to stay under it.
        retries: extra attempts on 503/507 and lost connections, with exponential backoff.
    """

    def __init__(
        self,
        url: str = "http://127.0.0.1:8080",
        model: str = "instructor",
        token: str | None = None,
        key_file: str | Path | None = None,
        max_pairs_per_request: int = 128,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        retries: int = 4,
        backoff_s: float = 0.5,
        timeout_s: float = 120.0,
        session: requests.Session | None = None,
    ) -> None:
        self.endpoint = f"{url.rstrip('/')}/predictions/{model}"
        self.token = token
        self.key_file = Path(key_file) if key_file else None
        self.max_pairs = max_pairs_per_request
        self.max_bytes = max_request_bytes
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.session = session or requests.Session()

    def embed(self, pairs: Sequence[Pair]) -> list[list[float]]:
        """One vector per ``(instruction, text)`` pair, in order."""
        vectors: list[list[float]] = []
        for chunk in self.chunks(pairs):
            vectors.extend(self._post(request_body(chunk)))
        return vectors

    def embed_texts(self, texts: Sequence[str], instruction: str = "") -> list[list[float]]:
        """One vector per text, all under the same instruction."""
        return self.embed([(instruction, text) for text in texts])

    def chunks(self, pairs: Sequence[Pair]) -> Iterator[list[Pair]]:
        """Consecutive groups that respect the pair and byte limits (order kept).

        A chunk's size is that of the body :func:`request_body` writes for it: the empty body
        plus each pair's JSON and the separator between pairs.
        """
        empty = len(request_body([]))
        chunk: list[Pair] = []
        size = empty
        for pair in pairs:
            pair_size = len(json.dumps(list(pair)).encode())
            if empty + pair_size > self.max_bytes:
                raise InvalidRequestError(
                    0, f"one pair makes a {empty + pair_size}-byte body, over the {self.max_bytes}-byte limit"
                )
            added = pair_size + (len(PAIR_SEPARATOR) if chunk else 0)
            if chunk and (len(chunk) == self.max_pairs or size + added > self.max_bytes):
                yield chunk
                chunk, size, added = [], empty, pair_size
            chunk.append(pair)
            size += added
        if chunk:
            yield chunk

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        token = self.token
        if self.key_file is not None:
            token = json.loads(self.key_file.read_text())["inference"]["key"]
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _post(self, data: bytes) -> list[list[float]]:
        last: InstructorError = ServerUnavailableError(0, "no attempt made")
        for attempt in range(self.retries + 1):
            if attempt:
                # Full jitter: clients refused together do not come back together (docs/reliability.md).
                time.sleep(random.uniform(0, self.backoff_s * 2 ** (attempt - 1)))
            try:
                response = self.session.post(self.endpoint, data=data, headers=self._headers(), timeout=self.timeout_s)
            except requests.ConnectionError as err:
                last = ServerUnavailableError(0, f"no answer from {self.endpoint}: {err}")
                continue
            if response.status_code == 200:
                try:
                    return response.json()
                except ValueError:  # e.g. a proxy's HTML page
                    raise ServerUnavailableError(200, f"the answer is not JSON: {response.text[:200]!r}") from None
            message = _message(response)
            if "Token Authorization failed" in message:
                raise AuthorizationError(response.status_code, message)
            if response.status_code in RETRIED_STATUSES:
                last = ServerUnavailableError(response.status_code, message)
                continue
            if 400 <= response.status_code < 500:
                raise InvalidRequestError(response.status_code, message)
            raise ServerUnavailableError(response.status_code, message)
        raise last
