"""Stage `rank@<lang>`: the teacher's two-turn ranking (translate to English, then rank) and preference pairs."""

from __future__ import annotations

import sys
from pathlib import Path

from okapi import cli
from okapi.config import ConfigError
from okapi.io import ensure_file, read_rows, write_json, write_parquet
from okapi.languages import get_language
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
    from okapi.cards import pairs_card, section_params

    rel = params.section("released")
    # The card records the params dvc.yaml tracks for this stage (released.use and released.parts, not the URLs).
    card_params = section_params(teacher=tcfg, rank=cfg, released={"use": rel.use, "parts": rel.parts})
    name = get_language(args.lang).name
    if rel.provides("ranking"):
        if args.released is None:
            raise ConfigError("released.use is true: pass --released <released@<lang>'s output folder>")
        # Okapi's released ranking pairs stand in for the teacher's ranking: no request is sent.
        pairs = read_rows(args.released / "pairs.parquet", PAIRS)
        ensure_file(args.cache)
        write_parquet([], args.out / "rankings.parquet", RANKINGS)
        write_parquet(pairs, args.out / "pairs.parquet", PAIRS)
        metrics = {"source": "released", "pairs": len(pairs), "teacher": {"requests": 0}}
        pairs_card(args.lang, name, len(pairs), 0, metrics, card_params).write(args.out / "README.md")
        write_json(metrics, args.metrics)
        return
    samples = read_rows(args.samples, SAMPLES)

    from okapi.ranking import make_pairs, rank_samples
    from okapi.teacher import enforce_failure_rate, open_teacher

    with open_teacher(tcfg, args.cache) as teacher:
        rankings, metrics = rank_samples(teacher, samples, args.lang, cfg)
        metrics["teacher"] = teacher.account()
    ranked = metrics["ranked"] + metrics["rejected"]
    enforce_failure_rate(f"rank@{args.lang} prompts", metrics["rejected"], ranked, tcfg, metrics["rejected_by_reason"])
    pairs = make_pairs(rankings, cfg.pairs)
    write_parquet(rankings, args.out / "rankings.parquet", RANKINGS)
    write_parquet(pairs, args.out / "pairs.parquet", PAIRS)
    metrics["pairs"] = len(pairs)
    pairs_card(args.lang, name, len(pairs), len(rankings), metrics, card_params).write(args.out / "README.md")
    write_json(metrics, args.metrics)


if __name__ == "__main__":
    sys.exit(cli.run(main))
