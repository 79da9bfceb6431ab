"""Ranking data production with the teacher: a two-turn dialog per prompt (paper §2.3, Fig. 3-4).

Turn 1 asks the teacher to translate the target-language instruction, input and the T sampled responses into
English (Fig. 3); turn 2 continues the same conversation, with the turn-1 answer as the assistant message, and asks
for an overall rank of each response by correctness, coherence and naturalness, 1 = best, no ties, one line per
response in the original order, no explanation (Fig. 4). Ranking in English plays to the teacher's strength and
leaves the multilingual difficulty to the translation turn. English samples (the source language) skip turn 1:
one request holds the listing and the ranking request.

Answer format. The prompt asks for "Response r: overall rank: k" lines. The paper's own example of ChatGPT's output
is the compact "Response 1: 3 Response 2: 1 ...", so that form is accepted too: it is unambiguous, and rejecting it
would throw away answers the paper used. Anything else is rejected (extra text, missing or extra entries, wrong
order, out-of-range ranks, ties), since a ranking that has to be guessed at would only add noise to the reward
model. Small teachers answer through RANKING_SCHEMA instead ({"ranks": [rank of response 1, ...]}).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal

from okapi.config import check, check_choices
from okapi.io import DataError
from okapi.languages import get_language
from okapi.teacher import ChatRequest, Outcome, ParseError

log = logging.getLogger(__name__)

EMPTY_INPUT = "<empty>"
PAIR_MODES = ("all", "best_worst", "adjacent")

RANKING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"ranks": {"type": "array", "items": {"type": "integer"}}},
    "required": ["ranks"],
    "additionalProperties": False,
}


def ranking_schema(t: int) -> dict[str, Any]:
    """RANKING_SCHEMA narrowed to exactly ``t`` ranks in 1..t, so a grammar-constrained teacher cannot answer with
    too few or out-of-range entries (ties are still possible and rejected by the parser)."""
    ranks = {"type": "array", "items": {"type": "integer", "enum": list(range(1, t + 1))}, "minItems": t, "maxItems": t}
    return {**RANKING_SCHEMA, "properties": {"ranks": ranks}}


@dataclass
class RankConfig:
    """The ``rank`` section: the teacher's two-turn ranking (translate to English, then rank) and the pairs."""

    structured: bool = True
    """Turn 2 answers through RANKING_SCHEMA (small teachers); false: the paper's Fig. 4 text lines."""
    max_attempts: int | None = 3
    """Answers per turn, re-asks included (null: the teacher's default)."""
    max_tokens: int | None = 384
    """Longest answer in tokens (null: the teacher's default)."""
    pairs: Literal["all", "best_worst", "adjacent"] = "all"
    """Preference pairs per ranking: all ordered pairs of the T responses, best against worst only, or
    neighbouring ranks."""

    def __post_init__(self) -> None:
        check_choices(self, "rank")
        check(
            self.max_attempts is None or self.max_attempts >= 1,
            "rank.max_attempts",
            self.max_attempts,
            "null or an integer >= 1",
        )
        check(self.max_tokens is None or self.max_tokens >= 16, "rank.max_tokens", self.max_tokens, "null or >= 16")


_NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}

_LISTING = (
    "You will be given an instruction, an input for the instruction, and {count} possible responses to the "
    "instruction. The input may be empty, in which case it is shown as {empty}."
)
_TURN1 = _LISTING + " Translate the instruction, the input and the responses into English."
_TURN2 = (
    "Using the translated instruction, input and responses, rank the responses by three criteria: correctness "
    "with respect to the instruction and the input, coherence, and naturalness.\n\n"
    "Give each response one overall rank that takes all three criteria into account. The overall rank of a "
    "response is an integer from 1 to {t}, where 1 is the best response and {t} the worst. Two different "
    "responses cannot have the same rank.\n\n"
)
_TURN2_TEXT = (
    'Your output must be one line per response in the format "Response r: overall rank: k", with the responses '
    "in their original order. Do not include any explanation in your output."
)
_TURN2_JSON = (
    'Your output must be a JSON object {{"ranks": [...]}} whose list holds the overall ranks of Response 1 to '
    "Response {t}, in this order. Do not include any explanation in your output."
)


def build_turn1(instruction: str, input: str, responses: list[str], *, translate: bool = True) -> list[dict[str, str]]:
    """Fig. 3: ask for the English translation of the instruction, the input (<empty> when empty) and responses.

    ``translate=False`` (English samples): the same listing without the translation request."""
    if len(responses) < 2:
        raise ValueError(f"ranking needs at least 2 responses, got {len(responses)}")
    count = _NUMBER_WORDS.get(len(responses), str(len(responses)))
    lines = [
        (_TURN1 if translate else _LISTING).format(count=count, empty=EMPTY_INPUT),
        "",
        f"Instruction: {instruction.strip()}",
        f"Input: {input.strip() or EMPTY_INPUT}",
    ]
    lines += [f"Response {r}: {text.strip()}" for r, text in enumerate(responses, start=1)]
    return [{"role": "user", "content": "\n".join(lines)}]


_RESPONSE_LABEL_RE = re.compile(r"^Response (\d+): ", re.MULTILINE)


def build_turn2(
    turn1_messages: list[dict[str, str]],
    turn1_answer: str,
    *,
    num_responses: int | None = None,
    structured: bool = False,
) -> list[dict[str, str]]:
    """Fig. 4: the turn-1 conversation, its answer, then the ranking request for ``num_responses`` responses
    (by default, the number of "Response r:" lines in the turn-1 request)."""
    t = num_responses
    if t is None:
        labels = [int(m.group(1)) for m in _RESPONSE_LABEL_RE.finditer(turn1_messages[-1]["content"])]
        t = max(labels) if labels else 0
    if t < 2:
        raise ValueError("cannot tell how many responses the turn-1 request holds; pass num_responses")
    prompt = _TURN2.format(t=t) + (_TURN2_JSON if structured else _TURN2_TEXT).format(t=t)
    return [
        *turn1_messages,
        {"role": "assistant", "content": turn1_answer},
        {"role": "user", "content": prompt},
    ]


def build_source_ranking(
    instruction: str, input: str, responses: list[str], *, structured: bool = False
) -> list[dict[str, str]]:
    """English samples (the source language) skip Fig. 3's translation turn: one message with the listing and Fig.
    4's ranking request."""
    listing = build_turn1(instruction, input, responses, translate=False)[0]["content"]
    t = len(responses)
    prompt = _TURN2.format(t=t) + (_TURN2_JSON if structured else _TURN2_TEXT).format(t=t)
    return [{"role": "user", "content": listing + "\n\n" + prompt}]


_ENTRY_RE = re.compile(
    r"<?\s*Response\s*(\d+)\s*>?[*_]*\s*[:=\-]\s*(?:overall\s+rank\s*[:=\-]?\s*)?<?\s*(\d+)\s*>?",
    re.IGNORECASE,
)
# What may surround the entries: whitespace, list punctuation and markdown emphasis.
_FILLER_RE = re.compile(r"^[\s,;.*_|\-]*$")


def _check_ranks(ranks: list[int], t: int) -> list[int]:
    if len(ranks) < t:
        raise ParseError(f"missing_entries: {len(ranks)} ranks for {t} responses")
    if len(ranks) > t:
        raise ParseError(f"extra_entries: {len(ranks)} ranks for {t} responses")
    if any(not 1 <= k <= t for k in ranks):
        raise ParseError(f"rank_out_of_range: ranks {ranks} must lie between 1 and {t}")
    if len(set(ranks)) != t:
        raise ParseError(f"tie: ranks {ranks} repeat a rank; each of 1..{t} must be used once")
    return ranks


def parse_ranking(text: str, t: int) -> list[int]:
    """Ranks (1 = best) of responses 1..t from "Response r: overall rank: k" lines or the compact form.

    Raises ParseError whose reason starts with: no_ranking, extra_text, missing_entries, extra_entries,
    out_of_order, rank_out_of_range, tie.
    """
    entries = list(_ENTRY_RE.finditer(text))
    if not entries:
        raise ParseError("no_ranking: no 'Response r: overall rank: k' entry in the answer")
    rest = _ENTRY_RE.sub(" ", text)
    if not _FILLER_RE.match(rest):
        raise ParseError(f"extra_text: the answer holds more than the ranking ({rest.strip()[:60]!r})")
    numbers = [int(m.group(1)) for m in entries]
    ranks = [int(m.group(2)) for m in entries]
    if len(entries) < t:
        raise ParseError(f"missing_entries: {len(entries)} entries for {t} responses")
    if len(entries) > t:
        raise ParseError(f"extra_entries: {len(entries)} entries for {t} responses")
    if numbers != list(range(1, t + 1)):
        raise ParseError(f"out_of_order: responses listed as {numbers}, expected 1..{t} in order")
    return _check_ranks(ranks, t)


def parse_ranking_json(text: str, t: int) -> list[int]:
    """Ranks from a structured answer {"ranks": [rank of response 1, ..., rank of response t]}."""
    s = text.strip()
    fenced = re.fullmatch(r"```[A-Za-z]*\s*\n?(.*?)\n?```", s, re.DOTALL)
    try:
        obj = json.loads(fenced.group(1) if fenced else s)
    except json.JSONDecodeError as err:
        raise ParseError(f"not_json: the answer is not a JSON object ({err.msg})") from err
    ranks = obj.get("ranks") if isinstance(obj, dict) else None
    if not isinstance(ranks, list) or not all(isinstance(k, int) and not isinstance(k, bool) for k in ranks):
        raise ParseError('wrong_shape: expected {"ranks": [integers]}')
    return _check_ranks(list(ranks), t)


def _nonempty(text: str) -> str:
    if not text.strip():
        raise ParseError("empty_translation: the turn-1 answer is empty")
    return text


def _check_sample(sample: dict[str, Any], number: int) -> None:
    where = f"sample row {number}"
    for key in ("id", "instruction", "input"):
        if not isinstance(sample.get(key), str):
            raise DataError(f"{where}: field {key!r} must be a string")
    responses = sample.get("responses")
    if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
        raise DataError(f"{where} (id {sample['id']}): field 'responses' must be a list of strings")


def rank_samples(
    teacher: Any, samples: list[dict[str, Any]], lang: str, cfg: RankConfig
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Two-turn ranking of every sample (schemas.SAMPLES rows); rows in schemas.RANKINGS and metrics.

    Samples with fewer than 2 responses, an empty response or an id seen before are dropped and counted.
    A sample whose turn 1 or turn 2 fails keeps a row with status "rejected", null ranks and the reason.

    Input columns: schemas.SAMPLES: id, lang, instruction, input, responses.
    Output columns: schemas.RANKINGS: id, lang, instruction, input, responses, ranks, english, status, reason, raw,
        attempts.
    """
    source = get_language(lang).is_source
    dropped: Counter[str] = Counter({"too_few_responses": 0, "empty_response": 0, "duplicate_id": 0})
    valid: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, sample in enumerate(samples, start=1):
        _check_sample(sample, number)
        if sample["id"] in seen:
            dropped["duplicate_id"] += 1
            continue
        seen.add(sample["id"])
        if len(sample["responses"]) < 2:
            dropped["too_few_responses"] += 1
        elif any(not r.strip() for r in sample["responses"]):
            dropped["empty_response"] += 1
        else:
            valid.append(sample)
    if sum(dropped.values()):
        log.warning("dropped %d samples before ranking: %s", sum(dropped.values()), dict(dropped))

    turn1 = {s["id"]: build_turn1(s["instruction"], s["input"], s["responses"]) for s in valid}
    if source:
        # English samples need no translation into English: turn 1 is skipped (no request, no English column).
        first = {s["id"]: Outcome(s["id"], None, None, None, 0) for s in valid}
    else:
        out1 = teacher.run(
            [ChatRequest(key=s["id"], messages=turn1[s["id"]], max_tokens=cfg.max_tokens) for s in valid],
            _nonempty,
            desc=f"rank {lang}: translate",
            max_attempts=cfg.max_attempts,
        )
        first = {o.key: o for o in out1}

    second: dict[str, Any] = {}
    by_t: dict[int, list[dict[str, Any]]] = {}
    for s in valid:
        if first[s["id"]].ok:
            by_t.setdefault(len(s["responses"]), []).append(s)
    for t, group in sorted(by_t.items()):
        parser = parse_ranking_json if cfg.structured else parse_ranking
        requests = [
            ChatRequest(
                key=s["id"],
                messages=build_source_ranking(s["instruction"], s["input"], s["responses"], structured=cfg.structured)
                if source
                else build_turn2(turn1[s["id"]], first[s["id"]].value, num_responses=t, structured=cfg.structured),
                schema=ranking_schema(t) if cfg.structured else None,
                max_tokens=cfg.max_tokens,
            )
            for s in group
        ]
        outcomes = teacher.run(
            requests, lambda text, t=t, p=parser: p(text, t), desc=f"rank {lang}: rank", max_attempts=cfg.max_attempts
        )
        second.update({o.key: o for o in outcomes})

    rows = []
    reasons: Counter[str] = Counter()
    for s in valid:
        o1 = first[s["id"]]
        o2 = second.get(s["id"])
        if not o1.ok:
            status, reason, raw, ranks = "rejected", f"turn1: {o1.reason}", o1.text, None
        elif not o2.ok:
            status, reason, raw, ranks = "rejected", f"turn2: {o2.reason}", o2.text, None
        else:
            status, reason, raw, ranks = "ok", None, o2.text, o2.value
        if reason:
            turn, _, detail = reason.partition(": ")
            reasons[f"{turn}:{detail.split(':', 1)[0]}"] += 1
        rows.append(
            {
                "id": s["id"],
                "lang": lang,
                "instruction": s["instruction"],
                "input": s["input"],
                "responses": list(s["responses"]),
                "ranks": ranks,
                "english": o1.text,
                "status": status,
                "reason": reason,
                "raw": raw,
                "attempts": o1.attempts + (o2.attempts if o2 is not None else 0),
            }
        )
    ok_rows = [r for r in rows if r["status"] == "ok"]
    metrics = {
        "samples": len(samples),
        "dropped": sum(dropped.values()),
        "dropped_by_reason": dict(sorted(dropped.items())),
        "ranked": len(ok_rows),
        "rejected": len(rows) - len(ok_rows),
        "acceptance_rate": round(len(ok_rows) / len(rows), 4) if rows else 0.0,
        "rejected_by_reason": dict(sorted(reasons.items())),
        # English (the source language) skips turn 1, the translation into English.
        "translation_turn": "skipped" if source else "sent",
        # A teacher that prefers a position (first, last) rather than content shows up here.
        "mean_rank_by_position": _mean_rank_by_position(ok_rows),
    }
    return rows, metrics


def _mean_rank_by_position(rows: list[dict[str, Any]]) -> list[float]:
    width = max((len(r["ranks"]) for r in rows), default=0)
    out = []
    for pos in range(width):
        vals = [r["ranks"][pos] for r in rows if len(r["ranks"]) > pos]
        out.append(round(sum(vals) / len(vals), 4) if vals else 0.0)
    return out


def make_pairs(rankings: list[dict[str, Any]], mode: str = "all") -> list[dict[str, Any]]:
    """Preference pairs (schemas.PAIRS) from accepted rankings.

    all: every pair of responses (InstructGPT's C(T, 2) comparisons); best_worst: rank 1 vs rank T; adjacent:
    rank k vs rank k + 1. Pairs of identical texts are skipped (no preference to learn). The pair id is
    "<prompt id>:<chosen response number>><rejected response number>", so it traces back to the prompt.

    Input columns: schemas.RANKINGS (rows with status "ok").
    Output columns: schemas.PAIRS: id, lang, instruction, input, chosen, rejected.
    """
    if mode not in PAIR_MODES:
        raise ValueError(f"pair mode {mode!r} is invalid; allowed: {', '.join(PAIR_MODES)}")
    pairs = []
    for row in rankings:
        if row.get("status") != "ok" or not row.get("ranks"):
            continue
        responses, ranks = row["responses"], row["ranks"]
        order = sorted(range(len(ranks)), key=lambda i: ranks[i])  # best first
        if mode == "all":
            chosen_rejected = list(combinations(order, 2))
        elif mode == "best_worst":
            chosen_rejected = [(order[0], order[-1])]
        else:
            chosen_rejected = list(zip(order, order[1:], strict=False))
        for c, r in chosen_rejected:
            if responses[c] == responses[r]:
                continue
            pairs.append(
                {
                    "id": f"{row['id']}:{c + 1}>{r + 1}",
                    "lang": row["lang"],
                    "instruction": row["instruction"],
                    "input": row["input"],
                    "chosen": responses[c],
                    "rejected": responses[r],
                }
            )
    return pairs
