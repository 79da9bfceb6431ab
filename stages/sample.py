"""Stage `sample@<lang>`: T responses (paper: 4) per ranking prompt, sampled from the SFT model."""

from __future__ import annotations

import sys
from pathlib import Path

from okapi import cli
from okapi.io import read_rows, write_json, write_parquet
from okapi.params import load_params
from okapi.schemas import PROMPTS, SAMPLES


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--lang", required=True)
    p.add_argument("--model", required=True, type=Path, help="SFT model folder")
    p.add_argument("--prompts", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--metrics", required=True, type=Path)
    args = p.parse_args(argv)
    params = load_params(args.params, lang=args.lang, sections=("sample", "released"))
    cfg = params.section("sample")
    if params.section("released").provides("ranking"):
        # The released ranking data already holds the ranked responses: nothing to sample.
        write_parquet([], args.out, SAMPLES)
        write_json({"skipped": "released.use with the ranking part", "prompts": 0, "responses": 0}, args.metrics)
        return
    rows = read_rows(args.prompts, PROMPTS)

    from okapi.sampling import sample_responses

    samples = sample_responses(args.model, rows, args.lang, cfg)
    write_parquet(samples, args.out, SAMPLES)
    lengths = [len(r) for s in samples for r in s["responses"]]
    write_json(
        {
            "prompts": len(samples),
            "responses": len(lengths),
            "mean_response_chars": round(sum(lengths) / max(1, len(lengths)), 1),
            "empty_responses": sum(1 for n in lengths if n == 0),
        },
        args.metrics,
    )


if __name__ == "__main__":
    sys.exit(cli.run(main))
