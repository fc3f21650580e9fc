"""The demo as it ships (``make serve``'s archive of all-MiniLM-L6-v2), served end to end.

Built the way ``make serve`` builds it (:func:`toolkit.build.archive.archive_for_source` on
``MODEL=demo``, no setting given by hand), so what this tests is what a newcomer gets: vectors
equal to ``SentenceTransformer(...).encode(normalize_embeddings=True)`` at every length, because
the archive truncates where the model's own ``max_seq_length`` (256) says.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from sentence_transformers import SentenceTransformer

from instructor_client import InstructorClient
from tests.conftest import RunningServer, registered_model
from toolkit.build.archive import WorkerConfig, archive_for_source
from toolkit.models import model_source

pytestmark = pytest.mark.integration

NAME = "demo"
WORDS = [
    "river",
    "bank",
    "interest",
    "rates",
    "quarterly",
    "results",
    "sourdough",
    "starter",
    "mitochondria",
    "energy",
    "football",
    "championship",
    "parliament",
    "voted",
    "budget",
    "telescope",
    "galaxy",
    "migration",
    "cloud",
    "provider",
    "battery",
    "screen",
    "sunlight",
    "museum",
    "exhibition",
]
WORD_COUNTS = (5, 50, 150, 260, 420)
# all-MiniLM-L6-v2's sentence_bert_config.json.
MODEL_MAX_LENGTH = 256


def text_of(words: int) -> str:
    """A varied text of ``words`` words (about 1.1-1.3 tokens each for this tokenizer)."""
    return " ".join(WORDS[(index * 7 + index // len(WORDS)) % len(WORDS)] for index in range(words)) + "."


@pytest.fixture(scope="module")
def demo(torchserve: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    source = model_source.resolve(model_source.DEMO, tmp_path_factory.mktemp("models"))
    archive_for_source(source, torchserve.model_store, WorkerConfig(), NAME, say=lambda _line: None)
    with registered_model(torchserve, f"{NAME}.mar", NAME) as running:
        yield running


def test_demo_equals_sentence_transformers_at_every_length(demo: RunningServer, minilm_dir: Path) -> None:
    texts = [text_of(words) for words in WORD_COUNTS]
    client = InstructorClient(demo.inference_url, NAME, key_file=demo.layout.key_file)
    served = torch.tensor(client.embed_texts(texts))
    expected = SentenceTransformer(str(minilm_dir), device="cpu").encode(
        texts, normalize_embeddings=True, convert_to_tensor=True
    )
    cosines = torch.nn.functional.cosine_similarity(served, expected, dim=1)
    assert float(cosines.min()) >= 0.99999, dict(zip(WORD_COUNTS, cosines.tolist(), strict=True))


def test_describe_shows_the_models_own_max_length(demo: RunningServer) -> None:
    (description,) = demo.management.describe(NAME, customized=True)
    assert description["customizedMetadata"]["handler"]["max_length"] == MODEL_MAX_LENGTH


def test_truncate_false_answers_413_at_the_models_limit(demo: RunningServer) -> None:
    response = demo.predict(NAME, {"inputs": [["", text_of(260)]], "truncate": False})
    assert response.status_code == 413, response.text
    body = response.json()
    assert body["max_length"] == MODEL_MAX_LENGTH and body["tokens"] > MODEL_MAX_LENGTH
