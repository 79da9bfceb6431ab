"""The fast ROUGE-L filter must make exactly rouge-score's decisions (Alpaca's reference computation)."""

from __future__ import annotations

import json
import logging
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rouge_score import rouge_scorer

from okapi.rouge_filter import RougeFilter, lcs_length, main, rouge_l_f, tokenize

SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)

ADVERSARIAL = [
    "",
    "   ",
    "!!! ??? ... ---",
    "the the the the the the the the",
    "a " * 80,  # longer than one 64-bit word of the bit-parallel LCS
    "Объясните разницу между ними.",
    "中文 指令 测试",
    "café naïve résumé über",
    "İstanbul KELVIN \u212a sign",  # lower() turns these into ASCII-ish tokens: the tokenizer must match exactly
    "x1 y2 z3 x1 y2 z3",
    "Write a poem about the sea.",
    "write A POEM about the SEA!!",
    "Sea the about poem a write",
]


def reference(candidate: str, pool: list[str], pool_tokens: list[list[str]] | None = None) -> tuple:
    """Alpaca's computation: _score_lcs(new instruction tokens, pool instruction tokens) for the whole pool."""
    tokens = SCORER._tokenizer.tokenize(candidate)
    pool_tokens = pool_tokens if pool_tokens is not None else [SCORER._tokenizer.tokenize(p) for p in pool]
    scores = [rouge_scorer._score_lcs(tokens, p).fmeasure for p in pool_tokens]
    return max(scores), sorted(scores, reverse=True), float(np.mean(scores))


def random_text(rng: random.Random, vocab: list[str], max_len: int) -> str:
    words = [rng.choice(vocab) for _ in range(rng.randint(0, max_len))]
    seps = [" ", " ", ", ", ". ", "-", "! "]
    return "".join(w + rng.choice(seps) for w in words)


def test_tokenizer_is_rouge_scores():
    for text in ADVERSARIAL:
        assert tokenize(text) == SCORER._tokenizer.tokenize(text)


def test_lcs_matches_dynamic_programming():
    rng = random.Random(1)
    for _ in range(500):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 90))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 40))]
        expected = rouge_scorer._lcs_table(a, b)[-1][-1] if a and b else 0
        assert lcs_length(a, b) == expected


def test_f_formula_is_rouge_scores():
    for lcs, m, n in [(0, 3, 4), (3, 3, 3), (7, 10, 10), (5, 9, 13), (1, 1, 200), (0, 0, 5)]:
        target = ["t"] * lcs + ["v"] * (m - lcs)
        prediction = ["t"] * lcs + ["u"] * (n - lcs)
        assert rouge_l_f(lcs, m, n) == rouge_scorer._score_lcs(target, prediction).fmeasure


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_max_top_k_and_average_equal_reference_on_random_pools(seed):
    rng = random.Random(seed)
    vocab = ["the", "a", "of", "write", "poem", "list", "x", "y", "z", "zz", "sea", "ÿ", "!!"]
    pool = [random_text(rng, vocab, 100 if i % 17 == 0 else 15) for i in range(300)] + ADVERSARIAL
    filt = RougeFilter(0.7)
    filt.add_many(pool)
    candidates = [random_text(rng, vocab, 15) for _ in range(40)] + ADVERSARIAL + rng.sample(pool, 10)
    pool_tokens = [tokenize(p) for p in pool]
    for cand in candidates:
        best, similar, avg = filt.max_similarity(cand, with_avg=True)
        ref_best, ref_sorted, ref_avg = reference(cand, pool, pool_tokens)
        assert best == ref_best, cand
        assert [s for _, s in similar] == ref_sorted[:10], cand
        assert avg == ref_avg, cand  # bit-identical: same scores summed by np.mean in pool order
        for text, score in similar:  # each listed instruction really has the listed score
            assert score == rouge_scorer._score_lcs(tokenize(cand), tokenize(text)).fmeasure


def test_stream_decisions_equal_reference():
    """consider() over a stream with near-duplicates: same keep/reject sequence as Alpaca's loop."""
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(40)] + ["the", "a", "of"]
    pool = [random_text(rng, vocab, 12) for _ in range(150)]
    stream = []
    for _ in range(150):
        base = rng.choice(pool + stream) if stream and rng.random() < 0.6 else random_text(rng, vocab, 12)
        words = base.split()
        for _ in range(rng.randint(0, 3)):
            if words:
                words[rng.randrange(len(words))] = rng.choice(vocab)
        stream.append(" ".join(words))
    stream += ADVERSARIAL

    filt = RougeFilter(0.7)
    filt.add_many(pool)
    ref_pool = list(pool)
    ref_tokens = [tokenize(p) for p in pool]
    decisions, ref_decisions = [], []
    for cand in stream:
        kept, score, _, _ = filt.consider(cand)
        decisions.append((kept, score))
        ref_best = reference(cand, ref_pool, ref_tokens)[0]
        ref_kept = not ref_best > 0.7
        ref_decisions.append((ref_kept, ref_best))
        if ref_kept:
            ref_pool.append(cand)
            ref_tokens.append(tokenize(cand))
    assert decisions == ref_decisions
    assert 0 < sum(k for k, _ in decisions) < len(decisions)  # the stream exercises both outcomes
    assert len(filt) == len(ref_pool)


@pytest.mark.parametrize("top_k", [1, 10, 100])
def test_top_lists_with_indices_and_ties_equal_brute_force_over_a_mixed_stream(top_k):
    """The top list is the top_k by (F desc, pool index asc) whatever came before: the search starts where the last
    query's k-th score was (near-duplicates then unrelated queries move it far), and chunks grow past 64 items."""
    rng = random.Random(11)
    vocab = [f"w{i}" for i in range(60)] + ["the", "a", "of", "to"]
    pool = [random_text(rng, vocab, 14) for _ in range(1500)] + ADVERSARIAL
    pool += pool[:40]  # exact duplicates: ties broken by pool order
    filt = RougeFilter(0.7, top_k=top_k)
    filt.add_many(pool)
    pool_tokens = [tokenize(p) for p in pool]
    stream = []
    for i in range(60):
        if i % 3 == 0:
            stream.append(rng.choice(pool))
        elif i % 3 == 1:
            stream.append(" ".join(rng.choice(["the", "a", "of"]) for _ in range(rng.randint(1, 30))))
        else:
            stream.append(random_text(rng, vocab, 40))
    for cand in stream + ADVERSARIAL:
        tokens = tokenize(cand)
        scores = [rouge_l_f(lcs_length(tokens, t), len(tokens), len(t)) for t in pool_tokens]
        expected = sorted(range(len(pool)), key=lambda i: (-scores[i], i))[:top_k]
        best, top, avg = filt.query(cand, with_avg=True)
        assert [i for i, _ in top] == expected, cand
        assert [s for _, s in top] == [scores[i] for i in expected] and best == scores[expected[0]], cand
        assert avg == float(np.mean(scores)), cand


def test_threshold_is_strict_and_duplicates_rejected():
    filt = RougeFilter(0.7)
    filt.add("one two three four five six seven eight nine ten")
    # LCS 7 of 10 vs 10 tokens: F is 0.7 exactly in rouge-score's floats, and Alpaca rejects only F > 0.7.
    cand = "one two three four five six seven x y z"
    assert rouge_scorer._score_lcs(tokenize(cand), tokenize(filt.texts[0])).fmeasure == 0.7
    kept, score, similar, avg = filt.consider(cand)
    assert kept and score == 0.7
    assert avg is None  # only computed when asked
    # One more shared token (LCS 8) crosses the threshold.
    over = "one two three four five six seven eight p q"
    kept, score, _, _ = filt.consider(over)
    assert not kept and score == rouge_scorer._score_lcs(tokenize(over), tokenize(filt.texts[0])).fmeasure > 0.7
    kept, score, _, _ = filt.consider("One two three four five six seven eight nine ten!")
    assert not kept and score == 1.0
    assert filt.texts == ["one two three four five six seven eight nine ten", cand]


def test_empty_pool_and_tokenless_candidates():
    filt = RougeFilter()
    assert filt.max_similarity("anything at all") == (0.0, [], None)
    kept, score, similar, avg = filt.consider("!!!", with_avg=True)
    assert kept and score == 0.0 and similar == [] and avg == 0.0
    filt.add("write a poem")
    best, similar, _ = filt.max_similarity("")
    assert best == 0.0 and similar == [("!!!", 0.0), ("write a poem", 0.0)]


def test_top_k_lists_the_most_similar_texts_in_order():
    filt = RougeFilter(top_k=2)
    filt.add_many(["alpha beta gamma delta", "alpha beta", "unrelated words here", "alpha beta gamma"])
    best, similar, _ = filt.max_similarity("alpha beta gamma delta")
    assert best == 1.0
    assert [t for t, _ in similar] == ["alpha beta gamma delta", "alpha beta gamma"]


def test_cli_keeps_candidates_in_order(tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"instruction": "Write a poem about the sea.", "input": ""}) + "\n")
    cands = tmp_path / "cands.parquet"
    rows = [
        {"instruction": "Write a poem about the sea!", "input": "", "extra": 1},
        {"instruction": "Name three prime numbers below twenty.", "input": "", "extra": 2},
        {"instruction": "Name three prime numbers below twenty please.", "input": "", "extra": 3},
        {"instruction": "Explain how tides work.", "input": "", "extra": 4},
    ]
    pq.write_table(pa.Table.from_pylist(rows), cands)
    out = tmp_path / "kept.jsonl"
    assert main(["--pool", str(pool), "--candidates", str(cands), "--out", str(out)]) == 0
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["extra"] for r in kept] == [2, 4]  # 1 repeats the pool, 3 repeats kept candidate 2
    assert all(set(r) == {"instruction", "input", "extra", "max_similarity"} for r in kept)
    assert kept[1]["max_similarity"] == reference(rows[3]["instruction"], [pool_text(pool), rows[1]["instruction"]])[0]


def pool_text(path):
    return json.loads(path.read_text().splitlines()[0])["instruction"]


def test_cli_bad_file_names_file_record_and_field(tmp_path, caplog):
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"instruction": "ok"}\n\n{"input": "no instruction here"}\n')
    cands = tmp_path / "cands.jsonl"
    cands.write_text('{"instruction": 5}\n')
    with caplog.at_level(logging.ERROR):
        assert main(["--pool", str(pool), "--candidates", str(cands), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert f"{pool}, line 3: missing field 'instruction'" in caplog.text
    pool.write_text('{"instruction": "ok"}\n')
    caplog.clear()
    with caplog.at_level(logging.ERROR):
        assert main(["--pool", str(pool), "--candidates", str(cands), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert f"{cands}, line 1: field 'instruction' must be a string" in caplog.text
    assert not (tmp_path / "o.jsonl").exists()
