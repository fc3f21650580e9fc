"""A live INSTRUCTOR reference: InstructorEmbedding 1.0.1's own code, run on the modern stack.

``INSTRUCTOR`` itself no longer runs on sentence-transformers 6, but its pieces
(``INSTRUCTOR_Transformer.tokenize`` / ``forward`` and ``INSTRUCTOR_Pooling``) are plain
functions of a tokenizer and tensors. Bound to an object that has ``tokenizer``,
``auto_model``, ``max_seq_length`` and ``do_lower_case``, they compute what
``INSTRUCTOR.encode`` computes. The modules after pooling are the folder's own
``modules.json`` entries loaded by sentence-transformers itself (``Dense.load`` reads each
Dense layer's activation from its config), as in the original pipeline. Nothing here
re-implements the semantics under test.

``INSTRUCTOR_Transformer.__init__`` sets ``max_seq_length = 512`` whatever the caller asks;
its ``tokenize`` then truncates to ``self.max_seq_length``. The reference takes that number as
an argument (512 by default, as published) so another ``max_length`` of the handler can be
cross-checked against the same code path.

The parity tests compare the handler against it, and the benchmark's baseline server runs it
the way TorchServe's upstream INSTRUCTOR example runs ``INSTRUCTOR.encode``. It needs the test
dependencies (InstructorEmbedding, sentence-transformers), not the serving ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from InstructorEmbedding.instructor import INSTRUCTOR_Pooling, INSTRUCTOR_Transformer
from sentence_transformers.models import Dense, Normalize
from transformers import AutoTokenizer, T5EncoderModel


class _InstructorPieces:
    """The attributes INSTRUCTOR_Transformer's methods read, and those methods."""

    tokenize = INSTRUCTOR_Transformer.tokenize
    forward = INSTRUCTOR_Transformer.forward

    def __init__(self, model_dir: Path, max_seq_length: int) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.auto_model = T5EncoderModel.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        self.max_seq_length = max_seq_length
        self.do_lower_case = json.loads((model_dir / "sentence_bert_config.json").read_text())["do_lower_case"]


def _modules_after_pooling(model_dir: Path) -> list[torch.nn.Module]:
    """The Dense and Normalize modules ``modules.json`` lists after pooling, loaded by sentence-transformers."""
    loaders = {"Dense": lambda path: Dense.load(str(path), local_files_only=True), "Normalize": lambda _: Normalize()}
    modules = json.loads((model_dir / "modules.json").read_text())[2:]
    return [loaders[module["type"].rsplit(".", 1)[-1]](model_dir / module["path"]) for module in modules]


class ReferenceInstructor:
    """``encode(pairs)`` as InstructorEmbedding 1.0.1 computes it, for an INSTRUCTOR-format folder.

    Args:
        model_dir: the model folder.
        max_seq_length: tokens per input after truncation (InstructorEmbedding hard-codes 512).
    """

    def __init__(self, model_dir: str | Path, max_seq_length: int = 512) -> None:
        model_dir = Path(model_dir)
        self.pieces = _InstructorPieces(model_dir, max_seq_length)
        pooling_config = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
        self.pooling = INSTRUCTOR_Pooling(**pooling_config)
        self.head = _modules_after_pooling(model_dir)

    @torch.inference_mode()
    def encode(self, pairs: list[list[str]]) -> torch.Tensor:
        """Embed ``[instruction, text]`` pairs in one batch, the reference way."""
        features = self.pieces.tokenize([list(pair) for pair in pairs])
        features = self.pieces.forward(features)
        features = self.pooling(features)
        for module in self.head:
            features = module(features)
        return features["sentence_embedding"]
