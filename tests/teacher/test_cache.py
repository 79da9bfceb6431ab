"""The SQLite teacher cache: answers survive reopening, and old JSON Lines caches are migrated, not lost."""

from __future__ import annotations

import json

from okapi.cache import Reply, ResponseCache, read_cache


def _jsonl(path, n, torn=False):
    lines = [
        json.dumps({"key": f"k{i}", "text": f"t{i}", "prompt_tokens": i, "completion_tokens": 1}) for i in range(n)
    ]
    path.write_text("\n".join(lines) + "\n" + ('{"key": "k9", "te' if torn else ""), encoding="utf-8")


def test_answers_persist_across_reopen_with_their_token_counts(tmp_path):
    c = ResponseCache(tmp_path / "c.sqlite")
    c.put("a", Reply("xin chào", 7, 3))
    c.put("b", Reply("hola", 5, 2))
    c.close()
    again = ResponseCache(tmp_path / "c.sqlite")
    assert again.get("a") == Reply("xin chào", 7, 3) and again.get("zz") is None
    assert again.totals() == (2, 12, 5) and len(again) == 2
    again.close()
    # Closing folds the write-ahead log into the one file DVC tracks.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.sqlite"]


def test_a_legacy_jsonl_cache_passed_as_the_path_is_migrated_in_place(tmp_path):
    path = tmp_path / "gen.jsonl"
    _jsonl(path, 3, torn=True)
    assert set(read_cache(path)) == {"k0", "k1", "k2"}  # readable before migration too
    c = ResponseCache(path)
    assert c.get("k2") == Reply("t2", 2, 1) and c.totals() == (3, 3, 3)
    c.close()
    assert path.read_bytes().startswith(b"SQLite format 3")


def test_the_sibling_jsonl_of_a_new_sqlite_cache_is_migrated(tmp_path):
    _jsonl(tmp_path / "translate-vi.jsonl", 4)
    (tmp_path / "translate-vi.sqlite").write_bytes(b"")  # what ensure_file leaves: empty is "no cache yet"
    c = ResponseCache(tmp_path / "translate-vi.sqlite")
    assert len(c) == 4 and c.get("k3") == Reply("t3", 3, 1)
    c.close()
    assert (tmp_path / "translate-vi.jsonl").exists()  # the old file is left for the user to delete
    # A cache that already has answers is not overwritten by the old file again.
    c = ResponseCache(tmp_path / "translate-vi.sqlite")
    c.put("new", Reply("x", 1, 1))
    c.close()
    assert len(ResponseCache(tmp_path / "translate-vi.sqlite")) == 5


def test_the_file_alone_holds_every_answer_after_close_even_with_a_reader_open(tmp_path):
    import shutil
    import sqlite3

    path = tmp_path / "c.sqlite"
    c = ResponseCache(path)
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True)  # e.g. okapi.estimate looking at the cache
    for i in range(50):
        c.put(f"k{i}", Reply("x" * 100, 1, 1))
    assert reader.execute("SELECT COUNT(*) FROM answers").fetchone() == (50,)
    c.close()
    # What DVC pushes is the .sqlite file alone, without its -wal: it must hold all 50 answers.
    alone = tmp_path / "pushed" / "c.sqlite"
    alone.parent.mkdir()
    shutil.copy(path, alone)
    reader.close()
    assert len(read_cache(alone)) == 50


def test_derived_values_persist_and_only_a_stage_that_stores_one_gets_the_table(tmp_path):
    plain = ResponseCache(tmp_path / "plain.sqlite")
    plain.put("a", Reply("x", 1, 1))
    assert plain.get_derived("r") is None
    plain.close()
    c = ResponseCache(tmp_path / "c.sqlite")
    c.put_derived("r", b"\x00decisions")
    c.put_derived("r", b"replaced")
    c.close()
    again = ResponseCache(tmp_path / "c.sqlite")
    assert again.get_derived("r") == b"replaced" and again.get_derived("zz") is None
    assert len(again) == 0 and read_cache(tmp_path / "c.sqlite") == {}  # answers' readers do not see them
    again.close()
    tables = {p.name: _tables(p) for p in (tmp_path / "plain.sqlite", tmp_path / "c.sqlite")}
    assert tables == {"plain.sqlite": ["answers"], "c.sqlite": ["answers", "derived"]}


def _tables(path):
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    finally:
        conn.close()
