"""Benchmark evaluation with lm-evaluation-harness on the translated ARC, HellaSwag and MMLU sets (paper §2.4, §4).

The paper evaluates every model with the Eleuther AI harness, following the HuggingFace Open LLM Leaderboard. We
run lm-eval's ``simple_evaluate`` with an ``HFLM`` over a local model folder, on task YAML that we generate into a
temporary folder: the same prompts, choices and preprocessing as lm-eval's own ``okapi`` task family
(``lm_eval/tasks/okapi/{arc,hellaswag,mmlu}_multilingual``), but reading our local Parquet files instead of the
Hub, so a result here equals what lm-eval's okapi task would report on the same records (a test checks this).

Data layout of one language folder (``data/eval/<lang>/``):

- ``<benchmark>.parquet`` — the evaluation records (written by the translate stage), or, for data imported from
  Okapi's release by :mod:`okapi.import_eval`, ``<benchmark>_<split>.parquet`` with the evaluation split
  ``arc_test``, ``mmlu_test`` or ``hellaswag_val``;
- optionally a few-shot split, ``arc_train.parquet`` / ``mmlu_dev.parquet``; without one, few-shot examples are
  drawn from the evaluation file itself, never the document being scored.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from okapi import schemas
from okapi.config import ConfigError, check
from okapi.io import DataError, read_rows, write_json
from okapi.languages import get_language

if TYPE_CHECKING:  # heavy imports stay out of module import: validation and --help need no torch
    from lm_eval.api.model import LM

log = logging.getLogger(__name__)

BENCHMARKS: tuple[str, ...] = ("arc", "hellaswag", "mmlu")
LETTERS = ("A", "B", "C", "D", "E")
OPTION_FIELDS = tuple(f"option_{c.lower()}" for c in LETTERS)
SCHEMA = {"arc": schemas.MULTIPLE_CHOICE, "mmlu": schemas.MULTIPLE_CHOICE, "hellaswag": schemas.HELLASWAG}
# The split each benchmark is scored on and the split its few-shot examples come from in Okapi's release
# (lm-eval's okapi tasks: ARC test with train shots, MMLU test with the first dev shots, HellaSwag val only).
EVAL_SPLIT = {"arc": "test", "mmlu": "test", "hellaswag": "val"}
FEWSHOT_SPLIT: dict[str, str | None] = {"arc": "train", "mmlu": "dev", "hellaswag": None}
# lm-eval's okapi MMLU takes its shots in file order ("first_n"); ARC and HellaSwag sample them at random.
FEWSHOT_SAMPLER = {"arc": "default", "mmlu": "first_n", "hellaswag": "default"}
MMLU_OPTIONS = 4  # the okapi MMLU prompt always lists A. to D.
DTYPES = ("float32", "bfloat16", "float16", "auto")
RESULT_KEYS = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "n")


@dataclass
class EvalConfig:
    benchmarks: list[str] = field(default_factory=lambda: list(BENCHMARKS))
    # Leaderboard shots (arc 25, hellaswag 10, mmlu 5) live in the paper profile; the laptop default is zero-shot.
    num_fewshot: dict[str, int] = field(default_factory=lambda: {b: 0 for b in BENCHMARKS})
    limit: int | None = None
    batch_size: int = 4  # fixed: "auto" probes memory and makes runs machine-dependent
    seed: int = 1234
    device: str = "cpu"
    dtype: str = "float32"
    # Extra reference columns of the paper's tables (e.g. {bloomz: bigscience/bloomz-7b1}): name -> local model
    # folder or hub id (a hub id needs OKAPI_ALLOW_HUB=1). Evaluated next to base / SFT / RLHF in every language.
    reference_models: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        allowed = ", ".join(BENCHMARKS)
        for name, spec in self.reference_models.items():
            check(
                bool(re.fullmatch(r"[A-Za-z0-9_.-]+", name)) and bool(str(spec).strip()),
                f"evaluate.reference_models.{name}",
                spec,
                "a model folder or hub id under a name of letters, digits, '.', '_' or '-'",
            )
        check(
            bool(self.benchmarks) and all(b in BENCHMARKS for b in self.benchmarks),
            "evaluate.benchmarks",
            self.benchmarks,
            f"a non-empty list of {allowed}",
        )
        check(
            len(set(self.benchmarks)) == len(self.benchmarks),
            "evaluate.benchmarks",
            self.benchmarks,
            "each benchmark at most once",
        )
        for name, shots in self.num_fewshot.items():
            check(name in BENCHMARKS, f"evaluate.num_fewshot.{name}", shots, f"keys among {allowed}")
            check(
                isinstance(shots, int) and not isinstance(shots, bool) and shots >= 0,
                f"evaluate.num_fewshot.{name}",
                shots,
                "an integer >= 0",
            )
        check(self.limit is None or self.limit >= 1, "evaluate.limit", self.limit, "null or an integer >= 1")
        check(self.batch_size >= 1, "evaluate.batch_size", self.batch_size, "an integer >= 1 (never 'auto')")
        check(self.seed >= 0, "evaluate.seed", self.seed, "an integer >= 0")
        check(
            re.fullmatch(r"cpu|mps|cuda(:\d+)?", self.device) is not None,
            "evaluate.device",
            self.device,
            "cpu, mps, cuda or cuda:<index>",
        )
        check(self.dtype in DTYPES, "evaluate.dtype", self.dtype, ", ".join(DTYPES))

    def shots(self, benchmark: str) -> int:
        return self.num_fewshot.get(benchmark, 0)


# --- the okapi task family's preprocessing, reimplemented so our task can read local files -----------------------


def clean_text(text: str) -> str:
    """lm-eval okapi's ``preprocess``: strip, turn WikiHow's " [title]" into ". ", drop other [bracketed] tags."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _present_options(doc: dict[str, Any]) -> list[str]:
    # The okapi ARC task keeps every truthy option, in order; validation guarantees there are no gaps.
    return [doc[f] for f in OPTION_FIELDS if doc.get(f)]


def arc_doc(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        "query": "Question: " + clean_text(doc["instruction"]) + "\nAnswer:",
        "choices": [clean_text(o) for o in _present_options(doc)],
        "gold": LETTERS.index(doc["answer"]),
    }


def mmlu_doc(doc: dict[str, Any]) -> dict[str, Any]:
    options = "".join(
        f"\n{letter}. {doc[f]}" for letter, f in zip(LETTERS[:MMLU_OPTIONS], OPTION_FIELDS[:MMLU_OPTIONS], strict=True)
    )
    return {
        "query": doc["instruction"].strip() + options + "\nAnswer:",
        "choices": list(LETTERS[:MMLU_OPTIONS]),
        "gold": LETTERS.index(doc["answer"]),
    }


def hellaswag_doc(doc: dict[str, Any]) -> dict[str, Any]:
    # str.capitalize also lowercases the rest of ctx_b; kept because the okapi task does it.
    ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    return {
        "query": clean_text(doc["activity_label"] + ": " + ctx),
        "choices": [clean_text(e) for e in doc["endings"]],
        "gold": int(doc["label"]),
    }


def process_arc_docs(dataset: Any) -> Any:
    return dataset.map(arc_doc)


def process_mmlu_docs(dataset: Any) -> Any:
    return dataset.map(mmlu_doc)


def process_hellaswag_docs(dataset: Any) -> Any:
    return dataset.map(hellaswag_doc)


# --- validation ----------------------------------------------------------------------------------------------------


def record_problem(benchmark: str, rec: dict[str, Any]) -> tuple[str, str] | None:
    """(field, what is wrong) for the first problem in one record, or None when the record is usable."""
    if benchmark == "hellaswag":
        for key in ("activity_label", "ctx_a", "ctx_b"):
            if not isinstance(rec.get(key), str):
                return key, "is missing (a string is required; ctx_b may be empty)"
        if not (rec["activity_label"] + rec["ctx_a"] + rec["ctx_b"]).strip():
            return "ctx_a", "is empty (the context needs text)"
        endings = rec.get("endings")
        if not isinstance(endings, list) or len(endings) < 2:
            return "endings", "must be a list of at least 2 endings"
        for i, ending in enumerate(endings):
            if not isinstance(ending, str) or not ending.strip():
                return "endings", f"ending {i} is empty"
        label = rec.get("label")
        label = label.strip() if isinstance(label, str) else label
        if not isinstance(label, str) or not label.isdigit() or int(label) >= len(endings):
            return "label", f"= {rec.get('label')!r} is not an ending index; allowed: '0'..'{len(endings) - 1}'"
        return None
    if not isinstance(rec.get("instruction"), str) or not rec["instruction"].strip():
        return "instruction", "is missing or empty"
    present = [bool(isinstance(rec.get(f), str) and rec[f]) for f in OPTION_FIELDS]
    n = sum(present)
    if n < 2:
        return "options", f"has {n} option(s); at least 2 (option_a, option_b, ...) are required"
    if not all(present[:n]):
        gap = OPTION_FIELDS[present.index(False)]
        return gap, "is missing while a later option is set; options must fill option_a, option_b, ... in order"
    if benchmark == "mmlu" and n != MMLU_OPTIONS:
        return "options", f"has {n} options; MMLU records need exactly 4 (option_a..option_d, option_e empty)"
    allowed = LETTERS[:n]
    if rec.get("answer") not in allowed:
        return "answer", f"= {rec.get('answer')!r} is not one of its options; allowed: {', '.join(allowed)}"
    return None


def record_name(benchmark: str, rec: dict[str, Any], index: int) -> str:
    key = "ind" if benchmark == "hellaswag" else "id"
    value = rec.get(key)
    return f"record {index} ({key}={value!r})" if value is not None else f"record {index}"


def validate_records(benchmark: str, rows: list[dict[str, Any]], where: str) -> None:
    if not rows:
        raise DataError(f"{where}: no records; a {benchmark} file needs at least one")
    for i, rec in enumerate(rows):
        if benchmark != "hellaswag" and not rec.get("id"):
            raise DataError(f"{where}, record {i}: field 'id' is missing or empty")
        problem = record_problem(benchmark, rec)
        if problem:
            raise DataError(f"{where}, {record_name(benchmark, rec, i)}: field {problem[0]!r} {problem[1]}")


def _check_benchmark(benchmark: str) -> None:
    if benchmark not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {benchmark!r}; allowed: {', '.join(BENCHMARKS)}")


def _check_lang(lang: str) -> None:
    get_language(lang)  # Table 1's, a code langcodes knows, or one params.yaml describes


def load_benchmark_file(benchmark: str, path: Path) -> list[dict[str, Any]]:
    """Read and validate one benchmark Parquet file (schema, then every record)."""
    _check_benchmark(benchmark)
    rows = read_rows(path, SCHEMA[benchmark])
    validate_records(benchmark, rows, str(path))
    return rows


def benchmark_files(data_dir: Path, benchmark: str) -> tuple[Path, Path | None]:
    """(evaluation file, few-shot file or None) for ``benchmark`` in a language folder."""
    data_dir = Path(data_dir)
    candidates = [data_dir / f"{benchmark}.parquet", data_dir / f"{benchmark}_{EVAL_SPLIT[benchmark]}.parquet"]
    eval_file = next((p for p in candidates if p.is_file()), None)
    if eval_file is None:
        raise DataError(f"{data_dir}: no {benchmark} data; expected {candidates[0].name} or {candidates[1].name}")
    split = FEWSHOT_SPLIT[benchmark]
    shots = data_dir / f"{benchmark}_{split}.parquet" if split else None
    return eval_file, shots if shots is not None and shots.is_file() else None


# --- task generation -------------------------------------------------------------------------------------------------


def task_name(benchmark: str, lang: str) -> str:
    return f"okapi_local_{benchmark}_{lang}"


def write_task_yaml(
    task_dir: Path,
    benchmark: str,
    lang: str,
    data_file: Path,
    fewshot_file: Path | None = None,
    cache_dir: Path | None = None,
) -> str:
    """Write one lm-eval task YAML over local Parquet into ``task_dir``; returns the task name."""
    _check_benchmark(benchmark)
    name = task_name(benchmark, lang)
    data_files = {"test": str(Path(data_file).resolve())}
    if fewshot_file is not None:
        data_files["train"] = str(Path(fewshot_file).resolve())
    kwargs: dict[str, Any] = {"data_files": data_files}
    if cache_dir is not None:
        kwargs["cache_dir"] = str(Path(cache_dir).resolve())
    metric_list = [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")]
    config = {
        "task": name,
        "dataset_path": "parquet",
        "dataset_kwargs": kwargs,
        "output_type": "multiple_choice",
        "training_split": "train" if fewshot_file is not None else None,
        "validation_split": None,
        "test_split": "test",
        # Without a separate few-shot file the shots come from the test split; naming it makes lm-eval leave the
        # scored document out of its own context.
        "fewshot_split": "train" if fewshot_file is not None else "test",
        "fewshot_config": {"sampler": FEWSHOT_SAMPLER[benchmark]},
        "doc_to_text": "query",
        "doc_to_target": "gold",
        "doc_to_choice": "choices",
        # MMLU's okapi task reports acc only; its choices are single letters of equal length, so acc_norm == acc
        # and listing it keeps every benchmark's result in one shape.
        "metric_list": metric_list,
        "metadata": {"version": 1.0, "benchmark": benchmark, "lang": lang},
    }
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    # The tag cannot be produced by safe_dump; lm-eval resolves it by importing this module.
    text += f"process_docs: !function okapi.evaluate.process_{benchmark}_docs\n"
    task_dir.mkdir(parents=True, exist_ok=True)
    (task_dir / f"{name}.yaml").write_text(text, encoding="utf-8")
    return name


# --- evaluation ------------------------------------------------------------------------------------------------------


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _is_hub_id(path: Path) -> bool:
    """A reference model named by hub id ("org/name"), allowed only when the user lets us reach the hub."""
    text = str(path)
    return (
        os.environ.get("OKAPI_ALLOW_HUB") == "1"
        and not path.exists()
        and re.fullmatch(r"[\w.-]+/[\w.-]+", text) is not None
    )


def load_lm(model_dir: Path, cfg: EvalConfig) -> LM:
    """An lm-eval HFLM over a local model folder (or a .gguf file, loaded by transformers)."""
    _offline()
    from lm_eval.models.huggingface import HFLM

    model_dir = Path(model_dir)
    kwargs: dict[str, Any] = {"batch_size": cfg.batch_size, "device": cfg.device, "dtype": cfg.dtype}
    if model_dir.is_file() and model_dir.suffix == ".gguf":
        kwargs.update(pretrained=str(model_dir.parent.resolve()), gguf_file=model_dir.name)
    elif (model_dir / "config.json").is_file():
        kwargs["pretrained"] = str(model_dir.resolve())
    elif _is_hub_id(model_dir):
        kwargs["pretrained"] = str(model_dir)
    else:
        raise DataError(f"{model_dir}: not a model folder (no config.json) nor a .gguf file")
    log.info("loading %s for evaluation on %s", model_dir, cfg.device)
    return HFLM(**kwargs)


def run_task(
    lm: LM,
    task_dir: Path,
    name: str,
    num_fewshot: int,
    limit: int | None,
    seed: int,
    log_samples: bool = False,
) -> dict[str, Any]:
    """Run one generated task through ``simple_evaluate``; returns lm-eval's raw result dict."""
    _offline()
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(task_dir), include_defaults=False)
    return simple_evaluate(
        model=lm,
        tasks=[name],
        num_fewshot=num_fewshot,
        limit=limit,
        task_manager=manager,
        log_samples=log_samples,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )


def summarize(raw: dict[str, Any], name: str) -> dict[str, Any]:
    """{acc, acc_stderr, acc_norm, acc_norm_stderr, n} from lm-eval's result dict for task ``name``."""
    res = raw["results"][name]

    def number(key: str) -> float | None:
        value = res.get(f"{key},none")
        return float(value) if isinstance(value, (int, float)) else None

    return {
        "acc": number("acc"),
        "acc_stderr": number("acc_stderr"),
        "acc_norm": number("acc_norm"),
        "acc_norm_stderr": number("acc_norm_stderr"),
        "n": int(raw["n-samples"][name]["effective"]),
    }


def _check_shots(benchmark: str, shots: int, rows: int, fewshot_rows: int | None, where: Path) -> None:
    pool = fewshot_rows if fewshot_rows is not None else rows - 1  # the scored record is left out of its pool
    if shots > pool:
        raise ConfigError(
            f"parameter evaluate.num_fewshot.{benchmark} = {shots} is invalid for {where}: "
            f"only {pool} few-shot examples are available"
        )


def _evaluate_with_lm(
    lm: LM,
    benchmark: str,
    lang: str,
    data_file: Path,
    fewshot_file: Path | None,
    shots: int,
    limit: int | None,
    seed: int,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="okapi_eval_") as tmp:
        # A private datasets cache: no stale hit when a file is rewritten, nothing left in ~/.cache.
        name = write_task_yaml(Path(tmp) / "tasks", benchmark, lang, data_file, fewshot_file, Path(tmp) / "cache")
        raw = run_task(lm, Path(tmp) / "tasks", name, shots, limit, seed)
    result = summarize(raw, name)
    log.info("%s %s: acc %.4f acc_norm %.4f (n=%d)", lang, benchmark, result["acc"], result["acc_norm"], result["n"])
    return result


def evaluate_model(
    model_dir: Path,
    benchmark: str,
    lang: str,
    data_file: Path,
    cfg: EvalConfig,
    num_fewshot: int | None = None,
    limit: int | None = None,
    fewshot_file: Path | None = None,
    lm: LM | None = None,
) -> dict[str, Any]:
    """Score one model on one benchmark file: {acc, acc_stderr, acc_norm, acc_norm_stderr, n}.

    ``fewshot_file`` is an optional separate few-shot split; ``lm`` reuses an already loaded model.
    """
    _check_benchmark(benchmark)
    _check_lang(lang)
    shots = cfg.shots(benchmark) if num_fewshot is None else num_fewshot
    check(shots >= 0, "num_fewshot", shots, "an integer >= 0")
    limit = cfg.limit if limit is None else limit
    check(limit is None or limit >= 1, "limit", limit, "an integer >= 1")
    rows = load_benchmark_file(benchmark, Path(data_file))
    shot_rows = len(load_benchmark_file(benchmark, Path(fewshot_file))) if fewshot_file is not None else None
    _check_shots(benchmark, shots, len(rows), shot_rows, Path(data_file))
    if lm is None:
        lm = load_lm(Path(model_dir), cfg)
    return _evaluate_with_lm(lm, benchmark, lang, Path(data_file), fewshot_file, shots, limit, cfg.seed)


def evaluate_models(models: dict[str, Path], lang: str, data_dir: Path, cfg: EvalConfig) -> dict[str, Any]:
    """{model_name: {benchmark: result}} for every model and every configured benchmark of one language.

    All data is validated before the first model is loaded, and each model is loaded once for all benchmarks.
    """
    _check_lang(lang)
    if not models:
        raise ConfigError("evaluate_models: no models given; pass at least one name -> model folder")
    plan = {}
    for benchmark in cfg.benchmarks:
        data_file, fewshot_file = benchmark_files(Path(data_dir), benchmark)
        rows = load_benchmark_file(benchmark, data_file)
        shot_rows = len(load_benchmark_file(benchmark, fewshot_file)) if fewshot_file else None
        _check_shots(benchmark, cfg.shots(benchmark), len(rows), shot_rows, data_file)
        plan[benchmark] = (data_file, fewshot_file)
    for name, path in models.items():
        if not (Path(path).is_file() or (Path(path) / "config.json").is_file() or _is_hub_id(Path(path))):
            hint = " (a hub id needs OKAPI_ALLOW_HUB=1)" if not Path(path).exists() and "/" in str(path) else ""
            raise DataError(f"model {name!r}: {path} is not a model folder (no config.json) nor a .gguf file{hint}")
    results: dict[str, Any] = {}
    for name, path in models.items():
        lm = load_lm(Path(path), cfg)
        results[name] = {
            benchmark: _evaluate_with_lm(
                lm, benchmark, lang, data_file, fewshot_file, cfg.shots(benchmark), cfg.limit, cfg.seed
            )
            for benchmark, (data_file, fewshot_file) in plan.items()
        }
        del lm  # free the weights before the next model is loaded
    return results


# --- CLI -------------------------------------------------------------------------------------------------------------


def _main(argv: list[str] | None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m okapi.evaluate", description="Score one model on one translated benchmark with lm-eval."
    )
    p.add_argument("--model", required=True, type=Path, help="model folder (or .gguf file)")
    p.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    p.add_argument("--lang", required=True, help="language code (paper Table 1)")
    p.add_argument("--data", required=True, type=Path, help="folder holding <benchmark>.parquet")
    p.add_argument("--num-fewshot", type=int, default=None, help="few-shot examples (default 0)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N records")
    p.add_argument("--batch-size", type=int, default=EvalConfig.batch_size)
    p.add_argument("--device", default=EvalConfig.device)
    p.add_argument("--seed", type=int, default=EvalConfig.seed)
    p.add_argument("--out", required=True, type=Path, help="results JSON to write")
    args = p.parse_args(argv)
    _check_lang(args.lang)
    cfg = EvalConfig(benchmarks=[args.benchmark], batch_size=args.batch_size, device=args.device, seed=args.seed)
    if not args.model.exists():
        raise DataError(f"--model {args.model}: no such file or folder")
    data_file, fewshot_file = benchmark_files(args.data, args.benchmark)
    result = evaluate_model(
        args.model,
        args.benchmark,
        args.lang,
        data_file,
        cfg,
        num_fewshot=args.num_fewshot,
        limit=args.limit,
        fewshot_file=fewshot_file,
    )
    shots = cfg.shots(args.benchmark) if args.num_fewshot is None else args.num_fewshot
    write_json(
        {**result, "benchmark": args.benchmark, "lang": args.lang, "model": str(args.model), "num_fewshot": shots},
        args.out,
    )


def main(argv: list[str] | None = None) -> int:
    from okapi.cli import run

    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
