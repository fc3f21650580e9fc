"""What is known per BEIR task: INSTRUCTOR's own instructions, self-id exclusion, published figures.

The instructions are INSTRUCTOR's evaluation settings, copied as data from the ``DEFINITIONS``
table of xlang-ai/instructor-embedding ``evaluation/MTEB/mteb/abstasks/AbsTaskRetrieval.py``
(entries ``hkunlp/instructor-base``, ``-large``, ``-xl``): one query and one corpus instruction
per task and model. Each model was scored with its own set, so the set is chosen by name
(``--instructions``), never guessed from the served archive.

``exclude_self`` follows MTEB's ``ignore_identical_ids`` (ArguAna, QuoraRetrieval): there a
query is also a document of the corpus, and finding itself is not a retrieval.
"""

from __future__ import annotations

import dataclasses

DEFAULT_INSTRUCTION_SET = "instructor-xl"
NO_INSTRUCTIONS = "none"


@dataclasses.dataclass(frozen=True)
class TaskInstructions:
    """The instruction put before every query and before every document of a task."""

    query: str = ""
    corpus: str = ""


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """A BEIR task by its archive name, with its MTEB name and MTEB's self-id rule."""

    beir_name: str
    mteb_name: str
    exclude_self: bool = False


TASKS: dict[str, TaskInfo] = {
    info.beir_name: info
    for info in (
        TaskInfo("scifact", "SciFact"),
        TaskInfo("nfcorpus", "NFCorpus"),
        TaskInfo("arguana", "ArguAna", exclude_self=True),
        TaskInfo("fiqa", "FiQA2018"),
        TaskInfo("trec-covid", "TRECCOVID"),
        TaskInfo("scidocs", "SCIDOCS"),
        TaskInfo("quora", "QuoraRetrieval", exclude_self=True),
        TaskInfo("nq", "NQ"),
        TaskInfo("hotpotqa", "HotpotQA"),
        TaskInfo("fever", "FEVER"),
        TaskInfo("climate-fever", "ClimateFEVER"),
        TaskInfo("dbpedia-entity", "DBPedia"),
        TaskInfo("msmarco", "MSMARCO"),
        TaskInfo("webis-touche2020", "Touche2020"),
    )
}

# Published nDCG@10 (x100) on the full test split (the INSTRUCTOR paper's MTEB results).
PUBLISHED_NDCG_AT_10: dict[str, dict[str, float]] = {
    "scifact": {"instructor-base": 57.83, "instructor-xl": 64.56},
    "nfcorpus": {"instructor-base": 31.59, "instructor-xl": 36.00},
    "arguana": {"instructor-base": 52.03, "instructor-xl": 55.65},
}

# instructor-base and -large share every instruction but ArguAna's.
_BASE_INSTRUCTIONS: dict[str, TaskInstructions] = {
    "scifact": TaskInstructions(
        query="Represent a Scientific query for retrieving a supporting passage; ",
        corpus="represent the Scientific passage for retrieval; ",
    ),
    "nfcorpus": TaskInstructions(
        query="Represent the Medicine question for retrieving a relevant document: ",
        corpus="Represent the medical document for retrieval: ",
    ),
    "arguana": TaskInstructions(
        query="Represent the Debate argument for retrieving a counter-argument: ",
        corpus="Represent the Counter debate argument: ",
    ),
    "fiqa": TaskInstructions(
        query="Represent the finance question for retrieving the supporting answers: ",
        corpus="Represent the finance answer for retrieval: ",
    ),
    "trec-covid": TaskInstructions(
        query="Represent the Coronavirus question for retrieving supporting documents: ",
        corpus="Represent the Coronavirus document for retrieval: ",
    ),
    "scidocs": TaskInstructions(
        query="Represent a Science question for retrieving supporting papers: ",
        corpus="Represent the Science paper: ",
    ),
    "quora": TaskInstructions(
        query="Represent the Quora question for retrieving duplicate questions: ",
        corpus="Represent the Quora question for retrieving duplicate questions: ",
    ),
    "nq": TaskInstructions(
        query="Represent the Wikipedia question for retrieving supporting documents: ",
        corpus="Represent the document for retrieval: ",
    ),
    "hotpotqa": TaskInstructions(
        query="Represent the Wikipedia question for retrieving supporting documents: ",
        corpus="Represent the document for retrieval: ",
    ),
    "fever": TaskInstructions(
        query="Represent the fact for retrieving supporting evidence: ",
        corpus="Represent the evidence for retrieval: ",
    ),
    "climate-fever": TaskInstructions(
        query="Represent the Climate question for retrieving supporting documents: ",
        corpus="Represent the document for retrieval: ",
    ),
    "dbpedia-entity": TaskInstructions(
        query="Represent the Wikipedia sentence for retrieving supporting documents: ",
        corpus="Represent the document for retrieval: ",
    ),
    "msmarco": TaskInstructions(
        query="Represent the question for retrieving supporting documents: ",
        corpus="Represent the document for retrieval: ",
    ),
    "webis-touche2020": TaskInstructions(
        query="Represent a question: ",
        corpus="Represent an argument: ",
    ),
}
_LARGE_INSTRUCTIONS = _BASE_INSTRUCTIONS | {
    "arguana": TaskInstructions(
        query="Represent a Debate argument for retrieving a counter-argument: ",
        corpus="Represent a Counter-argument: ",
    ),
}

INSTRUCTOR_INSTRUCTIONS: dict[str, dict[str, TaskInstructions]] = {
    "instructor-base": _BASE_INSTRUCTIONS,
    "instructor-large": _LARGE_INSTRUCTIONS,
    "instructor-xl": {
        "scifact": TaskInstructions(
            query="Represent the Scientific queries for retrieving a supporting passage: ",
            corpus="represent the scientific paragraph for retrieval: ",
        ),
        "nfcorpus": TaskInstructions(
            query="Represent the nutrition facts to retrieve Public medical articles: ",
            corpus="Represent the Public medical articles for retrieval: ",
        ),
        "arguana": TaskInstructions(
            query="Represent Debating conversations to retrieve a counter-argument: ",
            corpus="Represent counter-arguments: ",
        ),
        "fiqa": TaskInstructions(
            query="Represent the finance questions to retrieve a supporting answer: ",
            corpus="Represent the finance answers for retrieval: ",
        ),
        "trec-covid": TaskInstructions(
            query="Represent the Coronavirus questions to retrieve a supporting document: ",
            corpus="Represent the Coronavirus documents for retrieval: ",
        ),
        "scidocs": TaskInstructions(
            query="Represent a Science question for retrieving supporting papers: ",
            corpus="Represent the Science paper: ",
        ),
        "quora": TaskInstructions(
            query="Represent the Quora question to retrieve question: ",
            corpus="Represent the Quora question to retrieve question: ",
        ),
        "nq": TaskInstructions(
            query="Represent the Wikipedia question for retrieving supporting documents: ",
            corpus="Represent the document for retrieval: ",
        ),
        "hotpotqa": TaskInstructions(
            query="Represent the Wikipedia question for retrieving supporting documents: ",
            corpus="Represent the document for retrieval: ",
        ),
        "fever": TaskInstructions(
            query="Represent the fact for retrieving supporting evidence: ",
            corpus="Represent the evidence for retrieval: ",
        ),
        "climate-fever": TaskInstructions(
            query="Represent the Climate question for retrieving supporting documents: ",
            corpus="Represent the document for retrieval: ",
        ),
        "dbpedia-entity": TaskInstructions(
            query="Represent the Wikipedia questions to retrieve a supporting document: ",
            corpus="Represent the Wikipedia documents for retrieval: ",
        ),
        "msmarco": TaskInstructions(
            query="Represent the question for retrieving supporting documents: ",
            corpus="Represent the document for retrieval: ",
        ),
        "webis-touche2020": TaskInstructions(
            query="Represent questions: ",
            corpus="Represent arguments: ",
        ),
    },
}


def task_info(task: str | None) -> TaskInfo | None:
    """The known task of that BEIR (or MTEB) name, case-insensitive; ``None`` for the user's own data."""
    if not task:
        return None
    key = task.lower()
    for info in TASKS.values():
        if key in (info.beir_name, info.mteb_name.lower()):
            return info
    return None


def instruction_sets() -> list[str]:
    """Names accepted by ``--instructions``."""
    return [*INSTRUCTOR_INSTRUCTIONS, NO_INSTRUCTIONS]


def resolve_instructions(
    task: str | None,
    instruction_set: str = DEFAULT_INSTRUCTION_SET,
    query: str | None = None,
    corpus: str | None = None,
) -> TaskInstructions:
    """The instructions to use: the set's entry for the task, then each override that is given.

    An unknown task (the user's own data) has no built-in entry: both sides are empty unless
    overridden. Raises ``ValueError`` for an unknown set name.
    """
    if instruction_set != NO_INSTRUCTIONS and instruction_set not in INSTRUCTOR_INSTRUCTIONS:
        raise ValueError(f"unknown instruction set {instruction_set!r}; known: {instruction_sets()}")
    info = task_info(task)
    built_in = TaskInstructions()
    if info is not None and instruction_set != NO_INSTRUCTIONS:
        built_in = INSTRUCTOR_INSTRUCTIONS[instruction_set][info.beir_name]
    return TaskInstructions(
        query=built_in.query if query is None else query,
        corpus=built_in.corpus if corpus is None else corpus,
    )
