"""Inputs shared by the parity tests and the golden-vector script (plain Python, no torch).

The golden script runs these under the legacy stack; the tests run them under ours.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SCIENCE = "Represent the Science title for retrieving supporting documents:"
WIKI = "Represent the Wikipedia question for retrieving relevant passages:"
TEXT = "Parton energy loss in QCD matter and jet quenching at the LHC."
LONG_TEXT = " ".join(["Dynamical scalar degree of freedom in Horava-Lifshitz gravity."] * 90)

PARITY_CASES: dict[str, list[list[str]]] = {
    "basic": [[SCIENCE, TEXT]],
    "empty_instruction": [["", "An empty instruction pools every token of the text."]],
    # 'a' is one token plus </s>: context_len 0, pooled with the text.
    "one_token_instruction": [["a", "A one-token instruction is pooled with the text."]],
    # 'the' is two tokens plus </s>: context_len 2, masked.
    "two_token_instruction": [["the", "A two-token instruction is masked."]],
    "over_512_tokens": [[SCIENCE, LONG_TEXT]],
    "instruction_over_512_tokens": [[" ".join(["Represent the sentence:"] * 200), "Short text."]],
    "surrounding_whitespace": [["  Represent the sentence: ", "  \t padded text with spaces \n "]],
    "non_ascii": [["Represent the sentence:", "Café crème, Größe und Übermaß. 北京是中国的首都。"]],
    "one_text_two_instructions": [[SCIENCE, TEXT], [WIKI, TEXT]],
    "mixed_batch": [
        [SCIENCE, TEXT],
        ["", "Plain text without any instruction."],
        [WIKI, "Where is the Eiffel Tower? It stands in Paris, France."],
        ["a", "Numbers like 3.14159, 2026-11-22 and 42% appear in text."],
        ["Represent the Financial statement:", "The Federal Reserve raised interest rates on Wednesday."],
        [SCIENCE, LONG_TEXT],
    ],
}


def fingerprint(model_dir: str | Path) -> str:
    """SHA-256 over a model folder's files (names and bytes), to tie golden vectors to a model."""
    digest = hashlib.sha256()
    root = Path(model_dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
