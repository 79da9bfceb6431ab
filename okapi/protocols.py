"""Evaluation protocols: how each benchmark is put to the model (prompt, continuations, shots, shot split).

Every protocol scores multiple choice by log-likelihood of each continuation after the context (lm-eval's
``multiple_choice``), reports ``acc`` (argmax of the summed log-likelihoods) and ``acc_norm`` (argmax of the
log-likelihood divided by the continuation's length in characters), and builds a few-shot context the way both
lm-evaluation-harness and the authors' fork do: each shot is its query, a space and its gold continuation; shots
and the scored query are joined by a blank line; no description is prepended. What differs between protocols:

``lm_eval_okapi`` — lm-eval's own ``okapi`` task family (``lm_eval/tasks/okapi/{arc,hellaswag,mmlu}_multilingual``),
    which :mod:`okapi.evaluate` reimplements over local files and checks against lm-eval's task: ARC
    ``Question: {q}\\nAnswer:`` with the bracket clean-up and the whole option texts as continuations; HellaSwag
    ``{activity_label}: {ctx_a} {Ctx_b}`` cleaned, endings cleaned; MMLU ``{q}\\nA. ..\\nD. ..\\nAnswer:`` with the
    *letters* as continuations (so acc_norm equals acc) and shots taken in file order. lm-eval's okapi tasks set no
    shot count, so it is zero-shot unless evaluate.num_fewshot says otherwise.

``okapi_paper`` — the authors' fork (github.com/nlp-uoregon/mlmm-evaluation, ``lm_eval/tasks/multilingual_*.py``),
    which produced the paper's Tables 3-8: ARC 25-shot from the train split, ``Question: {q}\\nAnswer:`` with the
    option texts as given (no clean-up); HellaSwag 0-shot, the same query and clean-up as lm_eval_okapi; MMLU 25-shot
    drawn at random from the dev split, ``Question: {q}\\nChoices:\\nA. ..\\nD. ..\\nAnswer:`` with the *whole choice
    texts* as continuations (so acc_norm differs from acc). The exact shots drawn differ from the authors' run: their
    harness seeds one generator for document shuffling and shot sampling, ours is lm-eval's seeded sampler
    (evaluate.seed); the distribution is the same.

``leaderboard`` — the Open LLM Leaderboard's shot counts (ARC 25, HellaSwag 10, MMLU 5) on lm_eval_okapi's prompts.

A shot is never drawn from the split being scored: a benchmark with shots needs its shot-split file next to the
evaluation file (``<benchmark>_<split>.parquet``: ARC train, MMLU dev, HellaSwag train).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from okapi.config import ConfigError
from okapi.schemas import BENCHMARKS, LETTERS, MMLU_OPTIONS, OPTION_FIELDS

ProtocolName = Literal["okapi_paper", "lm_eval_okapi", "leaderboard"]
PROTOCOL_NAMES: tuple[str, ...] = ("okapi_paper", "lm_eval_okapi", "leaderboard")
METRICS = ("acc", "acc_norm")
# The split each benchmark's shots come from, in every protocol (Okapi's release names: m_arc train, m_mmlu dev).
# HellaSwag's release has only val, the scored split; shots for it need a translated train split.
SHOT_SPLIT = {"arc": "train", "mmlu": "dev", "hellaswag": "train"}


@dataclass(frozen=True)
class BenchmarkProtocol:
    """How one protocol evaluates one benchmark."""

    doc: str
    """Name of the process_*_docs function in this module that turns a record into {query, choices, gold}."""
    shots: int
    """Few-shot examples per scored document, unless evaluate.num_fewshot overrides them."""
    sampler: Literal["default", "first_n"]
    """lm-eval's few-shot sampler: "default" draws at random (seeded), "first_n" takes the shot file in order."""
    shot_split: str
    """The split the shots come from (file ``<benchmark>_<shot_split>.parquet``); never the scored split."""


PROTOCOLS: dict[str, dict[str, BenchmarkProtocol]] = {
    "lm_eval_okapi": {
        "arc": BenchmarkProtocol("process_arc_docs", 0, "default", SHOT_SPLIT["arc"]),
        "hellaswag": BenchmarkProtocol("process_hellaswag_docs", 0, "default", SHOT_SPLIT["hellaswag"]),
        "mmlu": BenchmarkProtocol("process_mmlu_docs", 0, "first_n", SHOT_SPLIT["mmlu"]),
    },
    "okapi_paper": {
        "arc": BenchmarkProtocol("process_paper_arc_docs", 25, "default", SHOT_SPLIT["arc"]),
        "hellaswag": BenchmarkProtocol("process_hellaswag_docs", 0, "default", SHOT_SPLIT["hellaswag"]),
        "mmlu": BenchmarkProtocol("process_paper_mmlu_docs", 25, "default", SHOT_SPLIT["mmlu"]),
    },
    "leaderboard": {
        "arc": BenchmarkProtocol("process_arc_docs", 25, "default", SHOT_SPLIT["arc"]),
        "hellaswag": BenchmarkProtocol("process_hellaswag_docs", 10, "default", SHOT_SPLIT["hellaswag"]),
        "mmlu": BenchmarkProtocol("process_mmlu_docs", 5, "first_n", SHOT_SPLIT["mmlu"]),
    },
}


def get_protocol(name: str, benchmark: str) -> BenchmarkProtocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"parameter evaluate.protocol = {name!r} is invalid; allowed: {', '.join(PROTOCOL_NAMES)}")
    if benchmark not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {benchmark!r}; allowed: {', '.join(BENCHMARKS)}")
    return PROTOCOLS[name][benchmark]


def shots_for(name: str, benchmark: str, override: dict[str, int] | None = None) -> int:
    """The protocol's shots for ``benchmark``, unless ``override`` (evaluate.num_fewshot) names the benchmark."""
    default = get_protocol(name, benchmark).shots
    return override[benchmark] if override is not None and benchmark in override else default


def shot_splits(name: str, benchmarks: list[str], override: dict[str, int] | None = None) -> dict[str, str]:
    """{benchmark: shot split} for the benchmarks that get at least one shot under this protocol and override."""
    return {b: get_protocol(name, b).shot_split for b in benchmarks if shots_for(name, b, override) > 0}


def describe(name: str, shots: dict[str, int]) -> str:
    """One line naming the protocol and its shots, e.g. ``okapi_paper (arc 25-shot, mmlu 25-shot)``."""
    return f"{name} (" + ", ".join(f"{b} {n}-shot" for b, n in shots.items()) + ")"


# --- record -> {query, choices, gold} ------------------------------------------------------------------------------


def clean_text(text: str) -> str:
    """The okapi tasks' clean-up of WikiHow artefacts: strip, " [title]" -> ". ", drop other [tags], fold "  "."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def present_options(doc: dict[str, Any]) -> list[str]:
    # Every set option in order; record validation guarantees there are no gaps.
    return [doc[f] for f in OPTION_FIELDS if doc.get(f)]


def arc_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """lm_eval_okapi ARC: cleaned question and option texts."""
    return {
        "query": "Question: " + clean_text(doc["instruction"]) + "\nAnswer:",
        "choices": [clean_text(o) for o in present_options(doc)],
        "gold": LETTERS.index(doc["answer"]),
    }


def mmlu_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """lm_eval_okapi MMLU: the lettered options in the query, the letters as continuations."""
    options = "".join(
        f"\n{letter}. {doc[f]}" for letter, f in zip(LETTERS[:MMLU_OPTIONS], OPTION_FIELDS[:MMLU_OPTIONS], strict=True)
    )
    return {
        "query": doc["instruction"].strip() + options + "\nAnswer:",
        "choices": list(LETTERS[:MMLU_OPTIONS]),
        "gold": LETTERS.index(doc["answer"]),
    }


def hellaswag_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """Both protocols' HellaSwag: ``{activity_label}: {ctx_a} {ctx_b capitalised}`` and endings, cleaned."""
    # str.capitalize also lowercases the rest of ctx_b; kept because both harnesses do it.
    ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    return {
        "query": clean_text(doc["activity_label"] + ": " + ctx),
        "choices": [clean_text(e) for e in doc["endings"]],
        "gold": int(doc["label"]),
    }


def paper_arc_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """okapi_paper ARC: the authors' fork applies no clean-up to the question or the option texts."""
    return {
        "query": "Question: " + doc["instruction"] + "\nAnswer:",
        "choices": present_options(doc),
        "gold": LETTERS.index(doc["answer"]),
    }


def paper_mmlu_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """okapi_paper MMLU: a "Choices:" block in the query and the whole choice texts as continuations."""
    choices = [doc[f] for f in OPTION_FIELDS[:MMLU_OPTIONS]]
    listed = "".join(f"{letter}. {text}\n" for letter, text in zip(LETTERS, choices, strict=False))
    return {
        "query": "Question: " + doc["instruction"] + "\nChoices:\n" + listed + "Answer:",
        "choices": choices,
        "gold": LETTERS.index(doc["answer"]),
    }


# lm-eval's task YAML names these with ``!function okapi.protocols.<name>``; each maps a datasets.Dataset.


def process_arc_docs(dataset: Any) -> Any:
    return dataset.map(arc_doc)


def process_mmlu_docs(dataset: Any) -> Any:
    return dataset.map(mmlu_doc)


def process_hellaswag_docs(dataset: Any) -> Any:
    return dataset.map(hellaswag_doc)


def process_paper_arc_docs(dataset: Any) -> Any:
    return dataset.map(paper_arc_doc)


def process_paper_mmlu_docs(dataset: Any) -> Any:
    return dataset.map(paper_mmlu_doc)


def doc_function(name: str, benchmark: str) -> Any:
    """The record -> {query, choices, gold} function a protocol uses for ``benchmark`` (for previews and tests)."""
    return {
        "process_arc_docs": arc_doc,
        "process_mmlu_docs": mmlu_doc,
        "process_hellaswag_docs": hellaswag_doc,
        "process_paper_arc_docs": paper_arc_doc,
        "process_paper_mmlu_docs": paper_mmlu_doc,
    }[get_protocol(name, benchmark).doc]
