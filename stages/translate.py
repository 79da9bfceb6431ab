"""Stage `translate@<lang>`: instructions, inputs, outputs and the evaluation sets, translated by the teacher."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from okapi import cli
from okapi.config import ConfigError
from okapi.io import ensure_file, read_rows, write_json, write_parquet
from okapi.params import load_params
from okapi.schemas import HELLASWAG, INSTRUCTIONS, MULTIPLE_CHOICE, PROMPTS, TRANSLATIONS

BENCHMARKS = {"arc": MULTIPLE_CHOICE, "mmlu": MULTIPLE_CHOICE, "hellaswag": HELLASWAG}


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--lang", required=True)
    p.add_argument("--instructions", required=True, type=Path)
    p.add_argument("--eval-sources", required=True, type=Path, help="folder of English <benchmark>.jsonl")
    p.add_argument("--tokenizer", required=True, type=Path, help="base model folder (Table 2 lengths)")
    p.add_argument("--out", required=True, type=Path, help="folder for all/sft/full/rank/ppo.parquet")
    p.add_argument("--eval-out", required=True, type=Path, help="folder for the translated <benchmark>.parquet")
    p.add_argument("--cache", required=True, type=Path)
    p.add_argument("--released", type=Path, help="released@<lang>'s folder (needed with released.use: true)")
    p.add_argument("--metrics", required=True, type=Path)
    args = p.parse_args(argv)
    params = load_params(args.params, lang=args.lang, sections=("teacher", "translate", "released"))
    tcfg, cfg, rel = params.section("teacher"), params.section("translate"), params.section("released")
    instructions_released, eval_released = rel.provides("instructions"), rel.provides("eval")
    if (instructions_released or eval_released) and args.released is None:
        raise ConfigError("released.use is true: pass --released <released@<lang>'s output folder>")

    from okapi.released import read_converted_eval, read_converted_instructions
    from okapi.teacher import TeacherFatalError, open_teacher
    from okapi.translate import table2_lengths, translate_eval, translate_instructions

    metrics: dict = {"source": {"instructions": "released" if instructions_released else "teacher"}}
    metrics["source"]["eval"] = "released" if eval_released else "teacher"
    eval_sets: dict[str, tuple[object, list[dict]]] = {}
    translated: list[dict] = []
    with contextlib.ExitStack() as stack:
        teacher = None
        # English, the source language, passes through: no teacher to start.
        if not (instructions_released and eval_released) and not params.language_info[args.lang].is_source:
            teacher = stack.enter_context(open_teacher(tcfg, args.cache))
        if instructions_released:
            translated, splits = read_converted_instructions(args.released)
        else:
            rows = read_rows(args.instructions, INSTRUCTIONS)
            translated, instr_metrics = translate_instructions(teacher, rows, args.lang, cfg)
            metrics.update(instr_metrics)
        if eval_released:
            eval_sets = read_converted_eval(args.released, args.lang)
            metrics["eval"] = {name: {"records": len(records)} for name, (_, records) in eval_sets.items()}
        else:
            from okapi.eval_sources import load_sources

            metrics["eval"] = {}
            for bench, records in load_sources(args.eval_sources, cfg.eval_sources, cfg.eval_limit).items():
                done, metrics["eval"][bench] = translate_eval(teacher, bench, records, args.lang, cfg)
                eval_sets[bench] = (BENCHMARKS[bench], done)
        metrics["teacher"] = teacher.account() if teacher is not None else {"requests_sent": 0}
    if teacher is None:
        ensure_file(args.cache)  # a DVC output even when no request is made

    if not instructions_released:
        accepted = [r for r in translated if r["status"] == "ok"]
        if translated:
            rate = 1 - len(accepted) / len(translated)
            if rate > tcfg.max_failure_rate:
                raise TeacherFatalError(
                    f"translate@{args.lang}: {rate:.0%} of {len(translated)} examples were rejected, above "
                    f"teacher.max_failure_rate = {tcfg.max_failure_rate}; reasons: {metrics['rejected_by_reason']}"
                )
        from transformers import AutoTokenizer

        metrics["table2"] = table2_lengths(accepted, AutoTokenizer.from_pretrained(args.tokenizer))

        def prompts(keep) -> list[dict]:
            return [{k: r[k] for k in ("id", "lang", "instruction", "input", "output")} for r in accepted if keep(r)]

        splits = {
            "sft": prompts(lambda r: r["split"] == "sft"),
            "full": prompts(lambda r: True),
            "rank": prompts(lambda r: r["split"] == "rank"),
            "ppo": prompts(lambda r: r["split"] == "ppo"),
        }
    for name, split_rows in splits.items():
        if not split_rows:
            raise ConfigError(
                f"translate@{args.lang}: the {name!r} split is empty after translation; raise "
                "generate.num_instructions or translate.limit so every split gets rows"
            )
    # Outputs are written only after everything succeeded, each atomically.
    write_parquet(translated, args.out / "all.parquet", TRANSLATIONS)
    for name, split_rows in splits.items():
        write_parquet(split_rows, args.out / f"{name}.parquet", PROMPTS)
    for name, (schema, records) in eval_sets.items():
        write_parquet(records, args.eval_out / f"{name}.parquet", schema)
    metrics["splits"] = {name: len(r) for name, r in splits.items()}
    write_json(metrics, args.metrics)


if __name__ == "__main__":
    sys.exit(cli.run(main))
