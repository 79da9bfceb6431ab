"""Stage `rank@<lang>`: the teacher's two-turn ranking (translate to English, then rank) and preference pairs."""

from __future__ import annotations

import sys
from pathlib import Path

from okapi import cli
from okapi.config import ConfigError
from okapi.io import ensure_file, read_rows, write_json, write_parquet
from okapi.params import load_params
from okapi.schemas import PAIRS, RANKINGS, SAMPLES


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--lang", required=True)
    p.add_argument("--samples", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="folder for rankings.parquet and pairs.parquet")
    p.add_argument("--cache", required=True, type=Path)
    p.add_argument("--released", type=Path, help="released@<lang>'s folder (needed with released.use: true)")
    p.add_argument("--metrics", required=True, type=Path)
    args = p.parse_args(argv)
    params = load_params(args.params, lang=args.lang, sections=("teacher", "rank", "released"))
    tcfg, cfg = params.section("teacher"), params.section("rank")
    if params.section("released").provides("ranking"):
        if args.released is None:
            raise ConfigError("released.use is true: pass --released <released@<lang>'s output folder>")
        # Okapi's released ranking pairs stand in for the teacher's ranking: no request is sent.
        pairs = read_rows(args.released / "pairs.parquet", PAIRS)
        ensure_file(args.cache)
        write_parquet([], args.out / "rankings.parquet", RANKINGS)
        write_parquet(pairs, args.out / "pairs.parquet", PAIRS)
        write_json({"source": "released", "pairs": len(pairs), "teacher": {"requests": 0}}, args.metrics)
        return
    samples = read_rows(args.samples, SAMPLES)

    from okapi.ranking import make_pairs, rank_samples
    from okapi.teacher import open_teacher

    with open_teacher(tcfg, args.cache) as teacher:
        rankings, metrics = rank_samples(teacher, samples, args.lang, cfg)
        metrics["teacher"] = teacher.account()
    pairs = make_pairs(rankings, cfg.pairs)
    write_parquet(rankings, args.out / "rankings.parquet", RANKINGS)
    write_parquet(pairs, args.out / "pairs.parquet", PAIRS)
    metrics["pairs"] = len(pairs)
    write_json(metrics, args.metrics)


if __name__ == "__main__":
    sys.exit(cli.run(main))
