"""A live INSTRUCTOR reference: InstructorEmbedding 1.0.1's own code, run on the modern stack.

``INSTRUCTOR`` itself no longer runs on sentence-transformers 6, but its pieces
(``INSTRUCTOR_Transformer.tokenize`` / ``forward`` and ``INSTRUCTOR_Pooling``) are plain
functions of a tokenizer and tensors. Bound to an object that has ``tokenizer``,
``auto_model``, ``max_seq_length`` and ``do_lower_case``, they compute what
``INSTRUCTOR.encode`` computes. Dense and Normalize are sentence-transformers' own modules,
as in the original pipeline. Nothing here re-implements the semantics under test.

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

    def __init__(self, model_dir: Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        self.auto_model = T5EncoderModel.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        self.max_seq_length = 512  # hard-coded in INSTRUCTOR_Transformer.__init__
        self.do_lower_case = json.loads((model_dir / "sentence_bert_config.json").read_text())["do_lower_case"]


class ReferenceInstructor:
    """``encode(pairs)`` as InstructorEmbedding 1.0.1 computes it, for an INSTRUCTOR-format folder."""

    def __init__(self, model_dir: str | Path) -> None:
        model_dir = Path(model_dir)
        self.pieces = _InstructorPieces(model_dir)
        pooling_config = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
        self.pooling = INSTRUCTOR_Pooling(**pooling_config)
        dense_config = json.loads((model_dir / "2_Dense" / "config.json").read_text())
        self.dense = Dense(
            in_features=dense_config["in_features"],
            out_features=dense_config["out_features"],
            bias=dense_config["bias"],
            activation_function=torch.nn.Identity(),
        )
        state = torch.load(model_dir / "2_Dense" / "pytorch_model.bin", weights_only=True)
        self.dense.load_state_dict(state)
        self.normalize = Normalize()

    @torch.inference_mode()
    def encode(self, pairs: list[list[str]]) -> torch.Tensor:
        """Embed ``[instruction, text]`` pairs in one batch, the reference way."""
        features = self.pieces.tokenize([list(pair) for pair in pairs])
        features = self.pieces.forward(features)
        features = self.pooling(features)
        features = self.dense(features)
        features = self.normalize(features)
        return features["sentence_embedding"]
