"""Generated request bodies for fuzzing: hypothesis strategies and a seeded generator for live runs.

Bodies of every protocol the endpoint speaks (native, KServe v1, KServe v2, OpenAI) are built
valid from pairs, then either kept, changed structurally (a field dropped, added or given a
wrong value) or mutated as bytes, so each protocol's parser is fuzzed past its first check.
"""

from __future__ import annotations

import base64
import json
import random
import struct
from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from handler.request_parsing import EmbeddingRequest, WireFormat

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25,
)
ANY_TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=60)
PAIRISH = st.lists(ANY_TEXT | JSON_VALUES, max_size=4)
SHAPED_BODIES = st.fixed_dictionaries(
    {"inputs": PAIRISH | st.lists(PAIRISH, max_size=6) | JSON_VALUES},
    optional={"input": JSON_VALUES, "extra": JSON_VALUES},
)
VALID_PAIRS = st.lists(st.tuples(ANY_TEXT, ANY_TEXT.filter(lambda text: text.strip())), min_size=1, max_size=6)

STRUCTURAL_TEMPLATES = (
    lambda n: "[" * n + "]" * n,
    lambda n: '{"inputs": ' + "[" * n + "]" * n + "}",
    lambda n: '{"inputs": ["a", "' + "x" * n + '"]}',
    lambda n: '{"inputs": ["a", "b"], "inputs": [["c", "d"]]}',
    lambda n: '{"inputs": ["a", NaN]}',
    lambda n: '{"inputs": [["a", Infinity], ["b", -Infinity]]}',
    lambda n: '{"inputs": ["\\ud800", "text"]}',
    lambda n: '{"inputs": ["a", "\\u0000\\u0007\\u001b[31m"]}',
    lambda n: '{"inputs": [' + ",".join(['["a", "b"]'] * (n % 300)) + "]}",
    lambda n: '{"inputs": ["a", "b"]}' + " " * (n % 7) + "garbage",
)
STRUCTURAL = st.tuples(st.sampled_from(STRUCTURAL_TEMPLATES), st.integers(0, 200_000)).map(lambda t: t[0](t[1]))


def mutate(text: bytes, rng: random.Random) -> bytes:
    """Flip, drop or insert a few bytes of a JSON text."""
    data = bytearray(text)
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(len(data) + 1)
        action = rng.choice(("flip", "drop", "insert"))
        if action == "flip" and position < len(data):
            data[position] = rng.randrange(256)
        elif action == "drop" and position < len(data):
            del data[position]
        else:
            data[position:position] = bytes([rng.randrange(256)])
    return bytes(data)


def random_body(rng: random.Random) -> bytes:
    """One body for a live fuzz run: any protocol's body (valid or mutated), malformed, structural or random bytes."""
    if rng.random() < 0.4:
        return random_protocol_body(rng)
    pairs = [[rng.choice(["", "a", "Represent the title:"]), rng.choice(["text", "Café 北京", "x y z"])]]
    valid = json.dumps({"inputs": pairs if rng.random() < 0.5 else pairs[0]}).encode()
    kind = rng.randrange(6)
    if kind == 0:
        return valid
    if kind == 1:
        return mutate(valid, rng)
    if kind == 2:
        return STRUCTURAL_TEMPLATES[rng.randrange(len(STRUCTURAL_TEMPLATES))](rng.randrange(20_000)).encode(
            "utf-8", "surrogatepass"
        )
    if kind == 3:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
    if kind == 4:
        wrong = rng.choice([None, 1, 2.5, True, [], {}, [[]], [["a"]], [["a", "b", "c"]], [[1, 2]], ["a", None], "s"])
        return json.dumps({"inputs": wrong}).encode()
    return json.dumps({rng.choice(["inputs", "input", "instances"]): pairs, "n": rng.random()}).encode()


Pair = tuple[str, str]
# Values a structural mutation puts in place of a field: wrong types, empty and edge values.
WRONG_VALUES = (None, 0, -1, 1, 2.5, True, "", " ", "x", [], {}, [[]], [["a"]], [["a", "b", "c"]], [1, 2], {"k": 1})
BODY_FORMS = ("valid", "structural", "bytes")


def protocol_body(protocol: WireFormat, pairs: Sequence[Pair], rng: random.Random) -> dict[str, Any]:
    """A valid body of ``protocol`` carrying ``pairs`` (OpenAI: the first pair's instruction for all texts)."""
    rows = [list(pair) for pair in pairs]
    if protocol is WireFormat.NATIVE:
        return {"inputs": rows[0] if len(rows) == 1 and rng.random() < 0.5 else rows}
    if protocol is WireFormat.KSERVE_V1:
        return {"instances": rows} | ({"parameters": {}} if rng.random() < 0.2 else {})
    if protocol is WireFormat.KSERVE_V2:
        data = rows if rng.random() < 0.5 else [value for row in rows for value in row]
        tensor = {"name": "pairs", "shape": [len(rows), 2], "datatype": "BYTES", "data": data}
        return {"inputs": [tensor]} | ({"id": f"req-{rng.randrange(1000)}"} if rng.random() < 0.5 else {})
    texts = [text for _, text in pairs]
    body: dict[str, Any] = {"input": texts[0] if len(texts) == 1 and rng.random() < 0.5 else texts}
    if pairs[0][0] or rng.random() < 0.3:
        body["instruction"] = pairs[0][0]
    if rng.random() < 0.5:
        body["encoding_format"] = rng.choice(["float", "base64"])
    if rng.random() < 0.3:
        body["model"] = "instructor"
    return body


def expected_pairs(protocol: WireFormat, pairs: Sequence[Pair]) -> tuple[Pair, ...]:
    """The pairs :func:`protocol_body` puts in a body (OpenAI shares the first instruction)."""
    if protocol is WireFormat.OPENAI:
        return tuple((pairs[0][0], text) for _, text in pairs)
    return tuple(pairs)


def mutate_structure(value: Any, rng: random.Random) -> Any:
    """A copy of a decoded JSON value with one field dropped, added or replaced somewhere inside."""
    value = json.loads(json.dumps(value))
    containers = []

    def collect(node: Any) -> None:
        if isinstance(node, (dict, list)):
            containers.append(node)
            for child in node.values() if isinstance(node, dict) else node:
                collect(child)

    collect(value)
    node = rng.choice(containers)
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    action = rng.choice(("drop", "add", "replace", "replace")) if keys else "add"
    if action == "drop":
        del node[rng.choice(keys)]
    elif action == "add" and isinstance(node, dict):
        node[rng.choice(["extra", "inputs", "input", "instances", "id", "parameters"])] = rng.choice(WRONG_VALUES)
    elif action == "add":
        node.append(rng.choice(WRONG_VALUES))
    else:
        node[rng.choice(keys)] = rng.choice(WRONG_VALUES)
    return value


def shaped_protocol_body(protocol: WireFormat, pairs: Sequence[Pair], form: str, rng: random.Random) -> object:
    """A body of ``protocol``: valid, changed structurally, or mutated as JSON bytes (``form``)."""
    body = protocol_body(protocol, pairs, rng)
    if form == "structural":
        return mutate_structure(body, rng)
    if form == "bytes":
        return mutate(json.dumps(body).encode("utf-8", "surrogatepass"), rng)
    return body


# A seeded generator, not hypothesis' own random: what a test draws from it may depend on the turn.
SEEDED_RANDOM = st.integers(0, 2**32).map(random.Random)
PROTOCOL_CASES = st.tuples(st.sampled_from(list(WireFormat)), VALID_PAIRS, st.sampled_from(BODY_FORMS), SEEDED_RANDOM)
# Pairs and a generator for a body whose protocol and form the test picks in turn (even coverage).
PAIRS_AND_RANDOM = st.tuples(VALID_PAIRS, SEEDED_RANDOM)


def answer_vectors(request: EmbeddingRequest, answer: Any) -> list[list[float]]:
    """The vectors in an answer body, whatever the request's protocol (base64 decoded)."""
    if request.protocol is WireFormat.NATIVE:
        return [answer] if request.single else answer
    if request.protocol is WireFormat.KSERVE_V1:
        return answer["predictions"]
    if request.protocol is WireFormat.KSERVE_V2:
        (output,) = answer["outputs"]
        rows, dim = output["shape"]
        return [output["data"][row * dim : (row + 1) * dim] for row in range(rows)]
    vectors = [item["embedding"] for item in answer["data"]]
    if request.option("encoding_format") == "base64":
        return [list(struct.unpack(f"<{len(raw) // 4}f", raw)) for raw in map(base64.b64decode, vectors)]
    return vectors


def random_protocol_body(rng: random.Random) -> bytes:
    """One body of a random protocol for a live run: valid, changed structurally or byte-mutated."""
    protocol = rng.choice(list(WireFormat))
    instruction = rng.choice(["", "a", "Represent the title:"])
    pairs = [(instruction, rng.choice(["text", "Café 北京", "x y z"])) for _ in range(rng.randint(1, 3))]
    body = shaped_protocol_body(protocol, pairs, rng.choice(BODY_FORMS), rng)
    return body if isinstance(body, bytes) else json.dumps(body).encode()
