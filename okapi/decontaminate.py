"""Decontamination: training rows that share an n-gram with an evaluation item (issue 15, item 1).

The check follows the n-gram overlap used by GPT-3's and lm-eval's decontamination: text is normalised (Unicode
NFKC, case-folded, punctuation and symbols removed), split into words (each Han / kana / Thai character is a word
of its own, since those scripts do not separate words by spaces), and a training row is contaminated when one of
its word n-grams (default 13) occurs in an evaluation item. Evaluation items shorter than n words yield no n-gram
and cannot match; they are counted as ``too_short`` so a reader sees how much of a benchmark the check covers.

Speed: every word is hashed once (Python's string hash), n-gram hashes are combined with numpy over whole chunks of
rows, and membership is one ``searchsorted`` into the sorted eval n-gram hashes, so the cost is linear in the
number of words (benchmarks/decontaminate.py measures it at paper scale). Hash collisions between distinct 13-grams
(64-bit) are negligible at these sizes (~1e-4 expected false matches for 1e8 x 1e7 n-grams).

Input rows: schemas.TRANSLATIONS (both the translated and the ``en_*`` fields are checked), schemas.PROMPTS or
schemas.INSTRUCTIONS. Eval records: schemas.MULTIPLE_CHOICE or schemas.HELLASWAG shapes (English sources and
their translations alike). Output: the ids of contaminated rows with the benchmarks they overlap, and metrics.
"""

from __future__ import annotations

import logging
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MODES = ("drop", "report", "off")
SPLITS = ("sft", "rank", "ppo")  # the translate splits (schemas.TRANSLATIONS "split")
# The text fields of a training row that are checked; TRANSLATIONS rows also carry their English source.
ROW_FIELDS = ("instruction", "input", "output")
EN_ROW_FIELDS = ("en_instruction", "en_input", "en_output")
# Text fields of evaluation records (Okapi's multiple-choice and HellaSwag shapes); ids, answers, labels excluded.
EVAL_FIELDS = ("instruction", "option_a", "option_b", "option_c", "option_d", "option_e", "activity_label", "ctx")

# Scripts written without spaces between words: every character is a word of its own.
_CHAR_WORD = "\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD_RE = re.compile(f"[{_CHAR_WORD}]|[^\\s{_CHAR_WORD}]+")
# Fixed odd 64-bit multipliers, one per n-gram position (n is at most _MAX_N): position-dependent, so a reordered
# n-gram hashes differently. Drawn once from a seeded generator so every run (and every process) agrees.
_MAX_N = 64
_MULTIPLIERS = np.random.default_rng(20231011).integers(1, 2**63, size=_MAX_N, dtype=np.uint64) * np.uint64(2) + 1
# Words hashed per numpy pass and training rows whose texts are built at once. With 4M words and all rows at once,
# checking a quarter-size translate@<lang> (40K rows) took 362 MB more for the moment; with these, 134 MB.
_CHUNK_WORDS = 1_000_000
_CHUNK_ROWS = 8192


@lru_cache(maxsize=1)
def _punctuation_table() -> dict[int, str]:
    # Built once (~0.3 s): every punctuation and symbol code point becomes a space.
    return {cp: " " for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp))[0] in ("P", "S")}


def normalize(text: str) -> str:
    """NFKC, case-folded, punctuation and symbols replaced by spaces."""
    return unicodedata.normalize("NFKC", text).casefold().translate(_punctuation_table())


def words(text: str) -> list[str]:
    """The normalised words of ``text`` (Han, kana and Thai characters one word each)."""
    return _WORD_RE.findall(normalize(text))


def _word_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(concatenated word hashes as uint64, number of words per text)."""
    toks = [words(t) for t in texts]
    lengths = np.fromiter((len(t) for t in toks), dtype=np.int64, count=len(toks))
    flat = np.fromiter((hash(w) for t in toks for w in t), dtype=np.int64, count=int(lengths.sum()))
    return flat.view(np.uint64), lengths


def _ngram_hashes(hashes: np.ndarray, lengths: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every n-gram that lies inside one text, index of its text)."""
    total = int(lengths.sum())
    if total < n:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    windows = total - n + 1
    combined = np.zeros(windows, dtype=np.uint64)
    for j in range(n):  # uint64 arithmetic wraps modulo 2**64, which is what a hash wants
        combined += hashes[j : j + windows] * _MULTIPLIERS[j]
    owner = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
    inside = owner[:windows] == owner[n - 1 :]  # a window crossing into the next text is no n-gram
    return combined[inside], owner[:windows][inside]


def _chunks(texts: Sequence[str]) -> Iterable[tuple[int, Sequence[str]]]:
    """(offset, texts) chunks of about _CHUNK_WORDS words (estimated from characters) each."""
    start, budget = 0, 0
    for i, text in enumerate(texts):
        budget += len(text) // 5 + 1
        if budget >= _CHUNK_WORDS:
            yield start, texts[start : i + 1]
            start, budget = i + 1, 0
    if start < len(texts):
        yield start, texts[start:]


class EvalIndex:
    """The n-gram hashes of every evaluation item, each with the set of benchmarks it occurs in (a bit mask)."""

    def __init__(self, n: int = 13) -> None:
        if not 1 <= n <= _MAX_N:
            raise ValueError(f"n-gram size {n} is invalid; allowed: 1 to {_MAX_N}")
        self.n = n
        self.benchmarks: list[str] = []
        self.items: Counter[str] = Counter()
        self.too_short: Counter[str] = Counter()
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []
        self._hashes = np.empty(0, dtype=np.uint64)
        self._masks = np.empty(0, dtype=np.uint64)

    def add(self, benchmark: str, texts: Sequence[str]) -> None:
        """Add evaluation items (one text each) of ``benchmark``."""
        if benchmark not in self.benchmarks:
            if len(self.benchmarks) == 64:
                raise ValueError("at most 64 benchmarks fit in one index")
            self.benchmarks.append(benchmark)
        bit = np.uint64(1) << np.uint64(self.benchmarks.index(benchmark))
        hashes, lengths = _word_hashes(texts)
        self.items[benchmark] += len(texts)
        self.too_short[benchmark] += int((lengths < self.n).sum())
        grams, _ = _ngram_hashes(hashes, lengths, self.n)
        self._parts.append((grams, np.full(len(grams), bit, dtype=np.uint64)))
        self._freeze()

    def _freeze(self) -> None:
        grams = np.concatenate([g for g, _ in self._parts])
        bits = np.concatenate([b for _, b in self._parts])
        order = np.argsort(grams, kind="stable")
        grams, bits = grams[order], bits[order]
        unique, first = np.unique(grams, return_index=True)
        self._hashes = unique
        self._masks = np.bitwise_or.reduceat(bits, first) if len(bits) else bits
        self._parts = [(self._hashes, self._masks)]

    def __len__(self) -> int:
        return len(self._hashes)

    def match(self, texts: Sequence[str]) -> list[frozenset[str]]:
        """For each text, the benchmarks it shares an n-gram with (empty: clean)."""
        masks = np.zeros(len(texts), dtype=np.uint64)
        if len(self._hashes):
            for offset, chunk in _chunks(texts):
                hashes, lengths = _word_hashes(chunk)
                grams, owner = _ngram_hashes(hashes, lengths, self.n)
                pos = np.searchsorted(self._hashes, grams)
                pos[pos == len(self._hashes)] = 0
                hit = self._hashes[pos] == grams
                if hit.any():
                    np.bitwise_or.at(masks, owner[hit] + offset, self._masks[pos[hit]])
        names = {}
        out = []
        for m in masks.tolist():
            if m not in names:
                names[m] = frozenset(b for i, b in enumerate(self.benchmarks) if m >> i & 1)
            out.append(names[m])
        return out


def eval_text(record: dict[str, Any]) -> str:
    """One evaluation item as text: the question (or context) followed by its options (or endings)."""
    parts = [record[k] for k in EVAL_FIELDS if isinstance(record.get(k), str)]
    endings = record.get("endings")
    if isinstance(endings, list):
        parts.extend(e for e in endings if isinstance(e, str))
    return "\n".join(parts)


def row_texts(row: dict[str, Any]) -> list[str]:
    """The texts of a training row to check: its own fields, and its English source where it carries one."""
    out = ["\n".join(row[k] for k in ROW_FIELDS if isinstance(row.get(k), str))]
    if any(isinstance(row.get(k), str) for k in EN_ROW_FIELDS):
        out.append("\n".join(row[k] for k in EN_ROW_FIELDS if isinstance(row.get(k), str)))
    return out


def benchmark_of(name: str) -> str:
    """'arc' for an eval set named 'arc' or (released files) 'arc_test'."""
    return name.split("_", 1)[0]


def build_index(eval_sets: Iterable[tuple[str, Sequence[dict[str, Any]]]], n: int) -> EvalIndex:
    """An index of (set name, records) pairs; sets of one benchmark (English and translated) count together."""
    index = EvalIndex(n)
    for name, records in eval_sets:
        index.add(benchmark_of(name), [eval_text(r) for r in records])
    return index


def find_contaminated(rows: Sequence[dict[str, Any]], index: EvalIndex) -> dict[str, list[str]]:
    """{row id: sorted benchmarks it overlaps} for the contaminated rows among ``rows`` (each needs an ``id``)."""
    found: dict[str, set[str]] = {}
    # In chunks of rows (_CHUNK_ROWS): not every row's texts (translation and English source) at once.
    for start in range(0, len(rows), _CHUNK_ROWS):
        texts: list[str] = []
        owners: list[int] = []
        for i, row in enumerate(rows[start : start + _CHUNK_ROWS], start=start):
            for text in row_texts(row):
                texts.append(text)
                owners.append(i)
        for owner, hit in zip(owners, index.match(texts), strict=True):
            if hit:
                found.setdefault(rows[owner]["id"], set()).update(hit)
    return {row_id: sorted(b) for row_id, b in found.items()}


def contamination_metrics(
    rows: Sequence[dict[str, Any]],
    found: dict[str, list[str]],
    index: EvalIndex,
    mode: str,
    group_by: Sequence[str] = ("split", "source"),
) -> dict[str, Any]:
    """Counts per benchmark and per value of each ``group_by`` field, with what the index covered."""
    by_bench: Counter[str] = Counter(b for benches in found.values() for b in benches)
    out: dict[str, Any] = {
        "mode": mode,
        "ngram": index.n,
        "eval_items": dict(sorted(index.items.items())),
        "eval_items_too_short": dict(sorted(index.too_short.items())),
        "checked_rows": len(rows),
        "contaminated_rows": len(found),
        "dropped_rows": len(found) if mode == "drop" else 0,
        "by_benchmark": {b: by_bench.get(b, 0) for b in sorted(index.benchmarks)},
    }
    for field in group_by:
        # Every split reports a count, zero or not, even one with no accepted row.
        groups: dict[str, Counter[str]] = {
            k: Counter(checked=0, contaminated=0) for k in (SPLITS if field == "split" else ())
        }
        for row in rows:
            g = groups.setdefault(str(row.get(field)), Counter(checked=0, contaminated=0))
            g["checked"] += 1
            g["contaminated"] += row["id"] in found
        out[f"by_{field}"] = {k: dict(v) for k, v in sorted(groups.items())}
    return out


def decontaminate(
    rows: list[dict[str, Any]],
    eval_sets: Iterable[tuple[str, Sequence[dict[str, Any]]]],
    mode: str,
    n: int,
    group_by: Sequence[str] = ("split", "source"),
) -> tuple[set[str], dict[str, Any]]:
    """Check the accepted ``rows`` (status "ok" or no status) against ``eval_sets``; (dropped ids, metrics).

    mode "drop": a contaminated row gets status "rejected" and the reason ``contaminated: ...`` (its text is kept
    for inspection) and its id is returned so the caller leaves it out of every split. "report": rows are only
    counted. "off": nothing is checked.
    """
    if mode not in MODES:
        raise ValueError(f"decontamination mode {mode!r} is invalid; allowed: {', '.join(MODES)}")
    if mode == "off":
        return set(), {"mode": "off"}
    index = build_index(eval_sets, n)
    candidates = [r for r in rows if r.get("status", "ok") == "ok"]
    found = find_contaminated(candidates, index)
    metrics = contamination_metrics(candidates, found, index, mode, group_by)
    log.info(
        "decontamination (%d-grams, %s): %d of %d rows overlap an evaluation item %s",
        n,
        mode,
        len(found),
        len(candidates),
        metrics["by_benchmark"],
    )
    if mode != "drop":
        return set(), metrics
    for row in candidates:
        if row["id"] in found:
            row["status"] = "rejected"
            row["reason"] = f"contaminated: a {n}-gram overlaps {', '.join(found[row['id']])}"
    return set(found), metrics
