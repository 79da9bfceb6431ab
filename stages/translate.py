"""Stage `translate@<lang>`: instructions, inputs, outputs and the evaluation sets, translated by the teacher."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from okapi import cli
from okapi.config import ConfigError
from okapi.io import ensure_file, read_rows, write_json, write_parquet
from okapi.languages import get_language
from okapi.params import load_params
from okapi.schemas import BENCHMARK_SCHEMA, INSTRUCTIONS, PROMPTS, TRANSLATIONS


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
    params = load_params(args.params, lang=args.lang, sections=("teacher", "translate", "released", "evaluate"))
    tcfg, cfg, rel = params.section("teacher"), params.section("translate"), params.section("released")
    instructions_released, eval_released = rel.provides("instructions"), rel.provides("eval")
    if (instructions_released or eval_released) and args.released is None:
        raise ConfigError("released.use is true: pass --released <released@<lang>'s output folder>")
    from okapi.eval_sources import check_sources
    from okapi.protocols import shot_splits

    # The splits evaluate.protocol draws shots from are translated too (shots never come from the scored split).
    ecfg = params.section("evaluate")
    shot_keys = [f"{b}_{s}" for b, s in shot_splits(ecfg.protocol, ecfg.benchmarks, ecfg.num_fewshot).items()]
    if not eval_released:
        check_sources(args.eval_sources, cfg.eval_sources, shot_keys)  # before any request is sent

    from okapi.released import read_converted_eval, read_converted_instructions
    from okapi.teacher import enforce_failure_rate, open_teacher
    from okapi.translate import (
        INSTRUCTION_COLUMNS,
        check_splits,
        prompt_splits,
        table2_lengths,
        translate_eval,
        translate_instructions,
    )

    metrics: dict = {"source": {"instructions": "released" if instructions_released else "teacher"}}
    metrics["source"]["eval"] = "released" if eval_released else "teacher"
    eval_sets: dict[str, tuple[object, list[dict]]] = {}
    english_eval: dict[str, list[dict]] = {}
    translated: list[dict] = []
    with contextlib.ExitStack() as stack:
        teacher = None
        # English, the source language, passes through: no teacher to start.
        if not (instructions_released and eval_released) and not params.language_info[args.lang].is_source:
            teacher = stack.enter_context(open_teacher(tcfg, args.cache))
        if instructions_released:
            translated, splits = read_converted_instructions(args.released)
            if cfg.back_translation:
                metrics["back_translation"] = {"skipped": "released rows carry no English source to compare with"}
        else:
            rows = read_rows(args.instructions, INSTRUCTIONS, columns=INSTRUCTION_COLUMNS)
            translated, instr_metrics = translate_instructions(teacher, rows, args.lang, cfg)
            metrics.update(instr_metrics)
            if cfg.back_translation:
                from okapi.backtranslate import back_translate

                metrics["back_translation"] = back_translate(teacher, translated, args.lang, cfg)
        from okapi.eval_sources import benchmark_of, load_sources

        if eval_released:
            eval_sets = read_converted_eval(args.released, args.lang)
            metrics["eval"] = {name: {"records": len(records)} for name, (_, records) in eval_sets.items()}
            if not cfg.eval_sources:  # the local English sources, for decontamination (no hub access for it)
                english_eval = load_sources(args.eval_sources, {}, cfg.eval_limit)
        else:
            metrics["eval"] = {}
            english_eval = load_sources(args.eval_sources, cfg.eval_sources, cfg.eval_limit, shot_keys)
            for key, records in english_eval.items():
                bench = benchmark_of(key)
                done, metrics["eval"][key] = translate_eval(teacher, bench, records, args.lang, cfg)
                eval_sets[key] = (BENCHMARK_SCHEMA[bench], done)
        metrics["teacher"] = teacher.account() if teacher is not None else {"requests_sent": 0}
    if teacher is None:
        ensure_file(args.cache)  # a DVC output even when no request is made

    # One rule for every teacher stage: too many unusable answers stop here, before anything is written. It counts
    # translation rejections only, not the quality filters below (decontamination, back-translation).
    if not instructions_released:
        enforce_failure_rate(
            f"translate@{args.lang} instructions",
            metrics["rejected"],
            metrics["rows"],
            tcfg,
            metrics["rejected_by_reason"],
        )
    if not eval_released:
        for bench, m in metrics["eval"].items():
            enforce_failure_rate(
                f"translate@{args.lang} {bench} records", m["dropped"], m["records"], tcfg, m["dropped_by_reason"]
            )
    # Decontamination: every training row (translation and English source) against every evaluation set used.
    from okapi.decontaminate import decontaminate

    eval_for_check = [*english_eval.items(), *((name, records) for name, (_, records) in eval_sets.items())]
    dropped, metrics["decontamination"] = decontaminate(
        translated, eval_for_check, cfg.decontaminate, cfg.decontaminate_ngram
    )
    if instructions_released:
        splits = {name: [r for r in part if r["id"] not in dropped] for name, part in splits.items()}
    else:
        from transformers import AutoTokenizer

        accepted = [r for r in translated if r["status"] == "ok"]
        metrics["table2"] = table2_lengths(accepted, AutoTokenizer.from_pretrained(args.tokenizer))
        splits = prompt_splits(translated)
    check_splits(splits, args.lang)
    # Outputs are written only after everything succeeded, each atomically.
    write_parquet(translated, args.out / "all.parquet", TRANSLATIONS)
    for name, split_rows in splits.items():
        write_parquet(split_rows, args.out / f"{name}.parquet", PROMPTS)
    for name, (schema, records) in eval_sets.items():
        write_parquet(records, args.eval_out / f"{name}.parquet", schema)
    metrics["splits"] = {name: len(r) for name, r in splits.items()}
    from okapi.cards import section_params, translation_card

    card = translation_card(
        args.lang,
        get_language(args.lang).name,
        metrics["splits"],
        len(translated),
        metrics,
        section_params(teacher=tcfg, translate=cfg, released={"use": rel.use, "parts": rel.parts}),
        instructions_released,
    )
    card.write(args.out / "README.md")
    write_json(metrics, args.metrics)


if __name__ == "__main__":
    sys.exit(cli.run(main))
