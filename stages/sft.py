"""Stages `sft@<lang>` (Alpaca-part split, the RLHF track) and `sft_full@<lang>` (all data, the SFT column)."""

from __future__ import annotations

import sys
from pathlib import Path

from okapi import cli
from okapi.io import read_rows, write_json
from okapi.params import load_params
from okapi.schemas import PROMPTS


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--lang", required=True)
    p.add_argument("--section", choices=["sft", "sft_full"], default="sft", help="params section to use")
    p.add_argument("--model", required=True, type=Path, help="base model folder")
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--metrics", required=True, type=Path)
    args = p.parse_args(argv)
    params = load_params(args.params, lang=args.lang, sections=(args.section,))
    cfg = params.section(args.section)
    rows = read_rows(args.data, PROMPTS)

    from okapi.modeling import is_main_process
    from okapi.sft import train_sft

    metrics = train_sft(args.model, rows, args.out, cfg)
    if is_main_process():  # under `accelerate launch` every process returns the same metrics
        write_json(metrics, args.metrics)


if __name__ == "__main__":
    sys.exit(cli.run(main))
