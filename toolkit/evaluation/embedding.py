"""Embed texts through the running server with the project's client: batched, concurrent, cached.

Texts go out in shards of :data:`SHARD_SIZE`; the client splits each shard into requests that
fit the server's limits. Each finished shard is saved as one ``.npy`` file named by a digest of
the served model (name, archive fingerprint, precision), the instruction and the shard's texts,
so a rerun, or a run cut off halfway, re-embeds nothing it already has, and a rebuilt archive
or a changed text never reuses an old vector. A shard file is written under a temporary name
and renamed when complete. An expired inference key is renewed once through the Management API.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from tqdm import tqdm

from instructor_client import AuthorizationError, InstructorClient, InstructorError
from toolkit.evaluation.errors import ServedModelError
from toolkit.evaluation.served_model import ServedModel

SHARD_SIZE = 512


class VectorCache:
    """``.npy`` shards under ``root/<model cache key>/``; ``None`` root disables caching."""

    def __init__(self, root: Path | None, model: ServedModel) -> None:
        self.folder = root / model.cache_key if root is not None else None
        self.model = model

    def path(self, instruction: str, texts: Sequence[str]) -> Path | None:
        if self.folder is None:
            return None
        digest = hashlib.sha256(instruction.encode())
        for text in texts:
            digest.update(b"\0" + text.encode())
        return self.folder / f"{digest.hexdigest()[:32]}.npy"

    def load(self, path: Path | None, rows: int) -> np.ndarray | None:
        if path is None or not path.is_file():
            return None
        vectors = np.load(path, allow_pickle=False)
        return vectors if vectors.ndim == 2 and vectors.shape[0] == rows and vectors.dtype == np.float32 else None

    def save(self, path: Path | None, vectors: np.ndarray) -> None:
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
        try:
            with os.fdopen(handle, "wb") as file:
                np.save(file, vectors, allow_pickle=False)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class ServedEmbedder:
    """Vectors for ``[instruction, text]`` pairs from one served model, as float32 matrices.

    Args:
        model: the served model (names the cache folder).
        make_client: builds one client per worker thread (a ``requests.Session`` is not shared).
        cache: the vector cache, or one with no root to disable caching.
        renew_key: renews the inference key after an authorization failure (key expiry).
        concurrency: shards in flight at once (the server batches concurrent requests).
        progress: show a progress bar.
    """

    def __init__(
        self,
        model: ServedModel,
        make_client: Callable[[], InstructorClient],
        cache: VectorCache,
        renew_key: Callable[[], None] | None = None,
        concurrency: int = 2,
        progress: bool = True,
    ) -> None:
        self.model = model
        self.make_client = make_client
        self.cache = cache
        self.renew_key = renew_key
        self.concurrency = max(1, concurrency)
        self.progress = progress
        self.cached_rows = 0
        self.embedded_rows = 0
        self._local = threading.local()

    def embed(self, texts: Sequence[str], instruction: str, label: str) -> np.ndarray:
        """One float32 row per text, in order: the server's own vectors."""
        shards = [texts[start : start + SHARD_SIZE] for start in range(0, len(texts), SHARD_SIZE)]
        starts = [index * SHARD_SIZE for index in range(len(shards))]
        matrix: np.ndarray | None = None

        def place(index: int, vectors: np.ndarray) -> None:
            # One output matrix filled shard by shard: no list of shards, no concatenated copy.
            nonlocal matrix
            if matrix is None:
                matrix = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            matrix[starts[index] : starts[index] + len(vectors)] = vectors

        missing = []
        for index, shard in enumerate(shards):
            cached = self.cache.load(self.cache.path(instruction, shard), len(shard))
            if cached is None:
                missing.append(index)
            else:
                place(index, cached)
                self.cached_rows += len(shard)
        done = len(texts) - sum(len(shards[index]) for index in missing)
        bar = tqdm(
            total=len(texts), initial=done, desc=f"{self.model.name} {label}", unit="text", disable=not self.progress
        )
        with bar, ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {index: pool.submit(self._embed_shard, shards[index], instruction) for index in missing}
            for index, future in futures.items():
                vectors = future.result()
                self.cache.save(self.cache.path(instruction, shards[index]), vectors)
                place(index, vectors)
                self.embedded_rows += len(shards[index])
                bar.update(len(shards[index]))
        return matrix if matrix is not None else np.empty((0, 0), dtype=np.float32)

    def _client(self) -> InstructorClient:
        if not hasattr(self._local, "client"):
            self._local.client = self.make_client()
        return self._local.client

    def _embed_shard(self, texts: Sequence[str], instruction: str) -> np.ndarray:
        pairs = [(instruction, text) for text in texts]
        try:
            try:
                raw = self._client().embed(pairs)
            except AuthorizationError:
                if self.renew_key is None:
                    raise
                self.renew_key()
                raw = self._client().embed(pairs)
        except InstructorError as err:
            raise ServedModelError(f"{self.model.name}: embedding failed: {err}") from err
        vectors = np.asarray(raw, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts) or not np.isfinite(vectors).all():
            raise ServedModelError(
                f"{self.model.name}: expected {len(texts)} finite vectors, got an array of shape {vectors.shape}"
            )
        return vectors
