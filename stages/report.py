"""Stage `report`: the paper's Tables 3-8 layout (languages grouped H/M/L, models as columns), plots, summary."""

from __future__ import annotations

import sys
from pathlib import Path

from okapi import cli
from okapi.config import ConfigError
from okapi.params import load_params


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--results", required=True, type=Path, help="folder of per-language evaluation JSON")
    p.add_argument("--out", required=True, type=Path, help="reports folder")
    p.add_argument("--summary", required=True, type=Path)
    args = p.parse_args(argv)
    params = load_params(args.params)
    report = params.report

    from okapi.report import build_report, load_results

    paths = [args.results / f"{lang}.json" for lang in params.languages]
    missing = [str(x) for x in paths if not x.is_file()]
    if missing:
        raise ConfigError(f"no evaluation results for {', '.join(missing)}; run the evaluate stages first")
    results = load_results(paths)
    build_report(results, args.out, args.summary, report.models, metric=report.metric)


if __name__ == "__main__":
    sys.exit(cli.run(main))
