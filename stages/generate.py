"""Stage `generate`: English self-instruct (Alpaca's procedure with Okapi's changes) and the ROUGE-L filter."""

from __future__ import annotations

import sys
from pathlib import Path

from okapi import cli
from okapi.io import ensure_file, write_json, write_parquet
from okapi.params import load_params
from okapi.schemas import INSTRUCTIONS


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--seeds", required=True, type=Path, help="the project's seed tasks (Alpaca's format)")
    p.add_argument(
        "--alpaca-seeds",
        type=Path,
        help="folder of Alpaca's seed_tasks.jsonl (python -m okapi.seeds fetch); needed with generate.seed_tasks: alpaca",
    )
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--card", type=Path, help="the dataset card to write (default: README.md beside --out)")
    p.add_argument("--cache", required=True, type=Path, help="teacher response cache (SQLite, okapi.cache)")
    p.add_argument("--metrics", required=True, type=Path)
    args = p.parse_args(argv)
    args.card = args.card or args.out.parent / "README.md"
    params = load_params(args.params, sections=("teacher", "generate", "released"))
    tcfg, gcfg = params.section("teacher"), params.section("generate")
    from okapi.cards import generated_card, section_params

    card_params = section_params(teacher=tcfg, generate=gcfg)
    if params.section("released").provides("instructions"):
        # Every language starts from Okapi's released translations: no English instructions to generate.
        metrics = {"skipped": "released.use with the instructions part", "kept": 0, "teacher": {"requests": 0}}
        write_parquet([], args.out, INSTRUCTIONS)
        generated_card([], metrics, card_params).write(args.card)
        ensure_file(args.cache)
        write_json(metrics, args.metrics)
        return

    from okapi.seeds import load_seed_set
    from okapi.selfinstruct import generate, load_pool
    from okapi.teacher import enforce_failure_rate, open_teacher

    seeds = load_seed_set(gcfg.seed_tasks, args.seeds, args.alpaca_seeds)
    pool = load_pool(gcfg.pool_path, gcfg.pool_limit) if gcfg.pool_path else []
    with open_teacher(tcfg, args.cache) as teacher:
        # The filter's decisions go to the teacher cache beside the answers they derive from (okapi.filter_replay).
        rows, metrics = generate(teacher, seeds, pool, gcfg, decisions=teacher.cache)
        metrics["teacher"] = teacher.account()
    # The unit here is a requested instruction: unparseable answers and filtered tasks both count, but only as far
    # as they leave generate.num_instructions short (the ROUGE-L filter is meant to drop many candidates).
    reasons = {"answer_rejected": metrics["answers_rejected"], **metrics["rejected_by_reason"]}
    shortfall = max(metrics["target"] - metrics["kept"], 0)
    enforce_failure_rate("generate: requested instructions not kept", shortfall, metrics["target"], tcfg, reasons)
    write_parquet(rows, args.out, INSTRUCTIONS)
    generated_card(rows, metrics, card_params).write(args.card)
    write_json(metrics, args.metrics)


if __name__ == "__main__":
    sys.exit(cli.run(main))
