"""Stage `base`: the configured base model as a plain HF folder (embedded default: SmolLM2-135M from GGUF)."""

from __future__ import annotations

import sys
from pathlib import Path

from okapi import cli
from okapi.io import write_json
from okapi.params import load_params


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--metrics", required=True, type=Path)
    args = p.parse_args(argv)
    params = load_params(args.params)

    from okapi.modeling import load_base_model

    metrics = load_base_model(params.base.model, args.out)
    write_json({"base_model": params.base.model, **metrics}, args.metrics)


if __name__ == "__main__":
    sys.exit(cli.run(main))
