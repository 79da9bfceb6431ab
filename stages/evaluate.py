"""Stage `evaluate@<lang>`: lm-evaluation-harness on the translated ARC / HellaSwag / MMLU for each model."""

from __future__ import annotations

import sys
from pathlib import Path

from okapi import cli
from okapi.config import ConfigError
from okapi.io import write_json
from okapi.params import load_params


def _model_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise ConfigError(f"--model {text!r} is invalid; expected NAME=MODEL_DIR, e.g. base=models/base")
    return name, Path(path)


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--lang", required=True)
    p.add_argument("--model", action="append", required=True, help="NAME=MODEL_DIR (repeatable)")
    p.add_argument("--data", required=True, type=Path, help="folder with <benchmark>.parquet")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--samples", type=Path, help="folder for per-document results, <model>_<benchmark>.jsonl")
    args = p.parse_args(argv)
    cfg = load_params(args.params, lang=args.lang, sections=("evaluate",)).section("evaluate")
    models = dict(_model_arg(m) for m in args.model)
    for name, spec in cfg.reference_models.items():
        if name in models:
            raise ConfigError(f"evaluate.reference_models.{name} clashes with the pipeline's model {name!r}")
        models[name] = Path(spec)

    from okapi.evaluate import evaluate_models

    results = evaluate_models(models, args.lang, args.data, cfg, samples_dir=args.samples)
    write_json({"lang": args.lang, **results}, args.out)


if __name__ == "__main__":
    sys.exit(cli.run(main))
