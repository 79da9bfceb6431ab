"""Stage `ppo@<lang>`: PPO from the SFT policy against the reward model, top 4 layers trained (paper §3)."""

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
    p.add_argument("--sft", required=True, type=Path)
    p.add_argument("--rm", required=True, type=Path)
    p.add_argument("--prompts", required=True, type=Path, help="PPO-prompt split")
    p.add_argument(
        "--heldout",
        type=Path,
        help="prompts for the SFT-vs-PPO reward comparison; leave out with ppo.heldout_fraction > 0 (a PPO slice)",
    )
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--metrics", required=True, type=Path)
    p.add_argument("--history", type=Path, help="per-step history as one JSON list (optional)")
    p.add_argument("--live-dir", type=Path, help="DVCLive folder for per-step curves (plots/metrics/*.tsv)")
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        help="resumable checkpoint folder (a persist output); without it nothing is saved or resumed",
    )
    args = p.parse_args(argv)
    cfg = load_params(args.params, lang=args.lang, sections=("ppo",)).section("ppo")
    prompts = read_rows(args.prompts, PROMPTS)
    heldout = read_rows(args.heldout, PROMPTS) if args.heldout else None

    from okapi.ppo import train_ppo

    metrics, history = train_ppo(
        args.sft, args.rm, prompts, heldout, args.out, cfg, checkpoint_dir=args.checkpoint_dir, live_dir=args.live_dir
    )
    if args.history:
        write_json(history, args.history)
    write_json(metrics, args.metrics)


if __name__ == "__main__":
    sys.exit(cli.run(main))
