"""Benchmark evaluation with lm-evaluation-harness on the translated ARC, HellaSwag and MMLU sets (paper §2.4, §4).

We run lm-eval's ``simple_evaluate`` with an ``HFLM`` over a local model folder, on task YAML that we generate into
a temporary folder over our local Parquet files. How each benchmark is prompted, which continuations are scored and
how many shots come from which split is the chosen protocol's (evaluate.protocol, :mod:`okapi.protocols`):
``lm_eval_okapi`` equals lm-eval's own ``okapi`` task family on the same records (a test checks this),
``okapi_paper`` is the authors' harness that produced the paper's Tables 3-8, ``leaderboard`` the Open LLM
Leaderboard's shot counts.

Data layout of one language folder (``data/eval/<lang>/``):

- ``<benchmark>.parquet`` — the evaluation records (written by the translate stage), or, for data imported from
  Okapi's release by :mod:`okapi.import_eval`, ``<benchmark>_<split>.parquet`` with the evaluation split
  ``arc_test``, ``mmlu_test`` or ``hellaswag_val``;
- the shot split ``<benchmark>_<split>.parquet`` (``arc_train``, ``mmlu_dev``, ``hellaswag_train``) for every
  benchmark evaluated with shots. A shot is never drawn from the scored split: a missing shot file stops the run,
  naming the file, before any model is loaded.

Per-document results (``--log-samples`` here, ``--samples`` in the stage) are JSON lines, one per scored document:
``doc_id`` (its index in the evaluation file), ``id`` (the record's id, HellaSwag's ind), ``context`` (all text
before the continuation, shots included), ``continuations`` (the scored strings in option order, each with the
leading space that joins it to the context), ``gold`` (index of the right one), ``acc`` and ``acc_norm`` (1.0 when
the argmax of the log-likelihoods, resp. of the log-likelihoods per character, is ``gold``, else 0.0) and
``loglikelihoods`` (one per continuation).
"""

from __future__ import annotations

import argparse
import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from okapi.config import ConfigError, check, check_choices
from okapi.hub import apply_offline_policy, is_hub_id
from okapi.io import DataError, atomic_dir, read_rows, write_json, write_jsonl
from okapi.languages import get_language
from okapi.protocols import PROTOCOL_NAMES, SHOT_SPLIT, ProtocolName, get_protocol, shots_for
from okapi.schemas import BENCHMARK_SCHEMA, BENCHMARKS, record_name, record_problem

if TYPE_CHECKING:  # heavy imports stay out of module import: validation and --help need no torch
    from lm_eval.api.model import LM

log = logging.getLogger(__name__)

# The split each benchmark is scored on in Okapi's release (its shot splits: okapi.protocols.SHOT_SPLIT).
EVAL_SPLIT = {"arc": "test", "mmlu": "test", "hellaswag": "val"}
RESULT_KEYS = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "n")


@dataclass
class EvalConfig:
    """The ``evaluate`` section: lm-eval on the translated ARC, HellaSwag and MMLU (paper §4)."""

    benchmarks: list[str] = field(default_factory=lambda: list(BENCHMARKS))
    """Benchmarks to score, each at most once (schemas.BENCHMARKS)."""
    protocol: ProtocolName = "lm_eval_okapi"
    """How benchmarks are prompted and scored (okapi.protocols): okapi_paper (the authors' harness: ARC and MMLU
    25-shot, HellaSwag 0-shot, MMLU scored on whole choice texts), lm_eval_okapi (lm-eval's own okapi tasks,
    0-shot) or leaderboard (lm_eval_okapi's prompts with 25/10/5 shots)."""
    num_fewshot: dict[str, int] | None = None
    """Shots per benchmark overriding the protocol's, e.g. {mmlu: 5}; a benchmark not named, or null, keeps the
    protocol's own shots."""
    limit: int | None = None
    """Score only the first N records of each benchmark (null: all)."""
    batch_size: int = 4
    """Fixed batch size: "auto" probes memory and makes runs machine-dependent."""
    seed: int = 1234
    """Seeds lm-eval's few-shot sampling."""
    device: str = "cpu"
    """cpu, mps, cuda or cuda:<index>."""
    dtype: Literal["float32", "bfloat16", "float16", "auto"] = "float32"
    """Weights' dtype when the model is loaded for scoring."""
    share_context: bool = True
    """Score a question's choices with its context computed once (keys and values kept, each choice's own tokens
    run after them; load_lm): the same log-likelihoods as lm-eval's batches to float rounding, ~2x fewer tokens on
    ARC and HellaSwag. false: lm-eval's HFLM as is (every choice with its context, batch_size at a time)."""
    reference_models: dict[str, str] = field(default_factory=dict)
    """Extra reference columns of the paper's tables (e.g. {bloomz: bigscience/bloomz-7b1}): name -> local model
    folder or hub id (a hub id needs OKAPI_ALLOW_HUB=1). Evaluated next to base / SFT / RLHF in every language."""

    def __post_init__(self) -> None:
        check_choices(self, "evaluate")
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
        check(self.protocol in PROTOCOL_NAMES, "evaluate.protocol", self.protocol, ", ".join(PROTOCOL_NAMES))
        for name, shots in (self.num_fewshot or {}).items():
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

    def shots(self, benchmark: str) -> int:
        return shots_for(self.protocol, benchmark, self.num_fewshot)


# --- validation ----------------------------------------------------------------------------------------------------


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
    """Read and validate one benchmark Parquet file (schema, then every record).

    Input columns: a Parquet file of schemas.BENCHMARK_SCHEMA[benchmark].
    Output columns: the same records, each checked by schemas.record_problem.
    """
    _check_benchmark(benchmark)
    rows = read_rows(path, BENCHMARK_SCHEMA[benchmark])
    validate_records(benchmark, rows, str(path))
    return rows


def benchmark_files(data_dir: Path, benchmark: str) -> tuple[Path, Path | None]:
    """(evaluation file, few-shot file or None) for ``benchmark`` in a language folder."""
    data_dir = Path(data_dir)
    candidates = [data_dir / f"{benchmark}.parquet", data_dir / f"{benchmark}_{EVAL_SPLIT[benchmark]}.parquet"]
    eval_file = next((p for p in candidates if p.is_file()), None)
    if eval_file is None:
        raise DataError(f"{data_dir}: no {benchmark} data; expected {candidates[0].name} or {candidates[1].name}")
    shots = shot_file(data_dir, benchmark)
    return eval_file, shots if shots.is_file() else None


def shot_file(data_dir: Path, benchmark: str) -> Path:
    """Where ``benchmark``'s shot split lives in a language folder (it may not exist)."""
    return Path(data_dir) / f"{benchmark}_{SHOT_SPLIT[benchmark]}.parquet"


@dataclass
class BenchmarkPlan:
    """One benchmark of one language, checked and ready to score: files, protocol and shots."""

    benchmark: str
    data_file: Path
    fewshot_file: Path | None
    protocol: str
    shots: int
    records: int


def plan_benchmark(data_dir: Path, benchmark: str, cfg: EvalConfig, num_fewshot: int | None = None) -> BenchmarkPlan:
    """Find and validate ``benchmark``'s files under ``cfg.protocol``; needs no model, so it runs before any loads.

    ``num_fewshot`` overrides the config's shots (the CLI's --num-fewshot). A benchmark with shots and no shot-split
    file is an error: shots are never drawn from the split being scored.
    """
    _check_benchmark(benchmark)
    shots = cfg.shots(benchmark) if num_fewshot is None else num_fewshot
    check(shots >= 0, f"evaluate.num_fewshot.{benchmark}", shots, "an integer >= 0")
    data_file, fewshot_file = benchmark_files(Path(data_dir), benchmark)
    rows = load_benchmark_file(benchmark, data_file)
    if shots > 0:
        if fewshot_file is None:
            wanted, split = shot_file(Path(data_dir), benchmark), SHOT_SPLIT[benchmark]
            raise DataError(
                f"{wanted}: missing; evaluate.protocol = {cfg.protocol} draws {shots} {benchmark} shots from its "
                f"{split} split (never from the scored {data_file.name}), so provide it (translate.eval_sources."
                f"{benchmark}_{split} or data/eval_sources/{benchmark}_{split}.jsonl for the translate stage, or the "
                f"release's <lang>_{split}.json through okapi.import_eval) or set evaluate.num_fewshot.{benchmark}: 0"
            )
        pool = len(load_benchmark_file(benchmark, fewshot_file))
        if shots > pool:
            raise ConfigError(
                f"parameter evaluate.num_fewshot.{benchmark} = {shots} is invalid for {fewshot_file}: "
                f"only {pool} few-shot examples are available"
            )
    else:
        fewshot_file = None  # zero-shot: a shot file next to the data is neither read nor needed
    return BenchmarkPlan(benchmark, data_file, fewshot_file, cfg.protocol, shots, len(rows))


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
    protocol: str = "lm_eval_okapi",
) -> str:
    """Write one lm-eval task YAML over local Parquet into ``task_dir``; returns the task name.

    Prompts, continuations and the shot sampler are ``protocol``'s; the shot count is given at run time.
    """
    _check_benchmark(benchmark)
    spec = get_protocol(protocol, benchmark)
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
        # Without a separate few-shot file the shots would come from the test split; naming it makes lm-eval leave
        # the scored document out of its own context. plan_benchmark refuses that case for every real run.
        "fewshot_split": "train" if fewshot_file is not None else "test",
        # lm-eval's defaults, spelled out because both harnesses join shots this way: query, " ", gold
        # continuation; examples separated by a blank line.
        "fewshot_config": {"sampler": spec.sampler},
        "target_delimiter": " ",
        "fewshot_delimiter": "\n\n",
        "doc_to_text": "query",
        "doc_to_target": "gold",
        "doc_to_choice": "choices",
        # lm-eval's okapi MMLU reports acc only; its choices are single letters of equal length, so acc_norm ==
        # acc there, and listing it keeps every benchmark's result in one shape.
        "metric_list": metric_list,
        "metadata": {"version": 1.0, "benchmark": benchmark, "lang": lang, "protocol": protocol},
    }
    text = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
    # The tag cannot be produced by safe_dump; lm-eval resolves it by importing this module.
    text += f"process_docs: !function okapi.protocols.{spec.doc}\n"
    task_dir.mkdir(parents=True, exist_ok=True)
    (task_dir / f"{name}.yaml").write_text(text, encoding="utf-8")
    return name


# --- evaluation ------------------------------------------------------------------------------------------------------


def load_lm(model_dir: Path, cfg: EvalConfig) -> LM:
    """An lm-eval HFLM over a local model folder (or a .gguf file, loaded by transformers)."""
    apply_offline_policy()
    from lm_eval.models.huggingface import HFLM

    model_dir = Path(model_dir)
    kwargs: dict[str, Any] = {"batch_size": cfg.batch_size, "device": cfg.device, "dtype": cfg.dtype}
    if model_dir.is_file() and model_dir.suffix == ".gguf":
        kwargs.update(pretrained=str(model_dir.parent.resolve()), gguf_file=model_dir.name)
    elif (model_dir / "config.json").is_file():
        kwargs["pretrained"] = str(model_dir.resolve())
    elif is_hub_id(model_dir):
        kwargs["pretrained"] = str(model_dir)
    else:
        raise DataError(f"{model_dir}: not a model folder (no config.json) nor a .gguf file")
    log.info("loading %s for evaluation on %s", model_dir, cfg.device)
    return _shared_context_lm_class()(**kwargs) if cfg.share_context else HFLM(**kwargs)


def _shared_context_lm_class() -> type:
    """HFLM whose log-likelihoods compute each distinct context once (evaluate.share_context).

    lm-eval scores a multiple-choice question as one request per choice, each running context + choice through the
    model (it reuses a context only for one-token choices, e.g. MMLU's letters). Here the requests of a context
    share one pass over all of it but its last token: the keys and values are kept, and each choice then runs
    that last token and its own tokens but the last, as lm-eval's input (context + choice)[:-1] does; the
    log-probabilities of the choice's tokens, their sum and the greedy check are lm-eval's. Requests lm-eval would
    truncate (longer than the model's context) and non-causal models go to HFLM's own method."""
    import torch
    from lm_eval.models.huggingface import HFLM

    from okapi.sampling import forward_after_prefix, last_logits_only

    class SharedContextHFLM(HFLM):  # type: ignore[misc, valid-type]
        @torch.no_grad()
        def _loglikelihood_tokens(
            self, requests: list, disable_tqdm: bool = False, override_bs: int | None = None
        ) -> list[tuple[float, bool]]:
            if self.backend != "causal" or any(
                len(ctx) < 2 or not cont or len(ctx) + len(cont) > self.max_length + 1 for _, ctx, cont in requests
            ):
                return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
            groups: dict[tuple[int, ...], list[int]] = {}
            for i, (_, ctx, _) in enumerate(requests):
                groups.setdefault(tuple(ctx), []).append(i)
            answers: list[tuple[float, bool] | None] = [None] * len(requests)
            width = self.batch_size if isinstance(self.batch_size, int) and self.batch_size > 0 else 8
            for ctx, members in groups.items():
                ids = torch.tensor([ctx[:-1]], device=self.device)
                out = self.model(input_ids=ids, use_cache=True, **last_logits_only(self.model))  # keys and values kept
                for start in range(0, len(members), width):
                    chunk = members[start : start + width]
                    for i, answer in zip(chunk, self._after(ctx, out.past_key_values, chunk, requests), strict=True):
                        answers[i] = answer
                        request_str = requests[i][0]
                        if request_str is not None:
                            self.cache_hook.add_partial("loglikelihood", request_str, answer)
            return [a for a in answers if a is not None]

        def _after(
            self, ctx: tuple[int, ...], cache: Any, chunk: list[int], requests: list
        ) -> list[tuple[float, bool]]:
            """(log-likelihood, greedy) of each request in ``chunk``, all with context ``ctx`` (cached but its
            last token)."""
            inputs = [[ctx[-1], *requests[i][2][:-1]] for i in chunk]
            # Padded with id 0 after each row's own tokens: masked, and no real position reads them.
            logits = forward_after_prefix(self.model, cache, len(ctx) - 1, inputs, 0).logits
            logp = torch.nn.functional.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)
            out = []
            for j, i in enumerate(chunk):
                cont = torch.tensor(requests[i][2], dtype=torch.long, device=self.device)
                rows = logp[j, : len(cont)]
                greedy = bool((rows.argmax(dim=-1) == cont).all())
                out.append((float(rows.gather(1, cont.unsqueeze(-1)).sum()), greedy))
            return out

    return SharedContextHFLM


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
    apply_offline_policy()
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


def document_samples(raw: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """One record per scored document from lm-eval's logged samples (fields: see the module docstring)."""
    out = []
    for sample in sorted(raw["samples"][name], key=lambda s: s["doc_id"]):
        arguments = [tuple(a) for a in sample["arguments"]]
        doc = sample["doc"]
        out.append(
            {
                "doc_id": int(sample["doc_id"]),
                "id": doc.get("id", doc.get("ind")),
                "context": arguments[0][0],
                "continuations": [a[1] for a in arguments],
                "gold": int(sample["target"]),
                "acc": float(sample["acc"]),
                "acc_norm": float(sample["acc_norm"]),
                "loglikelihoods": [float(r[0]) for r in sample["filtered_resps"]],
            }
        )
    return out


def _evaluate_with_lm(
    lm: LM, plan: BenchmarkPlan, lang: str, limit: int | None, seed: int, log_samples: bool = False
) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """(result, per-document samples or None) for one planned benchmark."""
    with tempfile.TemporaryDirectory(prefix="okapi_eval_") as tmp:
        # A private datasets cache: no stale hit when a file is rewritten, nothing left in ~/.cache.
        name = write_task_yaml(
            Path(tmp) / "tasks",
            plan.benchmark,
            lang,
            plan.data_file,
            plan.fewshot_file,
            Path(tmp) / "cache",
            protocol=plan.protocol,
        )
        raw = run_task(lm, Path(tmp) / "tasks", name, plan.shots, limit, seed, log_samples=log_samples)
    result = {**summarize(raw, name), "protocol": plan.protocol, "num_fewshot": plan.shots}
    log.info(
        "%s %s (%s, %d-shot): acc %.4f acc_norm %.4f (n=%d)",
        lang,
        plan.benchmark,
        plan.protocol,
        plan.shots,
        result["acc"],
        result["acc_norm"],
        result["n"],
    )
    return result, document_samples(raw, name) if log_samples else None


def evaluate_model(
    model_dir: Path,
    benchmark: str,
    lang: str,
    data_dir: Path,
    cfg: EvalConfig,
    num_fewshot: int | None = None,
    limit: int | None = None,
    lm: LM | None = None,
    samples_path: Path | None = None,
) -> dict[str, Any]:
    """Score one model on one benchmark of a language folder: {acc, acc_stderr, acc_norm, acc_norm_stderr, n,
    protocol, num_fewshot}.

    The files are checked before the model loads; ``lm`` reuses an already loaded model; ``samples_path`` gets one
    JSON line per scored document.
    """
    _check_lang(lang)
    limit = cfg.limit if limit is None else limit
    check(limit is None or limit >= 1, "limit", limit, "an integer >= 1")
    plan = plan_benchmark(Path(data_dir), benchmark, cfg, num_fewshot)
    if lm is None:
        lm = load_lm(Path(model_dir), cfg)
    result, samples = _evaluate_with_lm(lm, plan, lang, limit, cfg.seed, log_samples=samples_path is not None)
    if samples_path is not None and samples is not None:
        write_jsonl(samples, samples_path)
    return result


def samples_file_name(model: str, benchmark: str) -> str:
    """``<model>_<benchmark>.jsonl``: the per-document results file of one model and benchmark in a samples folder."""
    return f"{model}_{benchmark}.jsonl"


def write_samples_dir(samples: dict[str, list[dict[str, Any]]], out_dir: Path) -> None:
    """Write ``{file name: per-document rows}`` into ``out_dir``, replacing the folder as a whole (atomically)."""
    with atomic_dir(out_dir) as tmp:
        for file_name, docs in samples.items():
            write_jsonl(docs, tmp / file_name)


def evaluate_models(
    models: dict[str, Path], lang: str, data_dir: Path, cfg: EvalConfig, samples_dir: Path | None = None
) -> dict[str, Any]:
    """{model_name: {benchmark: result}} for every model and every configured benchmark of one language.

    All data is validated before the first model is loaded, and each model is loaded once for all benchmarks.
    With ``samples_dir``, each (model, benchmark)'s per-document results go to ``<model>_<benchmark>.jsonl`` there;
    the folder is replaced as a whole once every model is scored.
    """
    _check_lang(lang)
    if not models:
        raise ConfigError("evaluate_models: no models given; pass at least one name -> model folder")
    plan = {b: plan_benchmark(Path(data_dir), b, cfg) for b in cfg.benchmarks}
    for name, path in models.items():
        if not (Path(path).is_file() or (Path(path) / "config.json").is_file() or is_hub_id(path)):
            hint = " (a hub id needs OKAPI_ALLOW_HUB=1)" if not Path(path).exists() and "/" in str(path) else ""
            raise DataError(f"model {name!r}: {path} is not a model folder (no config.json) nor a .gguf file{hint}")
    results: dict[str, Any] = {}
    samples: dict[str, list[dict[str, Any]]] = {}
    for name, path in models.items():
        lm = load_lm(Path(path), cfg)
        results[name] = {}
        for benchmark, bench_plan in plan.items():
            result, docs = _evaluate_with_lm(lm, bench_plan, lang, cfg.limit, cfg.seed, samples_dir is not None)
            results[name][benchmark] = result
            if docs is not None:
                samples[samples_file_name(name, benchmark)] = docs
        del lm  # free the weights before the next model is loaded
    if samples_dir is not None:
        write_samples_dir(samples, samples_dir)
    return results


# --- CLI -------------------------------------------------------------------------------------------------------------


def _main(argv: list[str] | None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m okapi.evaluate", description="Score one model on one translated benchmark with lm-eval."
    )
    p.add_argument("--model", required=True, type=Path, help="model folder (or .gguf file)")
    p.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    p.add_argument("--lang", required=True, help="language code (paper Table 1)")
    p.add_argument("--data", required=True, type=Path, help="folder holding <benchmark>.parquet and its shot split")
    p.add_argument(
        "--protocol",
        choices=PROTOCOL_NAMES,
        default=EvalConfig.protocol,
        help=f"prompts, continuations, shots and shot split (okapi.protocols; default {EvalConfig.protocol})",
    )
    p.add_argument("--num-fewshot", type=int, default=None, help="few-shot examples (default: the protocol's)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N records")
    p.add_argument("--batch-size", type=int, default=EvalConfig.batch_size)
    p.add_argument("--device", default=EvalConfig.device)
    p.add_argument("--seed", type=int, default=EvalConfig.seed)
    p.add_argument("--log-samples", type=Path, default=None, help="JSON lines: one per scored document")
    p.add_argument("--out", required=True, type=Path, help="results JSON to write")
    args = p.parse_args(argv)
    _check_lang(args.lang)
    if args.num_fewshot is not None:
        check(args.num_fewshot >= 0, "--num-fewshot", args.num_fewshot, "an integer >= 0")
    cfg = EvalConfig(
        benchmarks=[args.benchmark],
        protocol=args.protocol,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
    )
    if not args.model.exists():
        raise DataError(f"--model {args.model}: no such file or folder")
    result = evaluate_model(
        args.model,
        args.benchmark,
        args.lang,
        args.data,
        cfg,
        num_fewshot=args.num_fewshot,
        limit=args.limit,
        samples_path=args.log_samples,
    )
    write_json({**result, "benchmark": args.benchmark, "lang": args.lang, "model": str(args.model)}, args.out)


def main(argv: list[str] | None = None) -> int:
    from okapi.cli import run

    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
