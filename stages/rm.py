"""Stage `rm@<lang>`: reward model initialised from the SFT model, pairwise ranking loss."""

from __future__ import annotations

import sys
from pathlib import Path

from okapi import cli
from okapi.io import read_rows, write_json
from okapi.params import load_params
from okapi.schemas import PAIRS


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--lang", required=True)
    p.add_argument("--sft", required=True, type=Path)
    p.add_argument("--pairs", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--metrics", required=True, type=Path)
    args = p.parse_args(argv)
    cfg = load_params(args.params, lang=args.lang, sections=("rm",)).section("rm")
    pairs = read_rows(args.pairs, PAIRS)

    from okapi.modeling import is_main_process
    from okapi.reward import train_reward_model

    metrics = train_reward_model(args.sft, pairs, args.out, cfg)
    if is_main_process():  # under `accelerate launch` every process returns the same metrics
        write_json(metrics, args.metrics)


if __name__ == "__main__":
    sys.exit(cli.run(main))
