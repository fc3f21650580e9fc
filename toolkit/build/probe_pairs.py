"""Built-in instruction + text pairs: the fidelity gate's probe set and int8 calibration pairs.

The probe set covers what breaks reduced precision: one-character and 500+ token texts, an empty and a
one-token instruction, long instructions, non-ASCII and symbols, and several instructions mixed
in one batch. Calibration pairs are generated from other templates, so the gate never measures
on the very pairs int8 was calibrated on.
"""

from __future__ import annotations

import itertools

LONG_PARAGRAPH = (
    "The committee reviewed the quarterly results, the supply chain delays in three regions, the "
    "hiring plan for the research group, and the migration of the billing system to the new cloud "
    "provider; each item was discussed with its owner, its risks and its deadline. "
)

PROBE_PAIRS: tuple[tuple[str, str], ...] = (
    ("Represent the Science title:", "3D ActionSLAM: wearable person tracking in multi-floor environments"),
    ("Represent the Wikipedia question for retrieving supporting documents:", "Where is the Eiffel Tower?"),
    ("Represent the Financial statement:", "The Federal Reserve raised interest rates by a quarter point."),
    ("", "A text with no instruction at all is pooled whole."),
    ("Q", "A one-token instruction is pooled with the text."),
    ("Represent the Medicine sentence for clustering:", "ok"),
    ("Represent the document for retrieval:", "x"),
    (
        "Represent the long, detailed and very specific instruction of a legal contract clause for retrieving "
        "the matching clauses from other contracts signed by the same parties in earlier years:",
        "The tenant shall pay the rent on the first day of each month.",
    ),
    ("Represent the sentence:", "Café crème, naïve façade, Größe, smørrebrød — déjà vu."),
    ("Represent the sentence:", "北京是中国的首都。東京は日本の首都です。서울은 한국의 수도입니다."),
    ("Represent the code snippet:", "def f(x): return {k: v ** 2 for k, v in x.items() if v > 0}  # 42%"),
    ("Represent the meeting notes for summarization:", LONG_PARAGRAPH * 14),
    ("Represent the news article:", "UPPER CASE HEADLINE: MARKETS RALLY AS INFLATION COOLS"),
    ("Represent the Science title:", "Parton energy loss in QCD matter and jet quenching at the LHC."),
)

_CALIBRATION_INSTRUCTIONS = (
    "Represent the query for retrieving relevant documents:",
    "Represent the document for retrieval:",
    "Represent the Amazon review for classifying its sentiment:",
    "Represent the Biology sentence for clustering:",
    "Represent the question:",
    "",
)
_CALIBRATION_TEXTS = (
    "How do I bake sourdough bread at home without a starter?",
    "The battery lasts two days and the screen is bright even in sunlight.",
    "Mitochondria produce most of the chemical energy needed by the cell.",
    "Stock prices fell sharply after the company missed its revenue forecast.",
    "Le musée ouvre à neuf heures; die Ausstellung endet im März.",
    "Error 504: the upstream server did not answer within 60 seconds.",
    "A short one.",
    "Rivers carry sediment to the sea, where it settles into deltas over thousands of years. " * 6,
)


def calibration_pairs(count: int = 48) -> list[tuple[str, str]]:
    """``count`` generated instruction + text pairs (every instruction with every text, cycled)."""
    pairs = itertools.cycle(itertools.product(_CALIBRATION_INSTRUCTIONS, _CALIBRATION_TEXTS))
    return list(itertools.islice(pairs, count))


# Accuracy control's validation texts: the lengths that break int8 first (one or two characters, a
# few words, a long passage), none of them a probe's or a calibration text.
_VALIDATION_TEXTS = (
    "ok",
    "y",
    "no thanks",
    "Is it raining in Lisbon today?",
    "Ein kurzer Satz über das Wetter.",
    "The invoice was paid late because the bank holiday moved the transfer to Tuesday.",
    "Glaciers advance in cold decades and retreat in warm ones, leaving moraines behind them. " * 8,
    "SELECT name, count(*) FROM orders GROUP BY name HAVING count(*) > 3;",
)


def validation_pairs() -> list[tuple[str, str]]:
    """Instruction + text pairs that NNCF's accuracy control validates a quantized model on (48)."""
    return list(itertools.product(_CALIBRATION_INSTRUCTIONS, _VALIDATION_TEXTS))
