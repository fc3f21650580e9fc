"""A requests-based client: splits inputs to fit the server's limits, keeps order, retries overload.

It can keep several requests in flight (``concurrency``) so that one client fills the server's
dynamic batches, splits a request the worker's token budget refuses (413 with ``max_pairs``), and,
given the server's key file, renews an expired inference key (:mod:`instructor_client.keys`).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter

from instructor_client.errors import (
    AuthorizationError,
    InstructorError,
    InvalidRequestError,
    ServerUnavailableError,
    TokenBudgetExceededError,
)
from instructor_client.keys import KeyFile, is_token_failure

Pair = tuple[str, str]
RETRIED_STATUSES = (503, 507)
DEFAULT_MANAGEMENT_URL = "http://127.0.0.1:8081"
# A refused key is recovered (picked up from the key file, or renewed) at most this often per request.
TOKEN_RECOVERIES = 2
# TorchServe's max_request_size in this project's config.properties is 8 MiB; stay below it.
DEFAULT_MAX_REQUEST_BYTES = 8 * 2**20 - 64 * 2**10


# json.dumps's default item separator, which request_body writes between pairs.
PAIR_SEPARATOR = ", "


def request_body(pairs: Sequence[Pair], truncate: bool = True) -> bytes:
    """The exact bytes POSTed for ``pairs``: ``{"inputs": [[instruction, text], ...]}``.

    ``truncate=False`` adds ``"truncate": false``: a pair over ``max_length`` tokens is refused (413).
    """
    body: dict[str, object] = {"inputs": [list(pair) for pair in pairs]}
    if not truncate:
        body["truncate"] = False
    return json.dumps(body).encode()


def _json_body(response: requests.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _message(response: requests.Response) -> str:
    body = _json_body(response)
    if body is None:
        return response.text.strip() or response.reason
    return str(body.get("message", body)) if isinstance(body, dict) else str(body)


def _refusal(response: requests.Response, message: str) -> InvalidRequestError:
    """The 4xx as an error; a token-budget 413 carries how many pairs would fit."""
    body = _json_body(response)
    if (
        response.status_code == 413
        and isinstance(body, dict)
        and body.get("type") == "TokenBudgetError"
        and isinstance(body.get("max_pairs"), int)
    ):
        return TokenBudgetExceededError(response.status_code, message, body["max_pairs"])
    return InvalidRequestError(response.status_code, message)


class InstructorClient:
    """Embeds ``[instruction, text]`` pairs through ``POST /predictions/<model>``.

    Args:
        url: the inference address, e.g. ``http://127.0.0.1:8080``.
        model: the endpoint name.
        token: the inference key; or ``key_file`` to read it from TorchServe's key file on each
            request (so a renewed key is picked up).
        key_file: the server's own ``key_file.json``. When the server refuses the key (expired),
            the client takes the key another client renewed, or renews it through
            ``management_url`` with the file's API key, and retries.
        management_url: where to renew the key (the management API listens on loopback by
            default, so this works on the server's machine); ``None``: never renew.
        max_pairs_per_request: the server's ``max_items_per_request``.
        max_request_bytes: the largest body sent; inputs are split to stay under it.
        retries: extra attempts on 503/507 and lost connections, with exponential backoff.
        concurrency: requests in flight at once for one :meth:`embed` call (answers keep input order).
        truncate: ``False`` sends ``"truncate": false`` (over-long pairs are refused, 413).
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
        management_url: str | None = DEFAULT_MANAGEMENT_URL,
        concurrency: int = 1,
        truncate: bool = True,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.endpoint = f"{url.rstrip('/')}/predictions/{model}"
        self.token = token
        self.key_file = Path(key_file) if key_file else None
        self.keys = KeyFile(self.key_file, management_url) if self.key_file else None
        self.max_pairs = max_pairs_per_request
        self.max_bytes = max_request_bytes
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.truncate = truncate
        self.session = session or _pooled_session(concurrency)

    def embed(self, pairs: Sequence[Pair]) -> list[list[float]]:
        """One vector per ``(instruction, text)`` pair, in order (``concurrency`` requests at a time)."""
        chunks = list(self.chunks(pairs))
        if self.concurrency == 1 or len(chunks) <= 1:
            answers = [self.embed_chunk(chunk) for chunk in chunks]
        else:
            with ThreadPoolExecutor(min(self.concurrency, len(chunks)), thread_name_prefix="embed") as pool:
                answers = list(pool.map(self.embed_chunk, chunks))
        return [vector for answer in answers for vector in answer]

    def embed_chunk(self, chunk: Sequence[Pair]) -> list[list[float]]:
        """One request's vectors; a token-budget refusal (413) is split by its ``max_pairs`` and resent."""
        try:
            return self._post(request_body(chunk, self.truncate))
        except TokenBudgetExceededError as err:
            if err.max_pairs >= len(chunk) or len(chunk) == 1:
                raise
            step = max(1, err.max_pairs)
            pieces = [chunk[start : start + step] for start in range(0, len(chunk), step)]
            return [vector for piece in pieces for vector in self.embed_chunk(piece)]

    def embed_texts(self, texts: Sequence[str], instruction: str = "") -> list[list[float]]:
        """One vector per text, all under the same instruction."""
        return self.embed([(instruction, text) for text in texts])

    def chunks(self, pairs: Sequence[Pair]) -> Iterator[list[Pair]]:
        """Consecutive groups that respect the pair and byte limits (order kept).

        A chunk's size is that of the body :func:`request_body` writes for it: the empty body
        plus each pair's JSON and the separator between pairs.
        """
        empty = len(request_body([], self.truncate))
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

    def _token(self) -> str | None:
        return self.keys.inference_key() if self.keys is not None else self.token

    def _post(self, data: bytes) -> list[list[float]]:
        last: InstructorError = ServerUnavailableError(0, "no attempt made")
        attempt = recoveries = 0
        token = self._token()
        while attempt <= self.retries:
            if attempt:
                # Full jitter: clients refused together do not come back together (docs/reliability.md).
                time.sleep(random.uniform(0, self.backoff_s * 2 ** (attempt - 1)))
            headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
            try:
                response = self.session.post(self.endpoint, data=data, headers=headers, timeout=self.timeout_s)
            except requests.ConnectionError as err:
                last = ServerUnavailableError(0, f"no answer from {self.endpoint}: {err}")
                attempt += 1
                continue
            if response.status_code == 200:
                try:
                    return response.json()
                except ValueError:  # e.g. a proxy's HTML page
                    raise ServerUnavailableError(200, f"the answer is not JSON: {response.text[:200]!r}") from None
            message = _message(response)
            if is_token_failure(response.status_code, message):
                if self.keys is None or token is None or recoveries == TOKEN_RECOVERIES:
                    raise AuthorizationError(response.status_code, message)
                token = self.keys.recover(token)  # not an attempt: the request never reached a worker
                recoveries += 1
                continue
            if response.status_code in RETRIED_STATUSES:
                last = ServerUnavailableError(response.status_code, message)
                attempt += 1
                continue
            if 400 <= response.status_code < 500:
                raise _refusal(response, message)
            raise ServerUnavailableError(response.status_code, message)
        raise last


def _pooled_session(concurrency: int) -> requests.Session:
    """A session whose connection pool holds ``concurrency`` connections (requests keeps 10 by default)."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(10, concurrency))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
