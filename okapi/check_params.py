"""A dry check of a params profile: every section of every language validates, and the evaluation protocol's
shot splits will exist, with no teacher, no model and no hub.

    python -m okapi.check_params --params configs/paper/params.yaml [--eval-sources data/eval_sources]

Checks, per language (its overrides applied): every section's config (okapi.params); which shot split each
benchmark needs under evaluate.protocol and evaluate.num_fewshot, and where it will come from: Okapi's release
(released.use with the eval part: ARC train and MMLU dev; HellaSwag has none) or the translate stage's English
sources (translate.eval_sources.<benchmark>_<split> or <eval-sources>/<benchmark>_<split>.jsonl). A missing source
is reported as one sentence naming the key or file to provide. ``dvc status`` then runs on the profile as is;
``dvc repro --dry`` additionally needs the upstream outputs in the workspace (DVC hashes the deps of the stages it
lists), in any profile.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from okapi.config import ConfigError
from okapi.params import load_params
from okapi.protocols import describe, shot_splits

RELEASED_SHOT_SPLITS = {"arc": "train", "mmlu": "dev"}  # okapi.released.EVAL_FILES' few-shot files


def check_profile(params_path: Path, eval_sources: Path) -> list[str]:
    """Validate ``params_path`` and its evaluation shot sources; returns one summary line per language."""
    from okapi.eval_sources import check_sources

    params = load_params(params_path)
    lines = []
    for lang in params.languages:
        p = load_params(params_path, lang=lang)
        p.validate_all()
        ecfg, tcfg, rel = p.section("evaluate"), p.section("translate"), p.section("released")
        needed = shot_splits(ecfg.protocol, ecfg.benchmarks, ecfg.num_fewshot)
        if rel.provides("eval"):
            for bench, split in needed.items():
                if RELEASED_SHOT_SPLITS.get(bench) != split:
                    raise ConfigError(
                        f"languages.{lang}: evaluate.protocol = {ecfg.protocol} gives {bench} shots from its {split} "
                        f"split, which Okapi's release does not have; set evaluate.num_fewshot.{bench}: 0"
                    )
            origin = "release"
        else:
            try:
                check_sources(eval_sources, tcfg.eval_sources, [f"{b}_{s}" for b, s in needed.items()])
            except ConfigError as err:
                raise ConfigError(f"languages.{lang}: {err}") from err
            origin = "teacher"
        shots = {b: ecfg.shots(b) for b in ecfg.benchmarks}
        splits = ", ".join(f"{b}_{s}" for b, s in needed.items()) or "none"
        lines.append(f"{lang}: evaluate {describe(ecfg.protocol, shots)}; shot splits from the {origin}: {splits}")
    return lines


def _main(argv: list[str] | None) -> None:
    p = argparse.ArgumentParser(prog="python -m okapi.check_params", description=__doc__.split("\n\n")[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--eval-sources", type=Path, default=Path("data/eval_sources"), help="English <benchmark>.jsonl")
    args = p.parse_args(argv)
    lines = check_profile(args.params, args.eval_sources)
    sys.stdout.write("\n".join(lines) + f"\n{args.params}: OK ({len(lines)} languages)\n")


def main(argv: list[str] | None = None) -> int:
    from okapi.cli import run

    return run(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
