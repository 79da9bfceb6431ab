"""Stored ROUGE-L filter decisions for the Self-Instruct rounds, so a rerun from the teacher cache skips the filter.

At paper scale the generate stage spends most of its time in the exact ROUGE-L filter (okapi.rouge_filter), not in
the teacher: a rerun whose answers all come from the teacher cache (the resume after a crash, a forced rerun) would
recompute every decision. The filter is deterministic, so each round's decisions are a function of

* the filter's state before the round: its settings (threshold, top_k, whether the average is computed, the
  rouge-score tokenizer) and every text in the pool, in order, which is itself a function of the initial pool and
  every earlier round's candidates; and
* the round's candidate instructions, in order (the tasks that passed the heuristic filters).

A chain hash captures exactly that: h_0 = H(settings, initial pool texts), h_r = H(h_{r-1}, round r's candidate
texts). The record stored under h_r holds round r's decisions in candidate order: for a kept candidate its max F,
its average F and its top-k most similar pool items as *indices* into the pool (the pool only grows by appending, so
an index names the same text on every replay); for a rejected one its max F. Replaying a record adds the kept texts
to the filter with ``RougeFilter.add`` (an index update, no query) and returns the same values the query gave, so
rows and metrics are the same bit for bit. A changed threshold, pool or answer changes the chain from that point
on, and no stale record can be found under the new hashes.

A record may cover only the first candidates of its round: the run that wrote it reached
generate.num_instructions mid-round. A rerun that needs more (a larger target) computes the rest and rewrites the
record; rounds after it never depend on a partial one, because a run stops at the round that reaches its target.

Records go to the teacher cache file (``ResponseCache.put_derived``), one committed row per finished round: a run
killed mid-way keeps every finished round, and the file is already the stage's persistent DVC output.
"""

from __future__ import annotations

import hashlib
import json
import logging
import zlib
from importlib.metadata import version
from typing import Any, Protocol

from okapi.rouge_filter import RougeFilter

log = logging.getLogger(__name__)

# Bump when the filter's results could change for the same inputs (tokenizer, scoring, tie order, record layout).
FORMAT = 1
_KEY_PREFIX = "generate.rouge_round/"


class DerivedStore(Protocol):
    """Where records live: okapi.cache.ResponseCache (its ``derived`` table)."""

    def get_derived(self, key: str) -> bytes | None: ...

    def put_derived(self, key: str, value: bytes) -> None: ...


Decision = tuple[bool, float, list[str], float | None]


def _text_line(text: str) -> bytes:
    # JSON escaping makes the encoding of a sequence of texts unambiguous (no text contains a bare newline).
    return json.dumps(text).encode("ascii") + b"\n"


class FilterReplay:
    """Runs candidates through a RougeFilter round by round, replaying stored rounds and storing computed ones.

    Use: ``begin_round(candidates)``, then ``consider(text)`` for candidates in that order (any prefix), then
    ``end_round()``. ``consider`` returns what ``RougeFilter.consider`` would: (kept, max F, the most similar pool
    texts, average F or None); for a rejected candidate only kept and max F are kept in a record.
    """

    def __init__(self, rouge: RougeFilter, store: DerivedStore | None, *, with_avg: bool) -> None:
        self.rouge = rouge
        self.store = store
        self.with_avg = with_avg
        h = hashlib.sha256()
        settings = [FORMAT, version("rouge-score"), repr(rouge.threshold), rouge.top_k, with_avg, len(rouge)]
        h.update(json.dumps(settings).encode("utf-8") + b"\n")
        for text in rouge.texts:
            h.update(_text_line(text))
        self._chain = h.hexdigest()
        self.replayed = 0
        self.computed = 0
        self._key: str | None = None
        self._candidates: list[str] = []
        self._entries: list[list[Any]] = []
        self._stored = 0
        self._pos = 0

    # -- one round ----------------------------------------------------------------------------------------------
    def begin_round(self, candidates: list[str]) -> None:
        h = hashlib.sha256(self._chain.encode("ascii") + b"\n")
        for text in candidates:
            h.update(_text_line(text))
        self._key = h.hexdigest()
        self._candidates = candidates
        self._entries = self._load(self._key)
        self._stored = len(self._entries)
        self._pos = 0

    def consider(self, text: str) -> Decision:
        if self._key is None or self._pos >= len(self._candidates) or self._candidates[self._pos] != text:
            raise RuntimeError(f"candidate {self._pos} of the round is not the one given to begin_round: {text!r}")
        if self._pos < self._stored:
            decision = self._apply(self._entries[self._pos], text)
            self.replayed += 1
        else:
            kept, best, top, avg = self.rouge.decide(text, with_avg=self.with_avg)
            self._entries.append([best, avg, [i for i, _ in top]] if kept else [best])
            decision = (kept, best, [self.rouge.texts[i] for i, _ in top], avg)
            self.computed += 1
        self._pos += 1
        return decision

    def end_round(self) -> None:
        if self._key is None:
            raise RuntimeError("end_round without begin_round")
        if self.store is not None and len(self._entries) > self._stored:
            self.store.put_derived(_KEY_PREFIX + self._key, _encode(self._entries))
        # The next round's state. Exact only when every candidate was considered; otherwise the run stops here.
        self._chain = self._key
        self._key = None

    # -- records ------------------------------------------------------------------------------------------------
    def _apply(self, entry: list[Any], text: str) -> Decision:
        if len(entry) == 1:
            return False, entry[0], [], None
        best, avg, indices = entry
        self.rouge.add(text)
        return True, best, [self.rouge.texts[i] for i in indices], avg

    def _load(self, key: str) -> list[list[Any]]:
        raw = self.store.get_derived(_KEY_PREFIX + key) if self.store is not None else None
        if raw is None:
            return []
        try:
            entries = json.loads(zlib.decompress(raw))
        except (zlib.error, ValueError) as err:
            log.warning("stored ROUGE-L round %s is unreadable (%s); computing it again", key[:12], err)
            return []
        if not isinstance(entries, list) or len(entries) > len(self._candidates):
            log.warning("stored ROUGE-L round %s does not fit its candidates; computing it again", key[:12])
            return []
        return entries


def _encode(entries: list[list[Any]]) -> bytes:
    # json writes floats with repr, which reads back to the same double.
    return zlib.compress(json.dumps(entries, separators=(",", ":")).encode("utf-8"), 6)
