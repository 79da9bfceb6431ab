"""The paper's published numbers (Lai et al., 2023, Tables 3-8), read from ``data/paper/okapi_tables.csv``.

Input: the CSV described in ``data/paper/README.md`` (columns ``table, paper_model, benchmark, row, base, bloomz,
sft, rlhf``; ``row`` is a Table 1 language code or one of :data:`AVERAGE_ROWS`; values in percent).
Output: one :class:`PaperTable` per (paper model, benchmark), which the report puts beside our numbers.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

from okapi.io import DataError
from okapi.languages import TABLE_1, TARGET_LANGUAGES

PAPER_MODELS = ("bloom-7b", "llama-7b")
SYSTEMS = ("base", "bloomz", "sft", "rlhf")  # the paper's columns: BLOOM/LLaMA, BLOOMZ, SFT, RLHF
AVERAGE_ROWS = ("ave_high", "ave_medium", "ave_low", "average")
HEADER = ["table", "paper_model", "benchmark", "row", *SYSTEMS]
# Which table of the paper holds which (base model, benchmark).
TABLE_NUMBERS = {
    ("bloom-7b", "arc"): 3,
    ("bloom-7b", "hellaswag"): 4,
    ("bloom-7b", "mmlu"): 5,
    ("llama-7b", "arc"): 6,
    ("llama-7b", "hellaswag"): 7,
    ("llama-7b", "mmlu"): 8,
}
PAPER_MODEL_NAMES = {"bloom-7b": "BLOOM-7B", "llama-7b": "LLaMA-7B"}


@dataclass
class PaperTable:
    table: int
    paper_model: str
    benchmark: str
    # row (language code or an AVERAGE_ROWS key) -> system -> percent; a system the table lacks is absent.
    rows: dict[str, dict[str, float]] = field(default_factory=dict)

    def value(self, row: str, system: str) -> float | None:
        return self.rows.get(row, {}).get(system)

    def systems(self) -> list[str]:
        return [s for s in SYSTEMS if any(s in values for values in self.rows.values())]

    def languages(self) -> list[str]:
        return [code for code in TARGET_LANGUAGES if code in self.rows]


def _number(text: str, where: str) -> float | None:
    if text.strip() == "":
        return None
    try:
        value = float(text)
    except ValueError as err:
        raise DataError(f"{where} = {text!r} is not a number; expected a percentage between 0 and 100") from err
    if not math.isfinite(value) or not 0.0 <= value <= 100.0:
        raise DataError(f"{where} = {text!r} is out of range; expected a percentage between 0 and 100")
    return value


def load_paper_tables(path: str | Path) -> dict[tuple[str, str], PaperTable]:
    """{(paper_model, benchmark): PaperTable} from the published-numbers CSV, every field checked."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: the paper's published numbers file was not found (data/paper/okapi_tables.csv)")
    with p.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header != HEADER:
            raise DataError(f"{p}: header {header!r} is invalid; expected {','.join(HEADER)}")
        tables: dict[tuple[str, str], PaperTable] = {}
        for lineno, record in enumerate(reader, start=2):
            where = f"{p}, line {lineno}"
            if len(record) != len(HEADER):
                raise DataError(f"{where}: {len(record)} fields; expected {len(HEADER)} ({','.join(HEADER)})")
            table, model, benchmark, row = record[:4]
            key = (model, benchmark)
            if key not in TABLE_NUMBERS:
                raise DataError(
                    f"{where}: paper_model/benchmark {model!r}/{benchmark!r} is invalid; allowed paper models "
                    f"{', '.join(PAPER_MODELS)} with benchmarks arc, hellaswag, mmlu"
                )
            if table != str(TABLE_NUMBERS[key]):
                raise DataError(
                    f"{where}: table {table!r} is invalid for {model} {benchmark}; the paper's is "
                    f"Table {TABLE_NUMBERS[key]}"
                )
            if row not in AVERAGE_ROWS and (row not in TABLE_1 or row not in TARGET_LANGUAGES):
                raise DataError(
                    f"{where}: row {row!r} is invalid; expected a Table 1 language code or one of "
                    + ", ".join(AVERAGE_ROWS)
                )
            entry = tables.setdefault(key, PaperTable(TABLE_NUMBERS[key], model, benchmark))
            if row in entry.rows:
                raise DataError(f"{where}: row {row!r} of Table {table} appears twice")
            values = {s: _number(text, f"{where}, column {s}") for s, text in zip(SYSTEMS, record[4:], strict=True)}
            entry.rows[row] = {s: v for s, v in values.items() if v is not None}
    return tables


def paper_table(tables: dict[tuple[str, str], PaperTable], paper_model: str, benchmark: str) -> PaperTable:
    key = (paper_model, benchmark)
    if key not in tables:
        raise DataError(
            f"the paper's numbers for {paper_model} {benchmark} (Table {TABLE_NUMBERS.get(key)}) are missing"
        )
    return tables[key]
