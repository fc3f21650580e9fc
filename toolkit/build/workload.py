"""The benchmark's inputs: realistic pair lengths, set in tokens, and the request mixes.

Lengths are counted with the model's own tokenizer, so a random-weight stand-in whose test
tokenizer cuts words finely still computes over the same number of tokens as the real model
would: ~8 tokens of instruction and texts of 16 to 256 tokens, log-uniform (short queries
are common, long passages rarer), mixed in every request stream.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

Pair = tuple[str, str]

INSTRUCTION = "Represent the document for retrieving supporting passages about the topic:"
INSTRUCTION_TOKENS = 8
TEXT_TOKENS = (16, 256)
CORPUS = (
    "Instruction-tuned embeddings let one model serve retrieval, clustering and classification by describing "
    "the task in a short instruction written before each text. A retrieval system stores passage vectors in an "
    "index and compares them with the vector of every incoming question. Latency matters when a user waits for "
    "an answer, while throughput matters when millions of documents are ingested overnight. Dynamic batching "
    "groups requests that arrive close together so that the accelerator multiplies larger matrices at once. "
    "Padding wastes work when short and long texts share a batch, which is why sorting by length helps. "
    "Quantized weights shrink memory traffic and let integer units do the arithmetic, at a small cost in "
    "fidelity that has to be measured rather than assumed. Cold start is the time from launching the server to "
    "its first useful answer, and it decides how quickly a cluster can scale out under a sudden burst of load."
)


@dataclasses.dataclass(frozen=True)
class Workload:
    """A request stream: pairs per request and concurrent clients."""

    name: str
    pairs_per_request: int
    concurrency: int

    def server_batch_pairs(self, batch_size: int) -> int:
        """Pairs in one server batch at saturation: ``min(concurrency, batch_size)`` requests."""
        return min(self.concurrency, batch_size) * self.pairs_per_request


WORKLOADS = (
    Workload("1 pair, concurrency 1", 1, 1),
    Workload("1 pair, concurrency 8", 1, 8),
    Workload("1 pair, concurrency 32", 1, 32),
    Workload("32 pairs, concurrency 2", 32, 2),
)


def token_lengths(count: int, low: int = TEXT_TOKENS[0], high: int = TEXT_TOKENS[1], seed: int = 0) -> list[int]:
    """``count`` text lengths in tokens, log-uniform in ``[low, high]``, the same for a given seed."""
    rng = random.Random(seed)
    return [round(math.exp(rng.uniform(math.log(low), math.log(high)))) for _ in range(count)]


def words_for_tokens(count_tokens: Callable[[str], int], words: Sequence[str], target: int) -> str:
    """The shortest prefix of ``words`` (repeated as needed) that has at least ``target`` tokens."""
    pool = list(words) * (target // max(1, len(words)) + 2)
    low, high = 1, len(pool)
    while count_tokens(" ".join(pool[:high])) < target:
        pool += list(words)
        high = len(pool)
    while low < high:
        middle = (low + high) // 2
        if count_tokens(" ".join(pool[:middle])) >= target:
            high = middle
        else:
            low = middle + 1
    return " ".join(pool[:low])


def token_counter(tokenizer: Any) -> Callable[[str], int]:
    """Tokens a text has in ``tokenizer`` (a transformers tokenizer), special tokens left out."""
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def make_pairs(count_tokens: Callable[[str], int], count: int, seed: int = 0) -> list[Pair]:
    """``count`` distinct pairs: one ~8-token instruction, texts of mixed token lengths."""
    instruction = words_for_tokens(count_tokens, INSTRUCTION.split(), INSTRUCTION_TOKENS)
    corpus = CORPUS.split()
    pairs = []
    for index, length in enumerate(token_lengths(count, seed=seed)):
        start = (index * 7) % len(corpus)
        rotated = corpus[start:] + corpus[:start]
        pairs.append((instruction, words_for_tokens(count_tokens, rotated, length)))
    return pairs


def request_bodies(pairs: Sequence[Pair], pairs_per_request: int) -> list[dict[str, Any]]:
    """Native request bodies of ``pairs_per_request`` consecutive pairs each (wrapping around)."""
    count = max(1, len(pairs) // pairs_per_request)
    bodies = []
    for index in range(count):
        chunk = [pairs[(index * pairs_per_request + offset) % len(pairs)] for offset in range(pairs_per_request)]
        bodies.append({"inputs": [list(pair) for pair in chunk]})
    return bodies
