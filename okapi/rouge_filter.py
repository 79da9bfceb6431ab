"""Exact, fast ROUGE-L novelty filter for Self-Instruct (Alpaca / Okapi, paper §2.1).

Alpaca keeps a generated instruction only when its ROUGE-L F-measure against every instruction already in the pool
is <= 0.7, computing ``rouge_score.rouge_scorer._score_lcs`` (target = the new instruction, prediction = the pool
instruction) against the whole pool for every candidate. That is O(pool) pure-Python LCS tables per candidate, which
dominates the cost of generating 106K instructions conditioned on a 52K pool.

This module gives the same numbers much faster, without approximation:

* Tokens come from rouge-score's own tokenizer (``DefaultTokenizer(use_stemmer=False)``, the tokenizer of
  ``RougeScorer(["rougeL"], use_stemmer=False)``), so both sides see identical token lists.
* ROUGE-L's F-measure is 2*P*R/(P+R) with P = L/|b| and R = L/|a|, i.e. exactly 2*L/(|a|+|b|) for the LCS length L.
  Since L <= the multiset overlap of the two token lists, 2*overlap/(|a|+|b|) bounds F from above. An inverted
  index (token -> pool items holding it, with counts) gives every item's overlap in a few vectorised passes; items
  sharing no token score exactly 0 and are never touched.
* Items are scored exactly in chunks of high bounds (bit-parallel LCS, vectorised over items with numpy), the first
  chunk being the items whose bound reaches the previous query's k-th best score (a stream's queries look alike, so
  this usually avoids ranking the whole pool); the search stops once the k-th best exact score beats every
  remaining bound, so the top-k list, the maximum and the keep/reject decision are the reference's, bit for bit
  (F is computed with rouge-score's own float formula), whatever the first chunk was.
* The average similarity over the whole pool (Alpaca's ``avg_similarity_score``) needs the exact LCS of every item
  that shares a token with the candidate, so it is only computed when asked (``with_avg=True``); it is then still
  vectorised, and bit-identical to ``np.mean`` over the reference scores in pool order.
"""

from __future__ import annotations

import argparse
import array
import logging
import math
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rouge_score.tokenizers import DefaultTokenizer

from okapi.io import DataError, json_records, write_jsonl

log = logging.getLogger(__name__)

_TOKENIZER = DefaultTokenizer(use_stemmer=False)
# Slack on the float upper bound: the exact F and the bound are each a few roundings away from 2L/(|a|+|b|).
_BOUND_SLACK = 1e-9
_TINY = 1e-300  # above 0: the lowest bound of an item that shares a token
_WORD = 64
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


def tokenize(text: str) -> list[str]:
    """rouge-score's ROUGE tokens (lower-cased ASCII alphanumeric runs, no stemming)."""
    return _TOKENIZER.tokenize(text)


def rouge_l_f(lcs: int, target_len: int, prediction_len: int) -> float:
    """rouge-score's F-measure for an LCS length, with its exact float operations (0 when either side is empty)."""
    if target_len == 0 or prediction_len == 0:
        return 0.0
    precision = lcs / prediction_len
    recall = lcs / target_len
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def lcs_length(a: Sequence[Any], b: Sequence[Any]) -> int:
    """LCS length by the bit-parallel algorithm (Hyyrö 2004) on Python integers; any hashable tokens."""
    if not a or not b:
        return 0
    masks: dict[Any, int] = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        u = v & masks.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


class RougeFilter:
    """A growing pool of instructions answering exact ROUGE-L queries against all of it.

    ``consider(text)`` is Alpaca's test: keep ``text`` (and add it to the pool) unless some pool instruction has a
    ROUGE-L F-measure strictly above ``threshold`` with it.
    """

    def __init__(self, threshold: float = 0.7, top_k: int = 10) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold = {threshold!r} is invalid; allowed: a number in [0, 1]")
        if top_k < 1:
            raise ValueError(f"top_k = {top_k!r} is invalid; allowed: an integer >= 1")
        self.threshold = threshold
        self.top_k = top_k
        self._texts: list[str] = []
        self._vocab: dict[str, int] = {}
        # Inverted index, one growable int32 array per token id: the pool items holding it and how often.
        self._post_items: list[array.array] = []
        self._post_counts: list[array.array] = []
        # All pool tokens concatenated (CSR style), for the vectorised exact LCS.
        self._flat = array.array("i")
        self._starts = array.array("q")
        self._lengths = array.array("i")
        self._mask_table = np.zeros((0, 1), dtype=np.uint64)
        self._guess = 0.0  # the last query's k-th best score: where the next one starts looking (_top_exact)

    def __len__(self) -> int:
        return len(self._texts)

    @property
    def texts(self) -> list[str]:
        return self._texts

    # -- building the pool --------------------------------------------------------------------------------------
    def add(self, text: str) -> int:
        """Add one instruction to the pool; returns its index."""
        index = len(self._texts)
        self._texts.append(text)
        ids = [self._token_id(tok) for tok in tokenize(text)]
        self._starts.append(len(self._flat))
        self._lengths.append(len(ids))
        self._flat.extend(ids)
        for tok_id, count in Counter(ids).items():
            self._post_items[tok_id].append(index)
            self._post_counts[tok_id].append(count)
        return index

    def add_many(self, texts: Iterable[str]) -> None:
        for text in texts:
            self.add(text)

    def _token_id(self, tok: str) -> int:
        tok_id = self._vocab.get(tok)
        if tok_id is None:
            tok_id = len(self._vocab)
            self._vocab[tok] = tok_id
            self._post_items.append(array.array("i"))
            self._post_counts.append(array.array("i"))
        return tok_id

    # -- queries ------------------------------------------------------------------------------------------------
    def max_similarity(
        self, text: str, *, top_k: int | None = None, with_avg: bool = False
    ) -> tuple[float, list[tuple[str, float]], float | None]:
        """(max F, the top_k most similar pool instructions with their F, average F over the pool or None).

        The top list is ordered by F descending, then pool order; it has min(top_k, pool size) entries (pool items
        sharing no token score 0 and fill it in pool order, as they tie). ``avg`` is None unless ``with_avg``.
        """
        best, top, avg = self.query(text, top_k=top_k, with_avg=with_avg)
        return best, [(self._texts[i], score) for i, score in top], avg

    def query(
        self, text: str, *, top_k: int | None = None, with_avg: bool = False
    ) -> tuple[float, list[tuple[int, float]], float | None]:
        """``max_similarity`` with pool indices in the top list instead of texts (what okapi.filter_replay stores)."""
        k = min(top_k or self.top_k, len(self._texts))
        if k == 0:
            return 0.0, [], (0.0 if with_avg else None)
        ids = [self._vocab.get(tok, -1) for tok in tokenize(text)]
        top: list[tuple[float, int]] = []
        overlap: np.ndarray | None = None
        scored: list[tuple[np.ndarray, np.ndarray]] = []
        if ids:
            overlap = self._overlaps(ids)
            top = self._top_exact(ids, overlap, k, scored)
        if len(top) < k:
            # The rest score exactly 0; by (score desc, index asc) the lowest indices come first.
            seen = {i for _, i in top}
            for i in range(len(self._texts)):
                if len(top) >= k:
                    break
                if i not in seen:
                    top.append((0.0, i))
        best = top[0][0]
        avg = self._average(ids, overlap, scored) if with_avg else None
        return best, [(i, score) for score, i in top], avg

    def consider(
        self, text: str, *, with_avg: bool = False
    ) -> tuple[bool, float, list[tuple[str, float]], float | None]:
        """Alpaca's decision: kept unless max F > threshold; a kept text joins the pool.

        Returns (kept, max F, the most similar pool instructions with F, average F or None).
        """
        kept, best, top, avg = self.decide(text, with_avg=with_avg)
        return kept, best, [(self._texts[i], score) for i, score in top], avg

    def decide(self, text: str, *, with_avg: bool = False) -> tuple[bool, float, list[tuple[int, float]], float | None]:
        """``consider`` with pool indices in the top list instead of texts."""
        best, top, avg = self.query(text, with_avg=with_avg)
        kept = not best > self.threshold
        if kept:
            self.add(text)
        return kept, best, top, avg

    # -- internals ----------------------------------------------------------------------------------------------
    def _overlaps(self, ids: list[int]) -> np.ndarray:
        """Multiset overlap sum_t min(count_a(t), count_b(t)) between the query and every pool item."""
        n = len(self._texts)
        singles: list[np.ndarray] = []
        multi: list[tuple[int, int]] = []
        for tok_id, count in Counter(ids).items():
            if tok_id < 0:
                continue  # a token no pool item has
            if count == 1:
                singles.append(np.frombuffer(self._post_items[tok_id], dtype=np.int32))
            else:
                multi.append((tok_id, count))
        # One bincount over the concatenated posting lists costs less than a fancy-indexed += per token (the
        # frequent words' lists hold most of the pool); the copies also free the buffers, so the arrays may grow.
        if singles:
            overlap = np.bincount(np.concatenate(singles), minlength=n)
        else:
            overlap = np.zeros(n, dtype=np.int64)
        del singles
        for tok_id, count in multi:
            items = np.frombuffer(self._post_items[tok_id], dtype=np.int32)
            counts = np.frombuffer(self._post_counts[tok_id], dtype=np.int32)
            overlap[items] += np.minimum(counts, count)
            del items, counts
        return overlap

    def _top_exact(
        self, ids: list[int], overlap: np.ndarray, k: int, scored: list[tuple[np.ndarray, np.ndarray]]
    ) -> list[tuple[float, int]]:
        """Exact top-k (score desc, index asc) over the items sharing a token with the query.

        Items are scored exactly in chunks, the highest upper bounds first, until no unscored item's bound (with
        slack for rounding) reaches the k-th best exact score: such an item scores strictly below it, so the top-k
        is the one over all items. Every (items, scores) chunk is appended to ``scored`` (for the average).
        """
        m = len(ids)
        lengths = np.frombuffer(self._lengths, dtype=np.int32)
        # The bound 2*overlap/(m+len), widened by the relative slack; 0 for items sharing no token, which are never
        # scored (they score exactly 0). An item can compete with a score s when bound + slack >= s.
        bounds = overlap * (2.0 * (1 + _BOUND_SLACK)) / (m + lengths)
        del lengths
        top_scores = np.zeros(0, dtype=np.float64)
        top_items = np.zeros(0, dtype=np.int64)
        chunk = max(64, 4 * k)
        floor = _TINY  # until the top-k is full, every item sharing a token is a candidate
        # First guess: the items whose bound reaches the previous query's k-th score (queries in a stream look
        # alike). Only the amount of work depends on it: the loop below scores until no bound can compete.
        # Too few reach it: lower the guess a few times (a pass over the bounds costs less than ranking them all).
        rest: np.ndarray | None = None
        guess = self._guess
        for _ in range(4):
            rest = np.flatnonzero(bounds >= max(guess, floor))
            if rest.size >= k or guess <= floor:
                break
            guess *= 0.75
        if rest is None or rest.size < k:
            rest = None  # still too few: pick by rank among all items instead
        while True:
            pool = bounds if rest is None else bounds[rest]
            if pool.size > chunk:
                # The chunk highest bounds first (ties may add a few); np.partition moves values only.
                cut = max(float(np.partition(pool, pool.size - chunk)[pool.size - chunk]), floor)
                take = np.flatnonzero(pool >= cut)
                chunk *= 4
            else:
                take = np.flatnonzero(pool >= floor)
            if rest is not None:
                take = rest[take]
            if not take.size:
                break
            exact = self._exact_scores(ids, take, overlap[take])
            scored.append((take, exact))
            bounds[take] = -1.0  # scored
            items = np.concatenate((top_items, take))
            scores = np.concatenate((top_scores, exact))
            order = np.lexsort((items, -scores))[:k]
            top_items, top_scores = items[order], scores[order]
            if top_items.size >= k:
                floor = float(top_scores[-1]) - _BOUND_SLACK
            rest = np.flatnonzero(bounds >= floor)
        if top_items.size >= k:
            self._guess = float(top_scores[-1]) - _BOUND_SLACK
        return list(zip(top_scores.tolist(), top_items.tolist(), strict=True))

    def _average(
        self, ids: list[int], overlap: np.ndarray | None, scored: list[tuple[np.ndarray, np.ndarray]]
    ) -> float:
        """Mean F over the whole pool, in pool order, the way np.mean sums the reference's score list."""
        scores = np.zeros(len(self._texts), dtype=np.float64)
        if ids and overlap is not None:
            for items, exact in scored:
                scores[items] = exact
            # An item sharing a token has F > 0, so a 0 left among them is one not scored yet.
            missing = np.flatnonzero((overlap > 0) & (scores == 0.0))
            if missing.size:
                scores[missing] = self._exact_scores(ids, missing, overlap[missing])
        return float(np.mean(scores))

    def _exact_scores(self, ids: list[int], items: np.ndarray, overlap: np.ndarray | None = None) -> np.ndarray:
        """rouge-score's F for the query (target) against each pool item (prediction), exactly."""
        m = len(ids)
        lengths = np.frombuffer(self._lengths, dtype=np.int32)[items].astype(np.int64)
        if overlap is None:
            lcs = self._lcs_many(ids, items, lengths)
        else:
            # One shared token occurrence means the LCS is exactly 1: no need to run the LCS for those.
            lcs = np.ones(items.size, dtype=np.int64)
            multi = np.flatnonzero(overlap > 1)
            if multi.size:
                lcs[multi] = self._lcs_many(ids, items[multi], lengths[multi])
        precision = lcs / lengths
        recall = lcs / m
        total = precision + recall
        with np.errstate(invalid="ignore", divide="ignore"):
            f = 2 * precision * recall / total
        return np.where(total > 0, f, 0.0)

    def _lcs_many(self, ids: list[int], items: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Bit-parallel LCS of the query against many pool items at once (numpy, multi-word for long queries)."""
        m = len(ids)
        words = (m + _WORD - 1) // _WORD
        # Match masks of the query, per token id (only the query's tokens are non-zero).
        table = self._masks_for(ids, words)
        order = np.argsort(-lengths, kind="stable")
        sorted_items = items[order]
        sorted_lengths = lengths[order]
        starts = np.frombuffer(self._starts, dtype=np.int64)[sorted_items]
        flat = np.frombuffer(self._flat, dtype=np.int32)
        v = np.full((items.size, words), _ALL_ONES, dtype=np.uint64)
        max_len = int(sorted_lengths[0]) if items.size else 0
        # Items are sorted by length, so the ones still running at step t (length > t) are a prefix.
        active_counts = np.searchsorted(-sorted_lengths, -np.arange(max_len), side="left")
        if words == 1:
            self._lcs_one_word(table[:, 0], flat, starts, active_counts, v[:, 0])
        else:
            for t in range(max_len):
                active = int(active_counts[t])
                tokens = flat[starts[:active] + t]
                u = table[tokens]  # (active, words)
                cur = v[:active]
                u &= cur
                carry = np.zeros(active, dtype=np.uint64)
                new = np.empty_like(cur)
                for w in range(words):
                    s = cur[:, w] + u[:, w]
                    c1 = s < cur[:, w]
                    s2 = s + carry
                    c2 = s2 < s
                    new[:, w] = s2 | (cur[:, w] & ~u[:, w])
                    carry = (c1 | c2).astype(np.uint64)
                cur[:] = new
        self._reset_masks(ids)
        # Bits at or above m in the top word are not part of the query; count zeros among the m real bits.
        high = m - (words - 1) * _WORD
        top_mask = np.uint64((1 << high) - 1) if high < _WORD else _ALL_ONES
        ones = np.bitwise_count(v[:, :-1]).sum(axis=1) if words > 1 else 0
        ones = ones + np.bitwise_count(v[:, -1] & top_mask)
        result = np.empty(items.size, dtype=np.int64)
        result[order] = m - ones.astype(np.int64)
        return result

    @staticmethod
    def _lcs_one_word(
        table: np.ndarray, flat: np.ndarray, starts: np.ndarray, active_counts: np.ndarray, v: np.ndarray
    ) -> None:
        """The LCS steps for a query of at most 64 tokens, in place on ``v``: per step a token gather, a mask lookup
        and three in-place integer operations (their fixed cost dominates on a few hundred items)."""
        scratch = np.empty(v.size, dtype=np.uint64)
        for t in range(active_counts.size):
            active = int(active_counts[t])
            cur = v[:active]
            u = table[flat[starts[:active] + t]]
            u &= cur
            s = scratch[:active]
            np.add(cur, u, out=s)
            cur -= u  # u's bits are a subset of cur's, so this is cur & ~u (Hyyro's formula)
            cur |= s

    def _masks_for(self, ids: list[int], words: int) -> np.ndarray:
        # One row per pool token id; query tokens no pool item has (id -1) get no row, as they match nothing.
        size = len(self._vocab) + 1
        if self._mask_table.shape[0] < size or self._mask_table.shape[1] < words:
            self._mask_table = np.zeros((max(size, 2 * self._mask_table.shape[0]), words), dtype=np.uint64)
        table = self._mask_table[:, :words]
        for i, tok_id in enumerate(ids):
            if tok_id >= 0:
                table[tok_id, i // _WORD] |= np.uint64(1 << (i % _WORD))
        return table

    def _reset_masks(self, ids: list[int]) -> None:
        for tok_id in ids:
            if tok_id >= 0:
                self._mask_table[tok_id, :] = 0


# -- command line ----------------------------------------------------------------------------------------------
def _read_records(path: Path) -> list[dict[str, Any]]:
    """JSON / JSONL / Parquet records, each with a string ``instruction``; errors name file, line and field."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    numbered: list[tuple[str, Any]] = []
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except (pa.ArrowInvalid, OSError) as err:
            raise DataError(f"{path}: not a readable Parquet file ({err})") from err
        numbered = [(f"row {i}", rec) for i, rec in enumerate(rows, start=1)]
    else:
        records, is_list = json_records(path)
        numbered = [(f"{'record' if is_list else 'line'} {n}", rec) for n, rec in records]
    records = []
    for where, rec in numbered:
        if not isinstance(rec, dict):
            raise DataError(f"{path}, {where}: expected a JSON object with an 'instruction' field")
        if "instruction" not in rec:
            raise DataError(f"{path}, {where}: missing field 'instruction'")
        if not isinstance(rec["instruction"], str):
            kind = type(rec["instruction"]).__name__
            raise DataError(f"{path}, {where}: field 'instruction' must be a string, got {kind}")
        records.append(rec)
    return records


def filter_file(pool_path: Path, candidates_path: Path, out_path: Path, threshold: float = 0.7) -> dict[str, int]:
    """Keep the candidates (in file order) whose max ROUGE-L against the pool and earlier kept ones <= threshold."""
    pool = _read_records(pool_path)
    candidates = _read_records(candidates_path)
    filt = RougeFilter(threshold)
    filt.add_many(rec["instruction"] for rec in pool)
    kept_rows = []
    for rec in candidates:
        kept, score, _, _ = filt.consider(rec["instruction"])
        if kept:
            kept_rows.append({**rec, "max_similarity": score})
    write_jsonl(kept_rows, out_path)
    return {"pool": len(pool), "candidates": len(candidates), "kept": len(kept_rows)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m okapi.rouge_filter",
        description="Keep candidate instructions whose ROUGE-L F against the pool (and earlier kept ones) <= threshold.",
    )
    parser.add_argument("--pool", type=Path, required=True, help="JSON, JSONL or Parquet with an instruction field")
    parser.add_argument("--candidates", type=Path, required=True, help="same formats; processed in file order")
    parser.add_argument("--out", type=Path, required=True, help="JSONL of the kept records plus max_similarity")
    parser.add_argument("--threshold", type=float, default=0.7)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not 0.0 <= args.threshold <= 1.0 or math.isnan(args.threshold):
        parser.error(f"--threshold {args.threshold} is invalid; allowed: a number in [0, 1]")
    try:
        counts = filter_file(args.pool, args.candidates, args.out, args.threshold)
    except DataError as err:
        log.error("%s", err)
        return 2
    log.info(
        "kept %d of %d candidates (pool of %d) -> %s", counts["kept"], counts["candidates"], counts["pool"], args.out
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
