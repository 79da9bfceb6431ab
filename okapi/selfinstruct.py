"""English instruction generation: Alpaca's Self-Instruct procedure with Okapi's two changes (paper §2.1).

Alpaca prompts the teacher with a few seed tasks as in-context examples and asks for a numbered list of 20 new
tasks; it drops malformed, too short / too long, non-text (image, audio ...) and program-writing instructions, and
keeps a new instruction only when its ROUGE-L F-measure against every instruction seen so far is <= 0.7.
Okapi (i) adds 30 seed tasks in new categories (relation extraction, event extraction, event summarisation, logical
questions) and (ii) conditions generation on Alpaca's 52K instructions: they join the ROUGE-L pool, so a new
instruction must differ from them too. In-context examples still come from the seeds only, as in Alpaca.

The teacher is a chat model (Okapi used ChatGPT), so the request is one user message; ``structured`` asks for a JSON
object through a schema instead of the numbered list, for small teachers that cannot keep the plain-text format.
"""

from __future__ import annotations

import json
import logging
import random
import re
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from okapi.config import check
from okapi.filter_replay import DerivedStore, FilterReplay
from okapi.io import DataError, read_jsonl
from okapi.rouge_filter import RougeFilter
from okapi.teacher import ChatRequest, ParseError

log = logging.getLogger(__name__)

NO_INPUT = "<noinput>"
# Alpaca's blacklist: tasks a text-only model cannot do, or that invite it to claim it looked at a file.
BLACKLIST = (
    "image",
    "images",
    "graph",
    "graphs",
    "picture",
    "pictures",
    "file",
    "files",
    "map",
    "maps",
    "draw",
    "plot",
    "go to",
    "video",
    "audio",
    "music",
    "flowchart",
    "diagram",
)
_BLACKLIST_RE = re.compile(r"\b(" + "|".join(re.escape(w) for w in BLACKLIST) + r")\b", re.IGNORECASE)

FILTER_REASONS = (
    "too_short",
    "too_long",
    "blacklisted_word",
    "write_a_program",
    "starts_with_punctuation",
    "non_ascii_start",
)

GENERATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "tasks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "instruction": {"type": "string"},
                    "input": {"type": "string"},
                    "output": {"type": "string"},
                },
                "required": ["instruction", "input", "output"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["tasks"],
    "additionalProperties": False,
}


@dataclass
class GenerateConfig:
    """The ``generate`` section: English Self-Instruct (Alpaca's procedure with Okapi's changes)."""

    num_instructions: int = 12
    """New instructions to keep (the paper generates 106K)."""
    num_prompt_instructions: int = 3
    """In-context seed examples per request (Alpaca: 3)."""
    num_tasks: int = 8
    """Length of the requested list, the examples included (Alpaca: 20)."""
    request_batch_size: int = 4
    """Requests per round (Alpaca: 5). On the embedded teacher a multiple of its servers keeps them all busy: with 3
    on 2 servers one answered two while the other waited (generate 64 -> 48 s with 4, README "Performance")."""
    max_rounds: int = 12
    """Give up after this many rounds even if num_instructions is not reached (the failure-rate rule then
    decides whether the shortfall stops the stage)."""
    rouge_threshold: float = 0.7
    """Keep a task when its highest ROUGE-L F against the pool is at most this (Alpaca: 0.7)."""
    pool_path: str | None = None
    """Alpaca-format records (a local file or a datasets hub id, e.g. tatsu-lab/alpaca) that join the pool and
    the SFT data; null: the seeds alone."""
    pool_limit: int | None = None
    """Use only the first N pool records (null: all)."""
    seed: int = 42
    """Seeds the choice of in-context examples, so a rerun sends the same prompts (and hits the cache)."""
    temperature: float = 1.0
    """Sampling temperature of the generation requests (Alpaca: 1.0)."""
    max_tokens: int = 768
    """Longest answer in tokens."""
    structured: bool = True
    """Ask for JSON through GENERATION_SCHEMA (small teachers); false: the paper's numbered-list prompt."""
    avg_similarity: bool = True
    """Also record Alpaca's average similarity (one more LCS per pool item that shares a token)."""
    seed_tasks: Literal["project", "alpaca"] = "project"
    """Where the in-context examples come from (okapi.seeds): ``project``, the project's 25 general and 30
    Okapi-category seed tasks; ``alpaca``, Alpaca's 175 published seed tasks (fetched with
    ``python -m okapi.seeds fetch``) plus the 30 Okapi-category ones, as in the paper (§2.1)."""

    def __post_init__(self) -> None:
        check(self.num_instructions >= 1, "generate.num_instructions", self.num_instructions, "an integer >= 1")
        check(
            self.num_prompt_instructions >= 1,
            "generate.num_prompt_instructions",
            self.num_prompt_instructions,
            "an integer >= 1",
        )
        check(
            self.num_tasks > self.num_prompt_instructions,
            "generate.num_tasks",
            self.num_tasks,
            f"an integer > generate.num_prompt_instructions ({self.num_prompt_instructions})",
        )
        check(self.request_batch_size >= 1, "generate.request_batch_size", self.request_batch_size, "an integer >= 1")
        check(self.max_rounds >= 1, "generate.max_rounds", self.max_rounds, "an integer >= 1")
        check(0.0 < self.rouge_threshold <= 1.0, "generate.rouge_threshold", self.rouge_threshold, "a number in (0, 1]")
        check(
            self.pool_limit is None or self.pool_limit >= 1,
            "generate.pool_limit",
            self.pool_limit,
            "null or an integer >= 1",
        )
        check(0.0 <= self.temperature <= 2.0, "generate.temperature", self.temperature, "a number in [0, 2]")
        check(self.max_tokens >= 16, "generate.max_tokens", self.max_tokens, "an integer >= 16")
        check(self.seed_tasks in ("project", "alpaca"), "generate.seed_tasks", self.seed_tasks, "project or alpaca")


# -- inputs --------------------------------------------------------------------------------------------------------
def load_seeds(path: str | Path) -> list[dict[str, Any]]:
    """Read seed tasks in Alpaca's seed_tasks.jsonl format, stopping at the first bad line with its field.

    Input columns: none (a seed_tasks.jsonl file: id, name, instruction, instances[{input, output}],
        is_classification).
    Output columns: the seed tasks as read (id, name, instruction, instances, is_classification); generate
        turns them into schemas.INSTRUCTIONS rows with source "seed".
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: seed file not found")
    seeds: list[dict[str, Any]] = []
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{p}, line {lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: not valid JSON ({err.msg})") from err
        if not isinstance(rec, dict):
            raise DataError(f"{where}: expected a JSON object with id, name, instruction, instances")
        for key in ("id", "name", "instruction"):
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise DataError(f"{where}: field {key!r} must be a non-empty string")
        instances = rec.get("instances")
        if not isinstance(instances, list) or not instances:
            raise DataError(f"{where}: field 'instances' must be a non-empty list of {{input, output}} objects")
        for j, inst in enumerate(instances):
            if not isinstance(inst, dict):
                raise DataError(f"{where}: instances[{j}] must be an object with input and output")
            if not isinstance(inst.get("input"), str):
                raise DataError(f"{where}: field instances[{j}].input must be a string (empty when none)")
            if not isinstance(inst.get("output"), str) or not inst["output"].strip():
                raise DataError(f"{where}: field instances[{j}].output must be a non-empty string")
        if "is_classification" in rec and not isinstance(rec["is_classification"], bool):
            raise DataError(f"{where}: field 'is_classification' must be true or false")
        seeds.append(rec)
    if not seeds:
        raise DataError(f"{p}: no seed tasks")
    ids = Counter(s["id"] for s in seeds)
    dup = [k for k, v in ids.items() if v > 1]
    if dup:
        raise DataError(f"{p}: seed id {dup[0]!r} appears {ids[dup[0]]} times; ids must be unique")
    return seeds


def _check_pool_records(records: list[Any], where: str) -> list[dict[str, str]]:
    out = []
    for number, rec in enumerate(records, start=1):
        if not isinstance(rec, dict):
            raise DataError(f"{where}, record {number}: expected an object with instruction, input, output")
        row = {}
        for key in ("instruction", "input", "output"):
            value = rec.get(key, "" if key == "input" else None)
            if not isinstance(value, str):
                raise DataError(f"{where}, record {number}: field {key!r} must be a string")
            row[key] = value
        if not row["instruction"].strip():
            raise DataError(f"{where}, record {number}: field 'instruction' is empty")
        out.append(row)
    return out


def load_pool(spec: str | None, limit: int | None = None) -> list[dict[str, str]]:
    """Alpaca-format records (instruction, input, output) from a local JSON/JSONL/Parquet file or a hub dataset.

    A hub id (e.g. ``tatsu-lab/alpaca``) goes through ``datasets.load_dataset``; the stages run with
    HF_DATASETS_OFFLINE=1, so it must already be in the local datasets cache.

    Input columns: none (records with instruction, input, output).
    Output columns: dicts with instruction, input, output (the pool part of schemas.INSTRUCTIONS, source "pool").
    """
    if spec is None:
        return []
    p = Path(spec)
    if p.is_file():
        if p.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                records: list[Any] = pq.read_table(p).to_pylist()
            except (pa.ArrowInvalid, OSError) as err:
                raise DataError(f"{p}: not a readable Parquet file ({err})") from err
        else:
            records = read_jsonl(p)
        rows = _check_pool_records(records, str(p))
    elif re.fullmatch(r"[\w.-]+/[\w.-]+", spec) and not p.suffix:
        import datasets

        try:
            ds = datasets.load_dataset(spec, split="train")
        except (OSError, ValueError) as err:
            raise DataError(
                f"generate.pool_path {spec!r}: cannot load this datasets hub id ({type(err).__name__}: {err}); "
                "download it once with network access, or give a local JSON/JSONL/Parquet file"
            ) from err
        if limit is not None:
            ds = ds.select(range(min(limit, len(ds))))
        rows = _check_pool_records(list(ds), spec)
    else:
        raise DataError(
            f"generate.pool_path {spec!r}: file not found (expected a JSON, JSONL or Parquet file of "
            "instruction/input/output records, or a datasets hub id such as tatsu-lab/alpaca)"
        )
    return rows[:limit] if limit is not None else rows


# -- prompt and parsing --------------------------------------------------------------------------------------------
_REQUIREMENTS = """\
Come up with a set of {n} diverse task instructions. They will be given to a language model that reads and writes \
text only, and we will judge how well it completes them.

Requirements:
1. Do not repeat the main verb from one instruction to the next: the set should be as diverse as possible.
2. Vary the wording too, mixing imperative sentences and questions.
3. Cover many kinds of tasks: open-ended generation, classification, editing and rewriting, relation and event \
extraction, summarization of events, logical and mathematical reasoning, coding, brainstorming, and more.
4. A text-only language model must be able to complete every task. Do not ask for images, drawings, audio, video or \
files, and do not ask for actions in the physical world (such as "remind me at 6 pm" or "book a table").
5. Write the instructions in English.
6. Each instruction is one or two sentences long, either an imperative sentence or a question.
7. When a task needs an input, write one: a concrete, realistic example (never a placeholder such as "<text>") with \
enough substance to make the task challenging, ideally under 100 words.
8. Some tasks need no input, for example a general question such as "Which planet is closest to the Sun?". In that \
case write {no_input} as the input.
9. The output is a good answer to the instruction and its input, and it is shorter than 100 words."""

_TEXT_FORMAT = """\
Number every task and write its fields as "N. Instruction:", "N. Input:" and "N. Output:". End every task, the \
last one included, with a line that contains only ###.

List of {n} tasks:"""

_JSON_FORMAT = """\
Here are the first {k} tasks of the list."""

_TEXT_CONTINUE = "Continue the list with tasks {first} to {n}, in the same format."
_JSON_CONTINUE = (
    'Write tasks {first} to {n} as a JSON object of the form {{"tasks": [{{"instruction": "...", "input": "...", '
    '"output": "..."}}]}}, with {no_input} as the input of a task that needs none. Output only the JSON object.'
)


def _render_example(number: int, example: dict[str, str]) -> str:
    inp = example.get("input", "").strip() or NO_INPUT
    return (
        f"{number}. Instruction: {example['instruction'].strip()}\n"
        f"{number}. Input:\n{inp}\n"
        f"{number}. Output:\n{example['output'].strip()}\n###"
    )


def build_prompt(examples: list[dict[str, Any]], num_tasks: int = 20, *, structured: bool = False) -> str:
    """Alpaca's request for a numbered list of ``num_tasks`` tasks, with ``examples`` as tasks 1..k.

    ``examples`` are {instruction, input, output} records (or seed tasks, whose first instance is used).
    """
    k = len(examples)
    if not 0 < k < num_tasks:
        raise ValueError(f"need between 1 and {num_tasks - 1} examples for a list of {num_tasks}, got {k}")
    flat = [_as_example(ex) for ex in examples]
    parts = [_REQUIREMENTS.format(n=num_tasks, no_input=NO_INPUT)]
    if structured:
        parts.append(_JSON_FORMAT.format(k=k))
    else:
        parts.append(_TEXT_FORMAT.format(n=num_tasks))
    parts.append("###\n" + "\n".join(_render_example(i + 1, ex) for i, ex in enumerate(flat)))
    if structured:
        parts.append(_JSON_CONTINUE.format(first=k + 1, n=num_tasks, no_input=NO_INPUT))
    else:
        parts.append(_TEXT_CONTINUE.format(first=k + 1, n=num_tasks))
    return "\n\n".join(parts)


def _as_example(rec: dict[str, Any]) -> dict[str, str]:
    if "instances" in rec:
        inst = rec["instances"][0]
        return {"instruction": rec["instruction"], "input": inst["input"], "output": inst["output"]}
    return {"instruction": rec["instruction"], "input": rec.get("input", ""), "output": rec["output"]}


_FIELD_RE = re.compile(
    r"^[ \t]*(?:\*\*)?(\d+)\s*\.\s*(Instruction|Input|Output)\s*:(?:\*\*)?[ \t]*", re.IGNORECASE | re.MULTILINE
)
_SEPARATOR_RE = re.compile(r"^[ \t]*###[ \t]*$", re.MULTILINE)


def _clean_input(text: str) -> str:
    return "" if text.strip().lower() in {NO_INPUT, "<no input>", "<noinput>."} else text.strip()


def parse_response(text: str) -> list[dict[str, str]]:
    """Tasks from a numbered-list answer; malformed blocks are skipped and an unterminated last block is dropped.

    A task is "N. Instruction: ... N. Input: ... N. Output: ..." (same N, this order) closed by a ### line or by the
    next task. The last task counts only when a ### line closes it: without it the answer may have been cut by the
    token limit mid-output (Alpaca drops the last block when the completion stopped for length; a chat answer does
    not tell us why it stopped, so the prompt asks for the closing ###).
    """
    fields = list(_FIELD_RE.finditer(text))
    tasks: list[dict[str, str]] = []
    i = 0
    while i + 2 < len(fields):
        trio = fields[i : i + 3]
        names = [f.group(2).lower() for f in trio]
        numbers = {f.group(1) for f in trio}
        if names != ["instruction", "input", "output"] or len(numbers) != 1:
            i += 1
            continue
        end = fields[i + 3].start() if i + 3 < len(fields) else len(text)
        values = [text[trio[j].end() : trio[j + 1].start()] for j in range(2)] + [text[trio[2].end() : end]]
        output = values[2]
        sep = _SEPARATOR_RE.search(output)
        is_last = i + 3 >= len(fields)
        if sep is not None:
            output = output[: sep.start()]
        elif is_last:
            break  # possibly truncated
        instruction = _SEPARATOR_RE.sub("", values[0]).strip()
        inp = _clean_input(_SEPARATOR_RE.sub("", values[1]))
        output = output.strip()
        if instruction and output:
            tasks.append({"instruction": instruction, "input": inp, "output": output})
        i += 3
    return tasks


def _strip_fences(text: str) -> str:
    s = text.strip()
    m = re.fullmatch(r"```[A-Za-z]*\s*\n?(.*?)\n?```", s, re.DOTALL)
    return m.group(1).strip() if m else s


def parse_json_response(text: str) -> list[dict[str, str]]:
    """Tasks from a structured answer ({"tasks": [{instruction, input, output}, ...]}); bad items are skipped."""
    try:
        obj = json.loads(_strip_fences(text))
    except json.JSONDecodeError:
        return []
    items = obj.get("tasks") if isinstance(obj, dict) else obj if isinstance(obj, list) else None
    if not isinstance(items, list):
        return []
    tasks = []
    for item in items:
        if not isinstance(item, dict):
            continue
        values = [item.get(k) for k in ("instruction", "input", "output")]
        if values[1] is None:
            values[1] = ""
        if not all(isinstance(v, str) for v in values):
            continue
        instruction, inp, output = (v.strip() for v in values)
        if instruction and output:
            tasks.append({"instruction": instruction, "input": _clean_input(inp), "output": output})
    return tasks


def filter_reason(instruction: str) -> str | None:
    """Alpaca's heuristic filters; the name of the first one that rejects ``instruction``, or None to keep it."""
    n_words = len(instruction.split())
    if n_words <= 3:
        return "too_short"
    if n_words > 150:
        return "too_long"
    if _BLACKLIST_RE.search(instruction):
        return "blacklisted_word"
    if instruction.startswith("Write a program"):
        return "write_a_program"
    if instruction[0] in string.punctuation:
        return "starts_with_punctuation"
    if not instruction[0].isascii():
        return "non_ascii_start"
    return None


# -- the generation loop -------------------------------------------------------------------------------------------
def _seed_rows(seeds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for i, seed in enumerate(seeds):
        for j, inst in enumerate(seed["instances"]):
            rows.append(
                _row(
                    f"seed-{i}" if j == 0 else f"seed-{i}-{j}",
                    "seed",
                    seed["instruction"],
                    inst["input"],
                    inst["output"],
                )
            )
    return rows


def _row(
    row_id: str,
    source: str,
    instruction: str,
    inp: str,
    output: str,
    max_sim: float | None = None,
    avg_sim: float | None = None,
    similar: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "id": row_id,
        "source": source,
        "instruction": instruction,
        "input": inp,
        "output": output,
        "max_similarity": max_sim,
        "avg_similarity": avg_sim,
        "most_similar_instructions": similar,
    }


def generate(
    teacher: Any,
    seeds: list[dict[str, Any]],
    pool: list[dict[str, Any]],
    cfg: GenerateConfig,
    decisions: DerivedStore | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run Self-Instruct rounds until ``cfg.num_instructions`` new instructions are kept (or ``max_rounds`` pass).

    Returns rows in schemas.INSTRUCTIONS (seeds, then pool, then generated) and metrics. Prompts depend only on
    ``cfg.seed`` and the seeds, so a rerun with the same params and teacher cache yields the same rows.
    ``decisions`` (the stage's teacher cache) keeps the ROUGE-L filter's decisions per round (okapi.filter_replay):
    a rerun replays the rounds found there instead of filtering again, with the same rows and metrics.

    Input columns: seed tasks (load_seeds) and pool records (load_pool).
    Output columns: schemas.INSTRUCTIONS: id, source (seed / pool / generated), instruction, input, output,
        max_similarity, avg_similarity, most_similar_instructions.
    """
    if len(seeds) < cfg.num_prompt_instructions:
        raise DataError(
            f"generate.num_prompt_instructions = {cfg.num_prompt_instructions} but only {len(seeds)} seed tasks exist"
        )
    rng = random.Random(cfg.seed)
    examples = [_as_example(s) for s in seeds]
    seed_rows = _seed_rows(seeds)
    pool_rows = [_row(f"pool-{i}", "pool", r["instruction"], r["input"], r["output"]) for i, r in enumerate(pool)]

    rouge = RougeFilter(cfg.rouge_threshold)
    rouge.add_many(s["instruction"] for s in seeds)
    rouge.add_many(r["instruction"] for r in pool)
    replay = FilterReplay(rouge, decisions, with_avg=cfg.avg_similarity)

    parse = parse_json_response if cfg.structured else parse_response

    def parse_or_reject(text: str) -> list[dict[str, str]]:
        tasks = parse(text)
        if not tasks:
            raise ParseError("no complete task in the answer" if not cfg.structured else "no task in the JSON answer")
        return tasks

    used_prompts: set[tuple[int, ...]] = set()
    generated: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter({r: 0 for r in (*FILTER_REASONS, "rouge_similar")})
    requests_sent = answers_rejected = parsed = rounds = 0
    for round_no in range(cfg.max_rounds):
        if len(generated) >= cfg.num_instructions:
            break
        rounds += 1
        requests = round_requests(rng, examples, used_prompts, cfg, round_no)
        requests_sent += len(requests)
        outcomes = teacher.run(requests, parse_or_reject, desc=f"generate round {round_no + 1}")
        replay.begin_round(
            [t["instruction"] for o in outcomes if o.ok for t in o.value if filter_reason(t["instruction"]) is None]
        )
        for outcome in outcomes:
            if not outcome.ok:
                answers_rejected += 1
                log.info("request %s gave no usable task: %s", outcome.key, outcome.reason)
                continue
            for task in outcome.value:
                if len(generated) >= cfg.num_instructions:
                    break
                parsed += 1
                reason = filter_reason(task["instruction"])
                if reason is None:
                    kept, score, similar, avg = replay.consider(task["instruction"])
                    if not kept:
                        reason = "rouge_similar"
                if reason is not None:
                    reasons[reason] += 1
                    continue
                generated.append(
                    _row(
                        f"gen-{len(generated):05d}",
                        "generated",
                        task["instruction"],
                        task["input"],
                        task["output"],
                        score,
                        avg,
                        similar,
                    )
                )
        replay.end_round()
        log.info("round %d: %d new instructions kept so far", round_no + 1, len(generated))
    log.info("ROUGE-L filter: %d candidates replayed from stored rounds, %d computed", replay.replayed, replay.computed)
    if len(generated) < cfg.num_instructions:
        log.warning(
            "kept %d of the %d requested instructions after %d rounds (generate.max_rounds)",
            len(generated),
            cfg.num_instructions,
            rounds,
        )
    metrics = {
        "seeds": len(seeds),
        "seed_rows": len(seed_rows),
        "pool": len(pool_rows),
        "target": cfg.num_instructions,
        "kept": len(generated),
        "reached_target": len(generated) >= cfg.num_instructions,
        "rounds": rounds,
        "requests": requests_sent,
        "answers_rejected": answers_rejected,
        "parsed": parsed,
        "rejected_by_reason": dict(sorted(reasons.items())),
        "keep_rate": round(len(generated) / parsed, 4) if parsed else 0.0,
    }
    return seed_rows + pool_rows + generated, metrics


def round_requests(
    rng: random.Random, examples: list[dict[str, str]], used: set[tuple[int, ...]], cfg: GenerateConfig, round_no: int
) -> list[ChatRequest]:
    """One round's requests; called in order with one ``rng`` and ``used`` it yields every round's prompts, which
    is how okapi.estimate counts the very prompts the stage will send."""
    requests = []
    for b in range(cfg.request_batch_size):
        picked = _pick_examples(rng, len(examples), cfg.num_prompt_instructions, used)
        prompt = build_prompt([examples[i] for i in picked], cfg.num_tasks, structured=cfg.structured)
        requests.append(
            ChatRequest(
                key=f"gen-r{round_no}-{b}",
                messages=[{"role": "user", "content": prompt}],
                schema=GENERATION_SCHEMA if cfg.structured else None,
                max_tokens=cfg.max_tokens,
                temperature=cfg.temperature,
            )
        )
    return requests


def _pick_examples(rng: random.Random, n: int, k: int, used: set[tuple[int, ...]]) -> list[int]:
    """k example indices; a combination already used this run is redrawn (a few times), because an identical
    prompt hits the teacher cache and would only return the same tasks again."""
    picked = rng.sample(range(n), k)
    for _ in range(20):
        key = tuple(picked)
        if key not in used:
            break
        picked = rng.sample(range(n), k)
    used.add(tuple(picked))
    return picked
