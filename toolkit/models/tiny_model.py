"""Build INSTRUCTOR-format test models offline and deterministically.

A T5 encoder with fixed-seed weights, a sentencepiece tokenizer trained here on mixed-case,
partly non-ASCII text, and the hub repo layout (``modules.json``, ``sentence_bert_config.json``,
``1_Pooling``, ``2_Dense`` in the new and the old format, ``3_Normalize``), so both this project
and the legacy InstructorEmbedding package load the same folder.

Shapes: ``tiny`` (for tests, a few MB), ``base`` and ``large`` (instructor-base's and
instructor-large's encoders, random weights: the same compute and memory as the real models,
no quality).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import sentencepiece
import torch
from safetensors.torch import load_file, save_file
from transformers import T5Config, T5EncoderModel, T5Tokenizer

SEED = 20261122
VOCAB_SIZE = 1200

CORPUS_LINES = (
    "Represent the Science title for retrieving supporting documents:",
    "Represent the Wikipedia question for retrieving relevant passages:",
    "Represent the Financial statement:",
    "Represent the Medicine sentence for clustering:",
    "Parton energy loss in QCD matter and jet quenching at the LHC.",
    "The Federal Reserve raised interest rates by a quarter point on Wednesday.",
    "Dynamical Scalar Degree of Freedom in Horava-Lifshitz Gravity.",
    "Aspirin reduces the risk of heart attack in some patients.",
    "Where is the Eiffel Tower? It stands in Paris, France, since 1889.",
    "Python, Java, Rust and Go are programming languages used in production.",
    "TorchServe batches requests together; every request must get its own answer.",
    "Café crème, naïve façade, Größe, Übermaß, señor, smørrebrød and déjà vu.",
    "北京是中国的首都。東京は日本の首都です。서울은 한국의 수도입니다.",
    "Numbers like 3.14159, 2026-11-22, 42%, $1,000 and #7 appear in text.",
    "UPPER CASE WORDS, lower case words, and Mixed Case Words all occur.",
    "Quick brown foxes jump over lazy dogs while zebras quietly graze.",
    "Symbols: @ & * ( ) [ ] { } < > / \\ | ~ ^ _ + = ! ? ; : ' \" ` , .",
)


@dataclasses.dataclass(frozen=True)
class EncoderShape:
    """The T5 encoder and Dense sizes of a test model."""

    d_model: int
    d_kv: int
    num_heads: int
    d_ff: int
    num_layers: int
    vocab_size: int | None
    dense_out: int


SHAPES = {
    "tiny": EncoderShape(d_model=64, d_kv=16, num_heads=4, d_ff=128, num_layers=2, vocab_size=None, dense_out=48),
    "large": EncoderShape(
        d_model=1024, d_kv=64, num_heads=16, d_ff=4096, num_layers=24, vocab_size=32128, dense_out=768
    ),
    "base": EncoderShape(d_model=768, d_kv=64, num_heads=12, d_ff=3072, num_layers=12, vocab_size=32128, dense_out=768),
}


def _train_sentencepiece(workdir: Path) -> list[tuple[str, float]]:
    corpus = workdir / "corpus.txt"
    lines = [line for _ in range(3) for line in CORPUS_LINES]
    lines += [" ".join(CORPUS_LINES[i : i + 3]) for i in range(len(CORPUS_LINES))]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    prefix = workdir / "spiece"
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(prefix),
        vocab_size=VOCAB_SIZE,
        hard_vocab_limit=False,
        model_type="unigram",
        character_coverage=1.0,
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        num_threads=1,
        seed_sentencepiece_size=100000,
        minloglevel=2,
    )
    processor = sentencepiece.SentencePieceProcessor(model_file=str(prefix) + ".model")
    return [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]


def _fill_deterministically(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Overwrite every parameter from one seeded generator, in name order."""
    with torch.no_grad():
        for name, parameter in sorted(module.named_parameters(), key=lambda item: item[0]):
            noise = torch.randn(parameter.shape, generator=generator)
            if "layer_norm" in name:
                parameter.copy_(1.0 + 0.1 * noise)
            elif "shared" in name or "embed" in name:
                parameter.copy_(noise)
            else:
                parameter.copy_(noise * parameter.shape[-1] ** -0.5)


def _scale_queries_like_t5(model: torch.nn.Module, d_kv: int) -> None:
    """Scale the query projections by ``d_kv ** -0.5``, as T5's own initialization does.

    T5 has no ``1/sqrt(d_kv)`` in its attention: the factor lives in the query weights. Without
    it a random model's attention logits have a standard deviation of about ``sqrt(d_kv)`` (8 for
    instructor-base and -large), the softmax saturates, and the model becomes far more sensitive
    to rounding than trained T5 (bf16 min cosine 0.95 instead of 0.99997 on the probe set).
    The tiny model keeps its weights (its golden vectors were made from them).
    """
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("SelfAttention.q.weight"):
                parameter.mul_(d_kv**-0.5)


def _write_sentence_transformers_files(target: Path, d_model: int, dense: torch.nn.Linear) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
        {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (target / "modules.json").write_text(json.dumps(modules, indent=2))
    (target / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 512, "do_lower_case": False}))
    pooling = {
        "word_embedding_dimension": d_model,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
    }
    (target / "1_Pooling").mkdir(exist_ok=True)
    (target / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    dense_dir = target / "2_Dense"
    dense_dir.mkdir(exist_ok=True)
    dense_config = {
        "in_features": dense.in_features,
        "out_features": dense.out_features,
        "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity",
    }
    (dense_dir / "config.json").write_text(json.dumps(dense_config, indent=2))
    state = {"linear.weight": dense.weight.detach().clone().contiguous()}
    save_file(state, str(dense_dir / "model.safetensors"))
    torch.save(state, dense_dir / "pytorch_model.bin")
    (target / "3_Normalize").mkdir(exist_ok=True)


def build_test_model(target: str | Path, shape: str = "tiny") -> Path:
    """Write an INSTRUCTOR-format model folder; the same inputs always give the same files.

    Args:
        target: the folder to write (created; existing files are overwritten).
        shape: a key of :data:`SHAPES`.
    """
    spec = SHAPES[shape]
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        vocab = _train_sentencepiece(Path(workdir))
    tokenizer = T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)
    tokenizer.save_pretrained(str(target))
    config = T5Config(
        vocab_size=spec.vocab_size or len(vocab),
        d_model=spec.d_model,
        d_kv=spec.d_kv,
        num_heads=spec.num_heads,
        d_ff=spec.d_ff,
        num_layers=spec.num_layers,
        feed_forward_proj="relu",
        dropout_rate=0.0,
        is_encoder_decoder=False,
        use_cache=False,
    )
    generator = torch.Generator().manual_seed(SEED)
    model = T5EncoderModel(config)
    _fill_deterministically(model, generator)
    if shape != "tiny":
        _scale_queries_like_t5(model, spec.d_kv)
    model.save_pretrained(str(target), safe_serialization=True)
    dense = torch.nn.Linear(spec.d_model, spec.dense_out, bias=False)
    _fill_deterministically(dense, generator)
    _write_sentence_transformers_files(target, spec.d_model, dense)
    return target


def inject_outliers(model_dir: str | Path, offset: float = 200.0) -> Path:
    """Rewrite a test model so its hidden states carry a massive common activation, in place.

    Every token embedding gets ``offset`` added in every channel, and the Dense head projects
    that common direction out again. In float32 the vectors stay well defined; in bf16 (8
    significant bits) and in int8 with one scale per tensor the small signal riding on the
    offset is rounded away. The fidelity gate must refuse such a model: the same failure mode
    as real T5 weights whose feed-forward activations exceed 65,000.
    """
    model_dir = Path(model_dir)
    model = T5EncoderModel.from_pretrained(str(model_dir), local_files_only=True)
    with torch.no_grad():
        model.shared.weight.add_(offset)
        # A uniform final norm keeps the common direction the all-ones vector the head removes.
        model.encoder.final_layer_norm.weight.fill_(1.0)
    model.save_pretrained(str(model_dir), safe_serialization=True)
    dense_dir = model_dir / "2_Dense"
    weight = load_file(str(dense_dir / "model.safetensors"))["linear.weight"]
    width = weight.shape[1]
    centering = torch.eye(width) - torch.full((width, width), 1.0 / width)
    state = {"linear.weight": (weight @ centering).contiguous()}
    save_file(state, str(dense_dir / "model.safetensors"))
    torch.save(state, dense_dir / "pytorch_model.bin")
    return model_dir


def main(argv: Sequence[str] | None = None) -> int:
    """Write an INSTRUCTOR-format test model (fixed-seed random weights, built offline) and print its folder."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("target", help="folder to write")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    args = parser.parse_args(argv)
    print(build_test_model(args.target, args.shape))
    return 0
