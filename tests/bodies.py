"""Generated request bodies for fuzzing: hypothesis strategies and a seeded generator for live runs."""

from __future__ import annotations

import json
import random

from hypothesis import strategies as st

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
    """One body for a live fuzz run: valid, malformed, mutated, structural or random bytes."""
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
