"""The teacher's response cache: one SQLite file per teacher stage (standard library, indexed by the cache key).

Why SQLite and not the JSON Lines file it replaces: at the paper's scale a stage's cache holds 10^5 answers
(~180K translations per language). A JSON Lines cache had to be read whole into memory at start-up; SQLite looks a
key up through its primary-key index, so opening is instant and memory does not grow with the cache
(benchmarks/paper_scale.py measures both).

Guarantees (the same as before): every answer is committed as soon as it arrives (one transaction per answer, in
WAL mode), so a SIGKILL loses at most the answer being written and never corrupts what is there; the WAL is folded
back into the one file when the cache is closed (an explicit checkpoint), so DVC tracks, pushes and pulls a single file. ``synchronous =
NORMAL`` survives a killed process (what a rerun must resume from); only a power cut may lose the last answers,
which are then simply bought again.

Besides the answers, a stage may keep results it *derived* from them (``derived`` table, ``get_derived`` /
``put_derived``): the generate stage stores its ROUGE-L filter's decisions per round there (okapi.filter_replay),
so that a rerun whose answers all come from this cache does not recompute them. They live in this file rather
than in a sidecar because they are only valid together with these answers: one file travels through DVC (push,
pull, persist) as one unit, and a derived record is committed under the same WAL guarantees as an answer. The
table is created on the first ``put_derived``, so caches of stages that never derive anything keep their bytes,
and readers that only know ``answers`` (read_cache, okapi.estimate) are unaffected.

An old JSON Lines cache is migrated on open, atomically: either ``path`` itself (a JSON Lines file passed as the
cache) or the sibling ``<path stem>.jsonl`` of a new ``.sqlite`` path (the file dvc.yaml named before).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from okapi.io import atomic_path

log = logging.getLogger(__name__)

_MAGIC = b"SQLite format 3\x00"
# A rowid table: answers are large rows, which a WITHOUT ROWID table stores in its key B-tree at twice the size
# on disk (measured by benchmarks/paper_scale.py: 15.0 vs 7.2 MB for 8.4K ranking answers).
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
    "prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL)"
)

_DERIVED_SCHEMA = "CREATE TABLE IF NOT EXISTS derived (key TEXT PRIMARY KEY, value BLOB NOT NULL)"


@dataclass
class Reply:
    text: str
    prompt_tokens: int
    completion_tokens: int


def _is_sqlite(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(len(_MAGIC)) == _MAGIC


def _read_jsonl(path: Path) -> Iterator[tuple[str, Reply]]:
    with path.open("r", encoding="utf-8") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
                yield rec["key"], Reply(rec["text"], rec.get("prompt_tokens", 0), rec.get("completion_tokens", 0))
            except (json.JSONDecodeError, KeyError, TypeError):
                log.warning("ignoring a torn or malformed line in %s", path)


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level None: every INSERT commits on its own, so each answer is on disk as soon as it arrives.
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(_SCHEMA)
    return conn


class ResponseCache:
    """Answers by cache key, in one SQLite file; see the module docstring for the guarantees."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._migrate()
        try:
            self._conn = _connect(self.path)
        except sqlite3.DatabaseError as err:
            raise sqlite3.DatabaseError(f"{self.path} is not a teacher cache (SQLite: {err})") from err
        self._has_derived = (
            self._conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'derived'").fetchone()
            is not None
        )

    def _migrate(self) -> None:
        legacy: Path | None = None
        if self.path.is_file() and self.path.stat().st_size > 0 and not _is_sqlite(self.path):
            legacy = self.path
        elif not self.path.exists() or self.path.stat().st_size == 0:
            sibling = self.path.with_suffix(".jsonl")
            if sibling != self.path and sibling.is_file() and sibling.stat().st_size > 0:
                legacy = sibling
        if legacy is None:
            return
        with atomic_path(self.path) as tmp:
            tmp.unlink()  # sqlite creates its own file; an empty placeholder is fine but a fresh one is clearer
            conn = _connect(tmp)
            n = 0
            with conn:
                conn.execute("BEGIN")
                for key, reply in _read_jsonl(legacy):
                    conn.execute(
                        "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)",
                        (key, reply.text, reply.prompt_tokens, reply.completion_tokens),
                    )
                    n += 1
            conn.close()  # folds the WAL into the file before it is renamed into place
        log.info("migrated %d cached answers from the JSON Lines cache %s to %s", n, legacy, self.path)

    def get(self, key: str) -> Reply | None:
        row = self._conn.execute(
            "SELECT text, prompt_tokens, completion_tokens FROM answers WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else Reply(*row)

    def put(self, key: str, reply: Reply) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)",
            (key, reply.text, reply.prompt_tokens, reply.completion_tokens),
        )

    def get_derived(self, key: str) -> bytes | None:
        """A value a stage derived from the answers and stored with ``put_derived``; None when absent."""
        if not self._has_derived:
            return None
        row = self._conn.execute("SELECT value FROM derived WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def put_derived(self, key: str, value: bytes) -> None:
        """Store (or replace) a derived value; committed at once, like an answer."""
        if not self._has_derived:
            self._conn.execute(_DERIVED_SCHEMA)
            self._has_derived = True
        self._conn.execute("INSERT OR REPLACE INTO derived VALUES (?, ?)", (key, value))

    def totals(self) -> tuple[int, int, int]:
        """(answers, prompt tokens, completion tokens) over the whole cache: what it has cost so far."""
        n, p, c = self._conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0) FROM answers"
        ).fetchone()
        return int(n), int(p), int(c)

    def __len__(self) -> int:
        return self.totals()[0]

    def items(self) -> Iterator[tuple[str, Reply]]:
        for key, text, p, c in self._conn.execute("SELECT key, text, prompt_tokens, completion_tokens FROM answers"):
            yield key, Reply(text, p, c)

    def close(self) -> None:
        # Fold the WAL into the file now: the last connection to close does this itself, but a reader that is
        # still open (a tool, `okapi.estimate`) would leave answers only in the -wal file, which DVC does not track.
        busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.warning(
                "%s: a reader kept the write-ahead log from being folded in; it is, on the next open", self.path
            )
        self._conn.close()


def read_cache(path: str | os.PathLike[str]) -> dict[str, Reply]:
    """Every answer of a cache file (SQLite, or a legacy JSON Lines file read in place), for tools and tests."""
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return {}
    if not _is_sqlite(p):
        return dict(_read_jsonl(p))
    conn = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT key, text, prompt_tokens, completion_tokens FROM answers").fetchall()
    except sqlite3.OperationalError:  # a new file with no table yet
        rows = []
    finally:
        conn.close()
    return {k: Reply(t, pt, ct) for k, t, pt, ct in rows}
