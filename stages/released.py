"""Stage `released@<lang>`: Okapi's released files (fetched with `python -m okapi.released fetch`) -> Parquet.

With released.use: false (the default) it writes only a manifest saying so, and the pipeline generates,
translates and ranks with the teacher; with true, translate@<lang> and rank@<lang> pass these files on instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

from okapi import cli
from okapi.io import write_json
from okapi.params import load_params


def main(argv: list[str] | None = None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--lang", required=True)
    p.add_argument("--src", required=True, type=Path, help="data/released (the dvc import-url targets)")
    p.add_argument("--out", required=True, type=Path, help="folder for the converted Parquet files")
    p.add_argument("--metrics", required=True, type=Path)
    args = p.parse_args(argv)

    from okapi.io import atomic_dir
    from okapi.released import convert_language, released_config

    cfg = released_config(load_params(args.params, lang=args.lang, sections=("released",)))
    with atomic_dir(args.out) as tmp:
        if cfg.use:
            metrics = convert_language(args.src, args.lang, tmp, cfg)
        else:
            metrics = {"use": False, "lang": args.lang}
            write_json(metrics, tmp / "manifest.json")
    write_json(metrics, args.metrics)


if __name__ == "__main__":
    sys.exit(cli.run(main))
