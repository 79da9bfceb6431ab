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
    p.add_argument("--docs", type=Path, default=None, help="per-document results folder, <lang>/<model>/<bench>.jsonl")
    p.add_argument(
        "--paper", type=Path, default=None, help="the paper's published numbers (data/paper/okapi_tables.csv)"
    )
    args = p.parse_args(argv)
    params = load_params(args.params)
    cfg = params.report
    if cfg.compare_paper and args.paper is None:
        raise ConfigError(
            "report.compare_paper is true but no --paper file was given; pass data/paper/okapi_tables.csv"
        )

    from okapi.paper_tables import load_paper_tables, paper_table
    from okapi.report import benchmarks_in, build_report, load_doc_results, load_results

    paths = [args.results / f"{lang}.json" for lang in params.languages]
    missing = [str(x) for x in paths if not x.is_file()]
    if missing:
        raise ConfigError(f"no evaluation results for {', '.join(missing)}; run the evaluate stages first")
    results = load_results(paths)
    docs = load_doc_results(args.docs, params.languages) if args.docs is not None else None
    papers = None
    if cfg.compare_paper:
        tables = load_paper_tables(args.paper)
        papers = {b: paper_table(tables, cfg.paper_model, b) for b in benchmarks_in(results)}
    build_report(results, args.out, args.summary, cfg.models, metric=cfg.metric, docs=docs, papers=papers)


if __name__ == "__main__":
    sys.exit(cli.run(main))
