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
    p.add_argument("--seeds", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--cache", required=True, type=Path, help="teacher response cache (SQLite, okapi.cache)")
    p.add_argument("--metrics", required=True, type=Path)
    args = p.parse_args(argv)
    params = load_params(args.params, sections=("teacher", "generate", "released"))
    tcfg, gcfg = params.section("teacher"), params.section("generate")
    if params.section("released").provides("instructions"):
        # Every language starts from Okapi's released translations: no English instructions to generate.
        write_parquet([], args.out, INSTRUCTIONS)
        ensure_file(args.cache)
        write_json(
            {"skipped": "released.use with the instructions part", "kept": 0, "teacher": {"requests": 0}}, args.metrics
        )
        return

    from okapi.selfinstruct import generate, load_pool, load_seeds
    from okapi.teacher import open_teacher

    seeds = load_seeds(args.seeds)
    pool = load_pool(gcfg.pool_path, gcfg.pool_limit) if gcfg.pool_path else []
    with open_teacher(tcfg, args.cache) as teacher:
        rows, metrics = generate(teacher, seeds, pool, gcfg)
        metrics["teacher"] = teacher.account()
    write_parquet(rows, args.out, INSTRUCTIONS)
    write_json(metrics, args.metrics)


if __name__ == "__main__":
    sys.exit(cli.run(main))
