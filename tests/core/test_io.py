"""okapi.io: writes are atomic (a failed write leaves the old file or none), readers check the contract and name
the file, record and field that break it."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from okapi.io import (
    DataError,
    atomic_dir,
    atomic_path,
    ensure_file,
    read_jsonl,
    read_rows,
    write_json,
    write_jsonl,
    write_parquet,
)
from okapi.schemas import PAIRS, PROMPTS

ROW = {"id": "a", "lang": "vi", "instruction": "Xin chào", "input": "", "output": "Chào bạn"}


def test_parquet_round_trip_casts_to_the_schema(tmp_path):
    path = tmp_path / "p.parquet"
    write_parquet([ROW, {**ROW, "id": "b", "extra": 1}], path, PROMPTS)  # unknown keys are dropped by the cast
    assert read_rows(path, PROMPTS) == [ROW, {**ROW, "id": "b"}]


def test_a_long_list_is_written_in_row_groups_and_a_short_one_as_before(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    import okapi.io as io

    rows = [{**ROW, "id": f"r{i}", "instruction": "x" * i} for i in range(20)]
    io.write_parquet(rows, tmp_path / "one.parquet", PROMPTS)
    pq.write_table(pa.Table.from_pylist(rows, schema=PROMPTS), tmp_path / "plain.parquet")
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "plain.parquet").read_bytes()
    monkeypatch.setattr(io, "_WRITE_ROWS", 6)
    io.write_parquet(rows, tmp_path / "groups.parquet", PROMPTS)
    assert pq.ParquetFile(tmp_path / "groups.parquet").num_row_groups == 4
    assert read_rows(tmp_path / "groups.parquet", PROMPTS) == rows


def test_reading_some_columns_reads_and_checks_only_those(tmp_path):
    path = tmp_path / "p.parquet"
    write_parquet([ROW], path, PROMPTS)
    assert read_rows(path, PROMPTS, columns=("id", "output")) == [{"id": "a", "output": "Chào bạn"}]
    # A field the caller does not read may be missing; one it reads may not.
    assert read_rows(path, PAIRS, columns=("id", "instruction")) == [{"id": "a", "instruction": "Xin chào"}]
    with pytest.raises(DataError, match=r"p\.parquet: missing field 'chosen'"):
        read_rows(path, PAIRS, columns=("id", "chosen"))


def test_readers_name_what_breaks_the_contract(tmp_path):
    path = tmp_path / "p.parquet"
    write_parquet([ROW], path, PROMPTS)
    with pytest.raises(DataError, match=r"p\.parquet: missing field 'chosen'"):
        read_rows(path, PAIRS)
    wrong = pa.schema([(f.name, pa.int64() if f.name == "output" else f.type) for f in PROMPTS])
    write_parquet([{**ROW, "output": 3}], tmp_path / "w.parquet", wrong)
    with pytest.raises(DataError, match=r"field 'output' has type int64, expected string"):
        read_rows(tmp_path / "w.parquet", PROMPTS)
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="not a readable Parquet file"):
        read_rows(tmp_path / "bad.parquet", PROMPTS)
    with pytest.raises(DataError, match="file not found"):
        read_rows(tmp_path / "none.parquet", PROMPTS)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "m.json"
    write_json({"v": 1}, path)
    with pytest.raises(TypeError):
        write_json({"v": object()}, path)  # not JSON-serialisable: fails half way
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "new.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_atomic_dir_replaces_a_folder_only_when_complete(tmp_path):
    out = tmp_path / "model"
    with atomic_dir(out) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "weights").write_text("v2 half")
        raise RuntimeError("killed while saving")
    assert (out / "weights").read_text() == "v1"
    with atomic_dir(out) as tmp:
        (tmp / "other").write_text("v3")
    assert sorted(p.name for p in out.iterdir()) == ["other"]  # the old content is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_jsonl_and_json_lists_with_required_fields(tmp_path):
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    write_jsonl(rows, tmp_path / "r.jsonl")
    assert read_jsonl(tmp_path / "r.jsonl", required=("a",)) == rows
    (tmp_path / "l.json").write_text(json.dumps(rows))
    assert read_jsonl(tmp_path / "l.json") == rows
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{"b": 2}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl, record 2: missing field 'a'"):
        read_jsonl(tmp_path / "bad.jsonl", required=("a",))
    (tmp_path / "broken.jsonl").write_text('{"a": 1}\n{oops\n')
    with pytest.raises(DataError, match=r"broken\.jsonl, line 2: not valid JSON"):
        read_jsonl(tmp_path / "broken.jsonl")


def test_ensure_file_creates_once_and_never_truncates(tmp_path):
    path = tmp_path / "cache.jsonl"
    ensure_file(path)
    assert path.read_text() == ""
    path.write_text("kept\n")
    ensure_file(path)
    assert path.read_text() == "kept\n"
