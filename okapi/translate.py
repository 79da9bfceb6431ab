"""Translation of the English instructions and of the evaluation sets with the teacher (paper §2.2, §2.4, Fig. 2).

Each example goes to the teacher as a JSON object ({"instruction", "input", "output"} or a benchmark item's text
fields) after Fig. 2's prompt; the answer must be the same JSON object with translated values. Every answer is
checked before it is accepted: a JSON object with the same keys, no emptied value, code blocks and inline code kept
(comments in code may be translated, as Fig. 2 asks), and not left in English (identical to the source, the target
language's script(s) from okapi.languages, and py3langid with known neighbour confusions accepted, when py3langid
knows the language; otherwise that check is counted as not run in the metrics). English, the source language,
passes through with no teacher request. A rejected answer is
asked again with the reason appended to the conversation, up to ``max_attempts`` answers per example; an example
that never passes is kept with status "rejected", its last raw answer and the reason (DESIGN: never a silent
default).

The teacher client takes one parse function for a whole batch while the checks depend on each source record, so
the batch parse only extracts the JSON object and the per-record checks run on the answers afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from okapi.config import ConfigError, check, check_choices
from okapi.io import DataError
from okapi.languages import get_language
from okapi.schemas import BENCHMARKS, MULTIPLE_CHOICE_BENCHMARKS, OPTION_FIELDS
from okapi.teacher import ChatRequest, ParseError

log = logging.getLogger(__name__)

INSTRUCTION_FIELDS = ("instruction", "input", "output")
# The columns of schemas.INSTRUCTIONS translation reads (not the similarity ones generate adds).
INSTRUCTION_COLUMNS = ("id", "source", *INSTRUCTION_FIELDS)
SFT_SOURCES = ("seed", "pool")
GENERATED_SOURCE = "generated"


@dataclass
class TranslateConfig:
    """The ``translate`` section: instructions and evaluation sets translated by the teacher."""

    limit: int | None = 20
    """Rows per language (null: all); a stratified subset keeps every split non-empty."""
    eval_limit: int | None = 6
    """First N records of each evaluation set (null: all)."""
    eval_sources: dict[str, str] = field(default_factory=dict)
    """English benchmark sources from the hub, by benchmark ("<id>[:<config>]@<split>", okapi.eval_sources); a
    benchmark not listed comes from the local data/eval_sources/<benchmark>.jsonl. Keys <benchmark>_<split>
    (arc_train, mmlu_dev, hellaswag_train) name the split evaluate.protocol draws shots from."""
    max_attempts: int = 2
    """Answers per example, the re-asks included."""
    rank_fraction: float = 0.4
    """Share of the generated rows for ranking (paper: 42K of 106K); the rest are PPO prompts."""
    pool_fraction: float | None = 0.4
    """Under a limit, the share of it taken from the seed/pool (sft) part; null: proportional to the data. The
    paper's mix is 52K pool of 158K (0.33); a small run whose pool is only the seeds needs it to keep enough
    generated rows for ranking and PPO."""
    seed: int = 42
    """Seeds which rows a limit keeps and the rank/ppo split."""
    langid: bool = True
    """Run py3langid on top of the script check."""
    structured: bool = True
    """Ask for the JSON object through a schema (small teachers)."""
    language_checks: Literal["enforce", "report"] = "report"
    """enforce: an answer that fails the language checks (untranslated, wrong script, langid) is re-asked, then
    rejected. report: it is accepted and counted under language_warnings, only for teachers that cannot translate
    at all (the embedded 135M model mostly repeats the English), so the pipeline's mechanics still run; the
    paper-scale profile enforces."""
    max_tokens: int | None = 512
    """Longest answer in tokens (null: the teacher's default)."""
    decontaminate: Literal["drop", "report", "off"] = "drop"
    """Training rows (both their translation and their English source) sharing a word n-gram with an evaluation
    item this language uses (the English sources and their translations): drop (status rejected, reason
    "contaminated", left out of every split), report (counted in metrics only) or off. Counts per benchmark, split
    and source go to metrics (decontamination)."""
    decontaminate_ngram: int = 13
    """n of the n-gram overlap, in normalised words (13: GPT-3's and lm-eval's decontamination)."""
    back_translation: bool = False
    """Opt-in: the teacher translates each accepted row back to English and the row is scored by chrF (0-100)
    against its English source; rows below min_back_score are rejected (reason "back_translation")."""
    min_back_score: float = 40.0
    """chrF (0-100) a back-translated row must reach to be kept (only with back_translation: true)."""

    def __post_init__(self) -> None:
        check_choices(self, "translate")
        check(
            2 <= self.decontaminate_ngram <= 64,
            "translate.decontaminate_ngram",
            self.decontaminate_ngram,
            "an integer from 2 to 64",
        )
        check(
            0.0 <= self.min_back_score <= 100.0,
            "translate.min_back_score",
            self.min_back_score,
            "a number from 0 to 100 (chrF)",
        )
        from okapi.eval_sources import SOURCE_KEYS, parse_hub_spec

        for bench, spec in self.eval_sources.items():
            check(bench in SOURCE_KEYS, f"translate.eval_sources.{bench}", spec, f"keys among {', '.join(SOURCE_KEYS)}")
            parse_hub_spec(spec, f"translate.eval_sources.{bench}")
        check(self.limit is None or self.limit >= 1, "translate.limit", self.limit, "null or an integer >= 1")
        check(
            self.eval_limit is None or self.eval_limit >= 1,
            "translate.eval_limit",
            self.eval_limit,
            "null or an integer >= 1",
        )
        check(self.max_attempts >= 1, "translate.max_attempts", self.max_attempts, "an integer >= 1")
        check(0.0 < self.rank_fraction < 1.0, "translate.rank_fraction", self.rank_fraction, "a number in (0, 1)")
        check(
            self.pool_fraction is None or 0.0 < self.pool_fraction < 1.0,
            "translate.pool_fraction",
            self.pool_fraction,
            "null or a number in (0, 1)",
        )
        check(
            self.max_tokens is None or self.max_tokens >= 16,
            "translate.max_tokens",
            self.max_tokens,
            "null or an integer >= 16",
        )


# -- prompt -------------------------------------------------------------------------------------------------------
_PROMPT = (
    "Translate the values of the following JSON object into {lang}. Keep every key of the JSON object in English, "
    "exactly as it is. If a value contains programming code, translate only the comments in the code and leave "
    "the code itself unchanged. Your translation must carry all of the content of the original text and must not "
    "add explanations or any other information. Make sure the translation reads naturally to native speakers, "
    "with correct grammar and well-chosen words, and use precise terminology so that it stays accurate even for "
    "experts in the field. Your output must contain only a JSON object with the translated text, without any "
    "explanation or other information."
)
_RETRY = (
    "Your answer was rejected: {reason}. Translate the JSON object again into {lang}, following every requirement, "
    "and output only the JSON object."
)


def build_messages(record: dict[str, str], lang_name: str) -> list[dict[str, str]]:
    """Fig. 2's prompt followed by the JSON object to translate, as one user message."""
    body = json.dumps(record, ensure_ascii=False, indent=2)
    return [{"role": "user", "content": _PROMPT.format(lang=lang_name) + "\n\n" + body}]


def _schema(keys: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {k: {"type": "string"} for k in keys},
        "required": list(keys),
        "additionalProperties": False,
    }


# -- answer checks ------------------------------------------------------------------------------------------------
_FENCE_RE = re.compile(r"```[^\n`]*\n?(.*?)```", re.DOTALL)
_INLINE_RE = re.compile(r"`([^`\n]+)`")
_BLOCK_COMMENT_RE = re.compile(r'/\*.*?\*/|<!--.*?-->|""".*?"""|\'\'\'.*?\'\'\'', re.DOTALL)
_LINE_COMMENT_RE = re.compile(r"(//|#|--\s).*$", re.MULTILINE)
_WORD_RE = re.compile(r"[^\W\d_]{2,}")

# py3langid often confuses these close languages on short texts; any member counts as the target.
NEIGHBOURS: tuple[frozenset[str], ...] = (
    frozenset({"hr", "sr", "bs", "sl"}),
    frozenset({"hi", "mr", "ne", "sa"}),
    frozenset({"id", "ms", "jv"}),
    frozenset({"da", "no", "nn", "sv"}),
    frozenset({"cs", "sk"}),
    frozenset({"es", "ca", "gl", "an", "oc"}),
    frozenset({"ru", "uk", "be", "bg"}),
    frozenset({"zh", "wuu", "yue"}),
    frozenset({"ar", "arz", "ary"}),
    frozenset({"bn", "as"}),
    frozenset({"nl", "af", "fy", "lb"}),
    frozenset({"de", "lb"}),
    frozenset({"it", "vec", "lij"}),
)
# Below these sizes the script share and py3langid say little; the same-as-source check still applies.
_MIN_SCRIPT_LETTERS = 12
_MIN_LANGID_LETTERS = 40
# A translation may keep English names and terms, so only a small share of the expected script(s) is required,
# except for Latin-script targets, where foreign letters are rare.
_MIN_LATIN_SHARE = 0.5
_DEFAULT_MIN_SCRIPT_SHARE = 0.25
_MIN_NEIGHBOUR_PROB = 0.2


def accepted_languages(lang: str) -> frozenset[str]:
    """py3langid codes that count as ``lang`` (its own and its close neighbours'); empty when py3langid does not
    know the language."""
    code = get_language(lang).langid
    if code is None:
        return frozenset()
    group = {code}
    for members in NEIGHBOURS:
        if code in members:
            group |= members
    return frozenset(group)


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def _split_code(text: str) -> tuple[list[str], list[str], str]:
    """(fenced code blocks without comments, inline code spans sorted, the prose left around them)."""
    fenced = [_code_without_comments(m.group(1)) for m in _FENCE_RE.finditer(text)]
    rest = _FENCE_RE.sub(" ", text)
    inline = sorted(m.group(1).strip() for m in _INLINE_RE.finditer(rest))
    prose = _INLINE_RE.sub(" ", rest)
    return fenced, inline, prose


def _code_without_comments(code: str) -> str:
    # Fig. 2 lets the teacher translate comments, so code is compared with comments (and blank lines) removed.
    code = _BLOCK_COMMENT_RE.sub("", code)
    code = _LINE_COMMENT_RE.sub("", code)
    return "\n".join(line.strip() for line in code.splitlines() if line.strip())


def _letters(text: str) -> list[str]:
    return [ch for ch in text if ch.isalpha()]


@lru_cache(maxsize=64)
def _script_pattern(scripts: tuple[str, ...]) -> Any:
    import regex

    # Script_Extensions, so marks shared by several scripts (Japanese's prolonged-sound mark) count for each;
    # intersected with letters (\p{L}, what str.isalpha counts), so shared CJK punctuation is not a hit.
    return regex.compile(r"(?V1)[[" + "".join(rf"\p{{scx={s}}}" for s in scripts) + r"]&&\p{L}]")


def script_share(text: str, scripts: str | tuple[str, ...]) -> tuple[int, float]:
    """(number of letters, share of them in any of ``scripts``: Unicode script aliases such as Latn or Hira)."""
    pattern = _script_pattern((scripts,) if isinstance(scripts, str) else tuple(scripts))
    letters = _letters(text)
    if not letters:
        return 0, 0.0
    hits = len(pattern.findall(text))  # one pass in C, not a match per letter
    return len(letters), hits / len(letters)


def detect_language(text: str) -> list[tuple[str, float]]:
    """py3langid's ranking (language, probability), best first."""
    return _identifier().rank(text)


def extract_json_object(text: str) -> dict[str, Any]:
    """The JSON object of an answer (bare, in a ``` fence, or the outermost {...}); ParseError otherwise."""
    s = text.strip()
    fenced = re.fullmatch(r"```[A-Za-z]*\s*\n?(.*?)\n?```", s, re.DOTALL)
    candidates = [s]
    if fenced:
        candidates.append(fenced.group(1))
    if "{" in s and "}" in s:
        candidates.append(s[s.index("{") : s.rindex("}") + 1])
    for cand in candidates:
        try:
            obj = json.loads(cand)
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            raise ParseError(f"not_object: the answer is a JSON {type(obj).__name__}, not an object")
        return obj
    raise ParseError("not_json: the answer contains no valid JSON object")


def _check_translation(
    obj: dict[str, Any], source: dict[str, str], lang: str, use_langid: bool, language_checks: bool = True
) -> dict[str, str]:
    expected, got = sorted(source), sorted(obj)
    if expected != got:
        raise ParseError(f"wrong_keys: the keys must be exactly {expected}, got {got}")
    for key in expected:
        if not isinstance(obj[key], str):
            raise ParseError(f"not_string: the value of {key!r} must be a string")
    for key in expected:
        if source[key].strip() and not obj[key].strip():
            raise ParseError(f"empty_value: the value of {key!r} is empty but the original has text")
    prose_parts = []
    for key in expected:
        src_fenced, src_inline, src_prose = _split_code(source[key])
        out_fenced, out_inline, out_prose = _split_code(obj[key])
        if src_fenced != out_fenced:
            raise ParseError(f"code_changed: the code blocks in {key!r} must stay unchanged (only comments translated)")
        if src_inline != out_inline:
            raise ParseError(f"code_changed: the inline code (between backticks) in {key!r} must stay unchanged")
        prose_parts.append(out_prose)
    if language_checks:
        _check_not_english(obj, source, lang, "\n".join(prose_parts), use_langid)
    return {key: obj[key] for key in source}


def _check_not_english(obj: dict[str, str], source: dict[str, str], lang: str, prose: str, use_langid: bool) -> None:
    source_prose = {key: _split_code(value)[2] for key, value in source.items()}
    same = [key for key in source if obj[key].strip() == source[key].strip()]
    all_words = sum(len(_WORD_RE.findall(p)) for p in source_prose.values())
    if len(same) == len(source) and all_words >= 2:
        raise ParseError("untranslated: the answer repeats the original text")
    for key in same:
        words = _WORD_RE.findall(source_prose[key])
        if len(words) >= 4 and (not use_langid or detect_language(source_prose[key])[0][0] == "en"):
            raise ParseError(f"untranslated: the value of {key!r} is the original English text")
    language = get_language(lang)
    n_letters, share = script_share(prose, language.scripts)
    need = _MIN_LATIN_SHARE if language.scripts == ("Latn",) else _DEFAULT_MIN_SCRIPT_SHARE
    if n_letters >= _MIN_SCRIPT_LETTERS and share < need:
        raise ParseError(
            f"wrong_script: only {share:.0%} of the letters are in the {' / '.join(language.scripts)} script "
            f"expected for {language.name}"
        )
    accepted = accepted_languages(lang)
    # A language py3langid does not know gets no language-ID check; translate's metrics count those rows.
    if use_langid and accepted and len(_letters(prose)) >= _MIN_LANGID_LETTERS:
        ranking = detect_language(prose)
        top = ranking[0][0]
        if top not in accepted and sum(p for code, p in ranking if code in accepted) < _MIN_NEIGHBOUR_PROB:
            if top == "en":
                raise ParseError(f"left_in_english: the text is in English, not {language.name}")
            raise ParseError(f"wrong_language: the text looks like {top!r}, not {language.name}")


LANGUAGE_REASONS = ("untranslated", "wrong_script", "left_in_english", "wrong_language")


def make_validator(
    source: dict[str, str], lang: str, *, use_langid: bool = True, language_checks: bool = True
) -> Callable[[str], dict[str, str]]:
    """A parse function for the teacher: answer text -> the translated record, or ParseError(reason).

    The reason starts with a short code (not_json, not_object, wrong_keys, not_string, empty_value, code_changed,
    untranslated, wrong_script, left_in_english, wrong_language) used in the metrics.
    """
    get_language(lang)  # fail early on an unknown code
    src = dict(source)

    def parse(text: str) -> dict[str, str]:
        return _check_translation(extract_json_object(text), src, lang, use_langid, language_checks)

    return parse


def reason_code(reason: str | None) -> str:
    return (reason or "").split(":", 1)[0] or "unknown"


# -- running a batch with per-record checks -------------------------------------------------------------------------
@dataclass
class _Result:
    value: dict[str, str] | None
    reason: str | None
    raw: str | None
    attempts: int
    warning: str | None = None  # a failed language check accepted under language_checks: report


def _translate_records(
    teacher: Any, items: list[tuple[str, dict[str, str]]], lang: str, cfg: TranslateConfig, desc: str
) -> dict[str, _Result]:
    """Translate {key: record}; rejected answers are re-asked with the reason, up to cfg.max_attempts answers.

    Requests, and the checks of an answer, are built when needed and dropped after, not held for every row (with
    the other memory changes of the stage, its peak at full size fell from 2.17 to 1.31 GB: README, Performance).
    """
    name = get_language(lang).name
    sources = dict(items)
    report_only = cfg.language_checks == "report"
    results: dict[str, _Result] = {}
    attempts: Counter[str] = Counter()
    last: dict[str, tuple[str | None, str]] = {}
    pending = [key for key, rec in items if rec]
    for key, rec in items:
        if not rec:  # nothing to translate (every field empty)
            results[key] = _Result({}, None, None, 0)

    def requests(keys: list[str], attempt: int) -> Iterator[ChatRequest]:
        for key in keys:
            messages = build_messages(sources[key], name)
            if attempt and key in last:
                text, reason = last[key]
                messages += [
                    {"role": "assistant", "content": text or ""},
                    {"role": "user", "content": _RETRY.format(reason=reason, lang=name)},
                ]
            yield ChatRequest(
                key=key,
                messages=messages,
                schema=_schema(list(sources[key])) if cfg.structured else None,
                max_tokens=cfg.max_tokens,
            )

    for attempt in range(cfg.max_attempts):
        if not pending:
            break
        outcomes = teacher.run(
            requests(pending, attempt),
            _json_object_only,
            desc=f"{desc} ({attempt + 1})",
            max_attempts=1,
            total=len(pending),
        )
        still = []
        for outcome in outcomes:
            key = outcome.key
            attempts[key] += outcome.attempts
            reason = outcome.reason
            value = None
            warning = None
            if outcome.ok:
                try:
                    value = make_validator(sources[key], lang, use_langid=cfg.langid)(outcome.text or "")
                except ParseError as err:
                    reason = str(err)
                    if report_only and reason_code(reason) in LANGUAGE_REASONS:
                        try:
                            structural = make_validator(sources[key], lang, language_checks=False)
                            value, warning = structural(outcome.text or ""), reason
                        except ParseError as err2:
                            reason = str(err2)
            if value is not None:
                results[key] = _Result(value, None, outcome.text, attempts[key], warning)
            else:
                last[key] = (outcome.text, reason or "unparseable answer")
                still.append(key)
        pending = still
    for key in pending:
        text, reason = last[key]
        results[key] = _Result(None, reason, text, attempts[key])
    return results


def _json_object_only(text: str) -> None:
    """The teacher's parse step: the answer must hold a JSON object (ParseError otherwise). The object itself is
    not kept: the per-record checks parse it again, and 158K kept objects would only cost memory."""
    extract_json_object(text)


SOURCE_REASON = "source_language: English, the source language, passes through untranslated (no teacher request)"


def _translate_or_pass(
    teacher: Any, items: list[tuple[str, dict[str, str]]], lang: str, cfg: TranslateConfig, desc: str
) -> dict[str, _Result]:
    """_translate_records, except for English (the source language): every record passes through unchanged."""
    if get_language(lang).is_source:
        return {key: _Result(dict(rec), None, None, 0) for key, rec in items}
    return _translate_records(teacher, items, lang, cfg, desc)


def checks_run(lang: str, cfg: TranslateConfig, answers: int) -> dict[str, Any]:
    """Which language checks the answers of ``lang`` went through, and how many answers a check could not run on
    (a language py3langid does not know gets no language-ID check: counted, not skipped silently)."""
    language = get_language(lang)
    if language.is_source:
        return {"passthrough": answers, "not_run": {}}
    langid_missing = cfg.langid and language.langid is None
    return {
        "scripts": list(language.scripts),
        "langid": language.langid if cfg.langid else None,
        "not_run": {"langid_unavailable": answers} if langid_missing else {},
    }


# -- instructions -------------------------------------------------------------------------------------------------
def _order_key(seed: int, row_id: str) -> str:
    # Independent of language and of the other rows, so every language gets the same subset and the same splits.
    return hashlib.sha256(f"{seed}:{row_id}".encode()).hexdigest()


def _allocate(limit: int | None, n_sft: int, n_gen: int, pool_fraction: float | None = None) -> tuple[int, int]:
    """How many sft-part and generated rows a limit keeps: proportional, with >= 1 sft and >= 2 generated
    rows (one for rank, one for ppo) whenever the data and the limit allow."""
    total = n_sft + n_gen
    if limit is None or limit >= total:
        return n_sft, n_gen
    need_s, need_g = min(1, n_sft), min(2, n_gen)
    if limit <= need_s + need_g:
        g = min(need_g, limit)
        return min(need_s, limit - g), g
    gen_share = n_gen / total if pool_fraction is None else 1.0 - pool_fraction
    g = min(n_gen, limit - need_s, max(need_g, round(limit * gen_share)))
    s = min(n_sft, limit - g)
    return s, min(n_gen, limit - s)


def _check_rows(rows: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for number, row in enumerate(rows, start=1):
        for key in INSTRUCTION_COLUMNS:
            if not isinstance(row.get(key), str):
                raise DataError(f"instruction row {number}: field {key!r} must be a string")
        if row["source"] not in (*SFT_SOURCES, GENERATED_SOURCE):
            raise DataError(
                f"instruction row {number} (id {row['id']}): source {row['source']!r} is invalid; "
                f"allowed: {', '.join((*SFT_SOURCES, GENERATED_SOURCE))}"
            )
        if row["id"] in seen:
            raise DataError(f"instruction row {number}: id {row['id']!r} is not unique")
        seen.add(row["id"])


def assign_splits(rows: list[dict[str, Any]], cfg: TranslateConfig) -> dict[str, str]:
    """{id: split} for the rows a language translates: seed/pool rows -> sft, generated -> rank / ppo."""
    sft = sorted((r["id"] for r in rows if r["source"] in SFT_SOURCES), key=lambda i: _order_key(cfg.seed, i))
    gen = sorted((r["id"] for r in rows if r["source"] == GENERATED_SOURCE), key=lambda i: _order_key(cfg.seed, i))
    n_sft, n_gen = _allocate(cfg.limit, len(sft), len(gen), cfg.pool_fraction)
    gen = gen[:n_gen]
    n_rank = round(cfg.rank_fraction * len(gen))
    if len(gen) >= 2:
        n_rank = min(max(n_rank, 1), len(gen) - 1)
    splits = {i: "sft" for i in sft[:n_sft]}
    splits.update({i: "rank" for i in gen[:n_rank]})
    splits.update({i: "ppo" for i in gen[n_rank:]})
    return splits


def translate_instructions(
    teacher: Any, rows: list[dict[str, Any]], lang: str, cfg: TranslateConfig
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Translate instruction rows (schemas.INSTRUCTIONS) into ``lang``; rows in schemas.TRANSLATIONS and metrics.

    Seed and pool rows form the "sft" split (the RLHF track's SFT data); generated rows are split, by a seeded
    hash of their id, into "rank" (rank_fraction) and "ppo". Rejected rows stay, with status "rejected", null
    translations, the last raw answer and the reason.

    Input columns: schemas.INSTRUCTIONS: id, source, instruction, input, output.
    Output columns: schemas.TRANSLATIONS: id, lang, source, split, instruction, input, output, en_instruction,
        en_input, en_output, status, reason, raw, attempts.
    """
    language = get_language(lang)
    _check_rows(rows)
    splits = assign_splits(rows, cfg)
    chosen = [r for r in rows if r["id"] in splits]
    items = [(r["id"], {k: r[k] for k in INSTRUCTION_FIELDS if r[k].strip()}) for r in chosen]
    results = _translate_or_pass(teacher, items, lang, cfg, desc=f"translate {lang}")
    out = []
    for row in chosen:
        res = results[row["id"]]
        ok = res.value is not None
        out.append(
            {
                "id": row["id"],
                "lang": lang,
                "source": row["source"],
                "split": splits[row["id"]],
                **{k: (res.value.get(k, "") if ok else None) for k in INSTRUCTION_FIELDS},
                **{f"en_{k}": row[k] for k in INSTRUCTION_FIELDS},
                "status": "ok" if ok else "rejected",
                "reason": res.reason
                if not ok
                else (
                    SOURCE_REASON
                    if language.is_source
                    else (f"language_check_reported: {res.warning}" if res.warning else None)
                ),
                "raw": res.raw,
                "attempts": res.attempts,
                "back_score": None,  # filled by okapi.backtranslate when translate.back_translation is on
            }
        )
    metrics = _metrics(out, results)
    metrics["language"] = language.name
    metrics["language_checks_run"] = checks_run(lang, cfg, len(results))
    metrics["splits"] = {
        split: {
            "ok": sum(1 for r in out if r["split"] == split and r["status"] == "ok"),
            "rejected": sum(1 for r in out if r["split"] == split and r["status"] != "ok"),
        }
        for split in ("sft", "rank", "ppo")
    }
    return out, metrics


def _metrics(out: list[dict[str, Any]], results: dict[str, _Result]) -> dict[str, Any]:
    ok = sum(1 for r in results.values() if r.value is not None)
    reasons = Counter(reason_code(r.reason) for r in results.values() if r.value is None)
    warnings = Counter(reason_code(r.warning) for r in results.values() if r.value is not None and r.warning)
    answers = sum(r.attempts for r in results.values())
    return {
        "rows": len(results),
        "accepted": ok,
        "rejected": len(results) - ok,
        "acceptance_rate": round(ok / len(results), 4) if results else 0.0,
        "rejected_by_reason": dict(sorted(reasons.items())),
        # accepted although a language check failed (translate.language_checks: report)
        "language_warnings": dict(sorted(warnings.items())),
        "answers": answers,
        "reasked_rows": sum(1 for r in results.values() if r.attempts > 1),
    }


# -- split files ----------------------------------------------------------------------------------------------------
PROMPT_SPLITS = ("sft", "full", "rank", "ppo")
_PROMPT_FIELDS = ("id", "lang", "instruction", "input", "output")


def prompt_splits(translated: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The accepted translations as the per-split prompt files the training stages read.

    Input columns: schemas.TRANSLATIONS (rows with status "ok" are used, the rest are left out).
    Output columns: schemas.PROMPTS, one list per split: "sft" (the pool part, the RLHF track's SFT data), "full"
    (every accepted row: the SFT-only baseline), "rank" and "ppo" (the generated parts).
    """
    accepted = [r for r in translated if r["status"] == "ok"]
    return {
        name: [{k: r[k] for k in _PROMPT_FIELDS} for r in accepted if name == "full" or r["split"] == name]
        for name in PROMPT_SPLITS
    }


def check_splits(splits: dict[str, list[dict[str, Any]]], lang: str) -> None:
    """Stop before writing when a split that a later stage trains on came out empty."""
    for name, rows in splits.items():
        if not rows:
            raise ConfigError(
                f"translate@{lang}: the {name!r} split is empty after translation; raise "
                "generate.num_instructions or translate.limit so every split gets rows"
            )


# -- evaluation sets ----------------------------------------------------------------------------------------------


def _eval_fields(benchmark: str, rec: dict[str, Any], number: int) -> dict[str, str]:
    """The text fields of one benchmark record to translate (keys of the JSON object sent)."""
    where = f"{benchmark} record {number}"
    if benchmark in MULTIPLE_CHOICE_BENCHMARKS:
        for key in ("id", "answer", "instruction"):
            if not isinstance(rec.get(key), str):
                raise DataError(f"{where}: field {key!r} must be a string")
        fields = {"instruction": rec["instruction"]}
        for key in OPTION_FIELDS:
            value = rec.get(key)
            if value is not None and not isinstance(value, str):
                raise DataError(f"{where}: field {key!r} must be a string or null")
            if value:
                fields[key] = value
        if len(fields) < 3:
            raise DataError(f"{where}: needs at least two non-empty options (option_a ... option_e)")
        return fields
    for key in ("activity_label", "ctx_a", "ctx_b", "label"):
        if not isinstance(rec.get(key), str):
            raise DataError(f"{where}: field {key!r} must be a string")
    endings = rec.get("endings")
    if not isinstance(endings, list) or not endings or not all(isinstance(e, str) for e in endings):
        raise DataError(f"{where}: field 'endings' must be a non-empty list of strings")
    fields = {k: rec[k] for k in ("activity_label", "ctx_a", "ctx_b") if rec[k].strip()}
    fields.update({f"ending_{i + 1}": e for i, e in enumerate(endings) if e.strip()})
    return fields


def translate_eval(
    teacher: Any,
    benchmark: Literal["arc", "mmlu", "hellaswag"],
    records: list[dict[str, Any]],
    lang: str,
    cfg: TranslateConfig,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Translate English benchmark records into Okapi's shapes (schemas.MULTIPLE_CHOICE or HELLASWAG).

    arc / mmlu: instruction and the non-null options are translated, id and answer kept. hellaswag: activity_label,
    ctx_a, ctx_b and the endings are translated, ctx rebuilt as ctx_a + " " + ctx_b.capitalize() (lm-eval's and
    Okapi's convention), the other fields kept. Records whose translation is rejected are dropped and counted.

    Input columns: English records of schemas.BENCHMARK_SCHEMA[benchmark] (eval_sources' shape).
    Output columns: schemas.MULTIPLE_CHOICE (arc, mmlu) or schemas.HELLASWAG records, translated; dropped records
        are counted in metrics.
    """
    if benchmark not in BENCHMARKS:
        raise DataError(f"benchmark {benchmark!r} is invalid; allowed: {', '.join(BENCHMARKS)}")
    get_language(lang)
    chosen = records[: cfg.eval_limit] if cfg.eval_limit is not None else records
    items = [(f"{benchmark}-{i}", _eval_fields(benchmark, rec, i + 1)) for i, rec in enumerate(chosen)]
    results = _translate_or_pass(teacher, items, lang, cfg, desc=f"translate {benchmark} {lang}")
    out = []
    for (key, _fields), rec in zip(items, chosen, strict=True):
        res = results[key]
        if res.value is None:
            continue
        t = res.value
        if benchmark in MULTIPLE_CHOICE_BENCHMARKS:
            row = {"id": rec["id"], "answer": rec["answer"], "instruction": t["instruction"]}
            for opt in OPTION_FIELDS:
                row[opt] = t.get(opt, rec.get(opt)) if rec.get(opt) is not None else None
        else:
            ctx_a, ctx_b = t.get("ctx_a", rec["ctx_a"]), t.get("ctx_b", rec["ctx_b"])
            row = {
                "ind": rec.get("ind"),
                "activity_label": t.get("activity_label", rec["activity_label"]),
                "ctx_a": ctx_a,
                "ctx_b": ctx_b,
                "ctx": ctx_a + " " + ctx_b.capitalize(),
                "endings": [t.get(f"ending_{i + 1}", e) for i, e in enumerate(rec["endings"])],
                "source_id": rec.get("source_id"),
                "split": rec.get("split"),
                "split_type": rec.get("split_type"),
                "label": rec["label"],
            }
        out.append(row)
    metrics = _metrics(out, results)
    metrics = {
        "benchmark": benchmark,
        "records": metrics["rows"],
        "translated": metrics["accepted"],
        "dropped": metrics["rejected"],
        "acceptance_rate": metrics["acceptance_rate"],
        "dropped_by_reason": metrics["rejected_by_reason"],
        "language_warnings": metrics["language_warnings"],
        "answers": metrics["answers"],
        "reasked_records": metrics["reasked_rows"],
        "language_checks_run": checks_run(lang, cfg, len(results)),
    }
    return out, metrics


# -- Table 2 --------------------------------------------------------------------------------------------------------
def table2_lengths(rows: list[dict[str, Any]], tokenizer: Any) -> dict[str, Any]:
    """Average prompt (instruction + input) and response lengths in tokens by source: the paper's Table 2.

    Takes translated rows (only status "ok" ones count) or English instruction rows; ``tokenizer`` is a
    transformers tokenizer (the paper counts BLOOM wordpieces).

    Input columns: schemas.TRANSLATIONS (status "ok" rows) or schemas.INSTRUCTIONS: source, instruction, input,
        output.
    Output columns: none (metrics: token-length means by source).
    """
    usable = [r for r in rows if r.get("status", "ok") == "ok" and r.get("instruction") is not None]
    out: dict[str, Any] = {}
    for source in sorted({r["source"] for r in usable}):
        group = [r for r in usable if r["source"] == source]
        prompt = _token_counts(tokenizer, [r["instruction"] for r in group])
        inputs = _token_counts(tokenizer, [r.get("input") or "" for r in group])
        response = _token_counts(tokenizer, [r.get("output") or "" for r in group])
        out[source] = {
            "rows": len(group),
            "prompt": round(sum(p + i for p, i in zip(prompt, inputs, strict=True)) / len(group), 2),
            "response": round(sum(response) / len(group), 2),
        }
    return out


def _token_counts(tokenizer: Any, texts: list[str], chunk: int = 256) -> list[int]:
    # In chunks: the token ids of 158K rows at once held ~2.8 GB (benchmarks/paper_scale.py); only lengths are kept.
    # Small ones: after 40K texts in chunks of 2048 the process kept 165 MB more, in chunks of 256 47 MB (and ran
    # faster, 12.6 s vs 16.6 s).
    counts: list[int] = []
    for start in range(0, len(texts), chunk):
        encoded = tokenizer(texts[start : start + chunk], add_special_tokens=False)["input_ids"]
        counts.extend(len(ids) for ids in encoded)
    return counts
