"""Atomic, schema-checked file IO shared by all stages.

Every write goes to a temporary file in the destination folder and is renamed into place, so a stage that is
killed leaves either the old output or none, never half a file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


class DataError(ValueError):
    """A data file that does not meet its contract; the message names file, record and field."""


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


# Rows converted to Arrow at once when writing a list of dicts. All 40K translated rows of a quarter-size
# translate@<lang> as one Arrow table added 107 MB to the stage's resident set; one row group per this many rows
# bounds that at any size. Smaller files are written exactly as before (one row group).
_WRITE_ROWS = 16384


def write_parquet(rows: list[dict[str, Any]] | pa.Table, path: str | os.PathLike[str], schema: pa.Schema) -> None:
    with atomic_path(path) as tmp:
        if isinstance(rows, pa.Table):
            pq.write_table(rows.select(schema.names).cast(schema), tmp)
        elif len(rows) <= _WRITE_ROWS:
            pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
        else:
            with pq.ParquetWriter(tmp, schema) as writer:
                for start in range(0, len(rows), _WRITE_ROWS):
                    writer.write_table(pa.Table.from_pylist(rows[start : start + _WRITE_ROWS], schema=schema))
    pa.default_memory_pool().release_unused()


def read_parquet(path: str | os.PathLike[str], schema: pa.Schema, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a Parquet file and check it has every field of ``schema`` with the right type.

    ``columns``: only these fields of ``schema`` are read and checked (a stage that needs a few columns of a wide
    file need not hold the others: 158K generated rows carry ten similar instructions each).
    """
    p = Path(path)
    if columns is not None:
        schema = pa.schema([schema.field(name) for name in columns])
    if not p.is_file():
        raise DataError(f"{p}: file not found (expected a Parquet file with fields {schema.names})")
    try:
        present = set(pq.read_schema(p).names)
        table = pq.read_table(p, columns=[name for name in schema.names if name in present])
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{p}: not a readable Parquet file ({err})") from err
    for field in schema:
        if field.name not in table.schema.names:
            raise DataError(f"{p}: missing field {field.name!r}; expected fields {schema.names}")
        actual = table.schema.field(field.name).type
        if actual != field.type and not (pa.types.is_null(actual) and field.nullable):
            raise DataError(f"{p}: field {field.name!r} has type {actual}, expected {field.type}")
    return table.select(schema.names).cast(schema)


def read_rows(
    path: str | os.PathLike[str], schema: pa.Schema, columns: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    rows = read_parquet(path, schema, columns).to_pylist()
    # The Arrow table is garbage now; Arrow's allocator keeps its pages unless asked (measured: this gives 45 MB
    # back after reading 5 columns of 40K generated rows).
    pa.default_memory_pool().release_unused()
    return rows


def write_json(obj: Any, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def write_text(text: str, path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_records(path: str | os.PathLike[str]) -> tuple[list[tuple[int, Any]], bool]:
    """(number, value) of every record of a JSON list (numbered from 1) or a JSON Lines file (numbered by line,
    blank lines skipped), and whether the file was a JSON list; unreadable JSON names the file and line."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    text = p.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        try:
            return list(enumerate(json.loads(text), start=1)), True
        except json.JSONDecodeError as err:
            raise DataError(f"{p}: not valid JSON ({err.msg} at line {err.lineno})") from err
    records: list[tuple[int, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((lineno, json.loads(line)))
        except json.JSONDecodeError as err:
            raise DataError(f"{p}, line {lineno}: not valid JSON ({err.msg})") from err
    return records, False


def read_jsonl(path: str | os.PathLike[str], required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Read JSON Lines (or a JSON list); each record must be an object with the ``required`` fields."""
    p = Path(path)
    records, _ = json_records(p)
    out = []
    for lineno, rec in records:
        if not isinstance(rec, dict):
            raise DataError(f"{p}, record {lineno}: expected a JSON object, got {type(rec).__name__}")
        for key in required:
            if key not in rec:
                raise DataError(f"{p}, record {lineno}: missing field {key!r} (required: {', '.join(required)})")
        out.append(rec)
    return out


def write_jsonl(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    with atomic_path(path) as tmp:
        with tmp.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def replace_dir(src: Path, dest: Path) -> None:
    """Move a finished folder ``src`` onto ``dest`` (replacing it); both must be on the same filesystem."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.replace(dest, old / "x")
        os.replace(src, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dest)


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary sibling folder; on success it replaces ``path`` (old content removed), else vanishes.

    A stage killed while saving a checkpoint leaves the previous checkpoint or none, never half a model.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    # mkdtemp creates 0700 folders; an output folder should be as readable as any other output.
    tmp.chmod(0o755)
    try:
        yield tmp
        replace_dir(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def ensure_file(path: str | os.PathLike[str]) -> None:
    """Create an empty ``path`` unless it exists: a stage that skips its teacher still owes DVC its cache output."""
    p = Path(path)
    if not p.exists():
        with atomic_path(p):
            pass
