"""Back-translation score (issue 15, item 2; opt-in with ``translate.back_translation: true``).

The teacher translates each accepted row back into English and the row is scored by chrF (sacrebleu's
``sentence_chrf``: character 6-grams, beta 2, no word n-grams, i.e. chrF and not chrF++) against its English
source. chrF rather than ROUGE-L because chrF works on characters: a back-translation that inflects,
compounds or tokenises a word differently from the source still earns partial credit, while ROUGE-L's exact
word-sequence match punishes every paraphrase of a word and depends on a tokeniser. chrF is also the metric MT
evaluation uses for exactly this sentence-level comparison. Scores are 0-100; rows below
``translate.min_back_score`` get status "rejected" with the reason ``back_translation: ...``.

Requests go through the teacher client, so they are cached, retried and accounted like every teacher call; an
answer that cannot be parsed leaves the row unscored (kept, counted under ``unscored``), since a failed
back-translation says nothing about the forward translation.

Input/output rows: schemas.TRANSLATIONS (``back_score`` is filled for scored rows).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

from okapi.languages import get_language
from okapi.teacher import ChatRequest, ParseError
from okapi.translate import INSTRUCTION_FIELDS, TranslateConfig, extract_json_object, reason_code

log = logging.getLogger(__name__)

_BACK_PROMPT = (
    "The JSON object below is written in {lang}. Render the value of every key in English, keeping the keys "
    "themselves unchanged. Leave programming code as it is and translate only its comments. Give a faithful "
    "translation: do not summarise, explain or add anything. Reply with the JSON object alone."
)
_BINS = 10  # histogram of scores in bins of 10 chrF points


def _fields(row: dict[str, Any]) -> list[str]:
    # The fields the forward translation produced: those whose English source has text.
    return [k for k in INSTRUCTION_FIELDS if (row.get(f"en_{k}") or "").strip() and isinstance(row.get(k), str)]


def back_translation_requests(rows: list[dict[str, Any]], lang: str, cfg: TranslateConfig) -> list[ChatRequest]:
    """The teacher requests that back-translate ``rows`` (schemas.TRANSLATIONS; accepted rows only), one per row.

    The stage sends exactly these, so a cost estimate built on them (okapi.estimate) counts what will be sent.
    """
    name = get_language(lang).name
    prompt = _BACK_PROMPT.format(lang=name)
    out = []
    for row in rows:
        keys = _fields(row)
        if row.get("status", "ok") != "ok" or not keys:
            continue
        body = json.dumps({k: row[k] for k in keys}, ensure_ascii=False, indent=2)
        schema = None
        if cfg.structured:
            schema = {
                "type": "object",
                "properties": {k: {"type": "string"} for k in keys},
                "required": keys,
                "additionalProperties": False,
            }
        out.append(
            ChatRequest(
                key=row["id"],
                messages=[{"role": "user", "content": prompt + "\n\n" + body}],
                schema=schema,
                max_tokens=cfg.max_tokens,
            )
        )
    return out


def chrf(hypothesis: str, reference: str) -> float:
    """Sentence-level chrF (0-100) of ``hypothesis`` against ``reference``."""
    import sacrebleu

    return float(sacrebleu.sentence_chrf(hypothesis, [reference]).score)


def _parse(keys: list[str]) -> Any:
    def parse(text: str) -> dict[str, str]:
        obj = extract_json_object(text)
        if sorted(obj) != sorted(keys) or not all(isinstance(obj[k], str) for k in keys):
            raise ParseError(f"wrong_keys: the keys must be exactly {sorted(keys)} with string values")
        return obj

    return parse


def distribution(scores: list[float]) -> dict[str, Any]:
    """count, mean, min/max, quantiles and a 10-point histogram of chrF scores."""
    if not scores:
        return {"count": 0}
    s = sorted(scores)

    def q(p: float) -> float:
        # nearest-rank quantile: a value that occurs in the data, stable for tiny samples
        return round(s[min(len(s) - 1, max(0, round(p * (len(s) - 1))))], 2)

    hist = Counter(min(int(x // _BINS), _BINS - 1) for x in s)
    return {
        "count": len(s),
        "mean": round(sum(s) / len(s), 2),
        "min": round(s[0], 2),
        "p10": q(0.1),
        "p25": q(0.25),
        "median": q(0.5),
        "p75": q(0.75),
        "p90": q(0.9),
        "max": round(s[-1], 2),
        "histogram": {f"{b * _BINS}-{(b + 1) * _BINS}": hist.get(b, 0) for b in range(_BINS)},
    }


def back_translate(teacher: Any, rows: list[dict[str, Any]], lang: str, cfg: TranslateConfig) -> dict[str, Any]:
    """Score the accepted ``rows`` in place (``back_score``) and reject those below cfg.min_back_score; metrics.

    The teacher's parse function only checks the answer's form (same keys, string values); a row whose answer
    never parses stays accepted and unscored.
    """
    requests = back_translation_requests(rows, lang, cfg)
    by_id = {r["id"]: r for r in rows}
    scores: list[float] = []
    unscored: Counter[str] = Counter()
    rejected = 0
    # One parse function per batch: group the requests by their key set (at most 7 distinct sets).
    groups: dict[tuple[str, ...], list[ChatRequest]] = {}
    for req in requests:
        groups.setdefault(tuple(_fields(by_id[req.key])), []).append(req)
    for keys, group in groups.items():
        outcomes = teacher.run(group, _parse(list(keys)), desc=f"back-translate {lang}")
        for outcome in outcomes:
            row = by_id[outcome.key]
            if not outcome.ok:
                unscored[reason_code(outcome.reason)] += 1
                continue
            back = "\n".join(outcome.value[k] for k in keys)
            source = "\n".join(row[f"en_{k}"] for k in keys)
            score = chrf(back, source)
            row["back_score"] = round(score, 4)
            scores.append(score)
            if score < cfg.min_back_score:
                rejected += 1
                row["status"] = "rejected"
                row["reason"] = (
                    f"back_translation: chrF {score:.1f} of the back-translation against the English source is "
                    f"below translate.min_back_score = {cfg.min_back_score}"
                )
    log.info(
        "back-translation %s: %d scored, %d rejected, %d unscored", lang, len(scores), rejected, sum(unscored.values())
    )
    return {
        "metric": "chrF",
        "min_back_score": cfg.min_back_score,
        "requests": len(requests),
        "scored": len(scores),
        "rejected": rejected,
        "unscored_by_reason": dict(sorted(unscored.items())),
        "scores": distribution(scores),
    }
