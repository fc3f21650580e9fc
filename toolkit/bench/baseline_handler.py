"""The baseline: a handler that serves the way TorchServe's upstream INSTRUCTOR example does.

Like the example (shared/background, "A TorchServe handler for Instructor Embedding models"):
the model is loaded once as a whole INSTRUCTOR pipeline in fp32, only ``data[0]`` of a batch is
read, and its ``inputs`` (one pair or a list of pairs) go through one ``encode`` call. The
archive runs it with batch_size 1, as the example must (it answers one result per batch).

``INSTRUCTOR.encode`` itself no longer runs on current sentence-transformers; the same code
path (InstructorEmbedding's tokenize/forward/pooling, then Dense and Normalize) runs through
``toolkit.models.reference``, which the parity tests hold equal to ``INSTRUCTOR.encode``. Models
served with instructions ignored (MiniLM) use ``SentenceTransformer.encode`` on the texts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler


class UpstreamStyleHandler(BaseHandler):
    """One request per batch, one fp32 ``encode`` per request."""

    def initialize(self, context: Any) -> None:
        model_dir = Path(context.system_properties["model_dir"]) / "model"
        mode = (context.model_yaml_config or {}).get("baseline", {}).get("instruction_mode", "exclude")
        if mode == "ignore":
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(model_dir), device="cpu")
            self.encode = lambda pairs: model.encode([text for _, text in pairs], convert_to_tensor=True)
        else:
            from toolkit.models.reference import ReferenceInstructor

            self.encode = ReferenceInstructor(model_dir).encode
        self.initialized = True

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        body = data[0].get("body") or data[0].get("data")
        if isinstance(body, (bytes, bytearray)):
            body = json.loads(body)
        inputs = body["inputs"]
        pairs = [inputs] if isinstance(inputs[0], str) else inputs
        with torch.inference_mode():
            vectors = self.encode([list(pair) for pair in pairs])
        return [vectors.tolist()]
