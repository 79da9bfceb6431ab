"""Decontamination: n-gram overlap between training rows and evaluation items (okapi.decontaminate)."""

from __future__ import annotations

import pytest

from okapi import decontaminate as dc
from okapi.config import ConfigError, from_dict
from okapi.translate import TranslateConfig

QUESTION = "Which gas do green plants take in from the air to make their food during the daytime hours?"
ARC = [
    {
        "id": "arc-1",
        "answer": "B",
        "instruction": QUESTION,
        "option_a": "oxygen",
        "option_b": "carbon dioxide",
        "option_c": "nitrogen",
        "option_d": "helium",
        "option_e": None,
    }
]
HELLASWAG = [
    {
        "ind": 1,
        "activity_label": "Baking cookies",
        "ctx": "A woman pours flour into a large glass bowl and then she slowly adds two eggs and some sugar",
        "endings": ["and stirs the mixture with a wooden spoon until it is smooth.", "and leaves."],
        "label": "0",
    }
]
# The Vietnamese translation of the ARC item, as translate@vi would write it.
ARC_VI = [
    {
        **ARC[0],
        "instruction": "Cây xanh lấy khí nào từ không khí để tạo ra thức ăn của chúng vào những giờ ban ngày nhất định?",
    }
]


def _row(i: int, instruction: str, split: str = "rank", **extra) -> dict:
    return {
        "id": f"r{i}",
        "split": split,
        "source": "generated",
        "status": "ok",
        "reason": None,
        "instruction": instruction,
        "input": "",
        "output": "Some answer text.",
        **extra,
    }


def _clean_rows() -> list[dict]:
    return [
        _row(i, f"Write a short poem about the number {i} and the sea.", "sft" if i % 2 else "ppo") for i in range(6)
    ]


def test_words_are_normalised():
    assert dc.words("Hello, WORLD!  It's  ﬁne") == ["hello", "world", "it", "s", "fine"]
    assert dc.words("我爱你 ok") == ["我", "爱", "你", "ok"]  # Han: one character, one word


def test_planted_benchmark_question_is_dropped_and_counted():
    rows = _clean_rows()
    # Planted: the ARC question inside an instruction, with other casing and punctuation.
    rows.append(_row(99, "Quiz time!! " + QUESTION.upper().replace("?", " ...") + " Explain.", "rank"))
    dropped, metrics = dc.decontaminate(rows, [("arc", ARC), ("hellaswag", HELLASWAG)], "drop", 13)
    assert dropped == {"r99"}
    planted = rows[-1]
    assert planted["status"] == "rejected" and planted["reason"].startswith("contaminated: a 13-gram overlaps arc")
    assert all(r["status"] == "ok" for r in rows[:-1])
    assert metrics["contaminated_rows"] == 1 and metrics["dropped_rows"] == 1
    assert metrics["by_benchmark"] == {"arc": 1, "hellaswag": 0}
    assert metrics["by_split"]["rank"] == {"checked": 1, "contaminated": 1}
    assert metrics["by_split"]["sft"] == {"checked": 3, "contaminated": 0}
    # a split without rows still reports its (zero) count
    assert dc.decontaminate(_clean_rows()[:1], [("arc", ARC)], "report", 13)[1]["by_split"]["rank"] == {
        "checked": 0,
        "contaminated": 0,
    }
    assert metrics["by_source"]["generated"] == {"checked": 7, "contaminated": 1}
    assert metrics["eval_items"] == {"arc": 1, "hellaswag": 1}


def test_report_mode_counts_but_keeps_and_off_checks_nothing():
    rows = [*_clean_rows(), _row(7, QUESTION)]
    dropped, metrics = dc.decontaminate(rows, [("arc", ARC)], "report", 13)
    assert dropped == set() and metrics["contaminated_rows"] == 1 and metrics["dropped_rows"] == 0
    assert all(r["status"] == "ok" for r in rows)
    assert dc.decontaminate(rows, [("arc", ARC)], "off", 13) == (set(), {"mode": "off"})


def test_translated_side_and_english_source_are_both_checked():
    # Translation matches the translated benchmark; English source is clean.
    translated = _row(1, ARC_VI[0]["instruction"], en_instruction="Tell me about plants.", en_input="", en_output="x")
    # Translation is clean; its English source is the benchmark question (a leak from generation).
    english = _row(2, "Hãy kể về cây.", en_instruction=QUESTION, en_input="", en_output="x")
    rows = [translated, english, _row(3, "Một câu hỏi khác hoàn toàn.", en_instruction="Another one entirely.")]
    dropped, metrics = dc.decontaminate(rows, [("arc", ARC), ("arc", ARC_VI)], "drop", 13)
    assert dropped == {"r1", "r2"}
    assert metrics["by_benchmark"] == {"arc": 2} and metrics["eval_items"] == {"arc": 2}


def test_ngram_across_two_rows_is_no_match_and_short_items_are_counted():
    half = len(QUESTION.split()) // 2
    first, second = " ".join(QUESTION.split()[:half]), " ".join(QUESTION.split()[half:])
    rows = [_row(1, first, output=""), _row(2, second, output="")]
    short = [{"id": "s", "answer": "A", "instruction": "Two plus two?", "option_a": "4", "option_b": "5"}]
    dropped, metrics = dc.decontaminate(rows, [("arc", ARC), ("mmlu", short)], "drop", 13)
    assert dropped == set()
    assert metrics["eval_items_too_short"] == {"arc": 0, "mmlu": 1}


def test_released_eval_names_map_to_their_benchmark_and_n_is_a_param():
    rows = [_row(1, "carbon dioxide nitrogen helium")]
    assert dc.benchmark_of("arc_test") == "arc"
    # The options of the ARC item form a 4-gram at the end of its text ("... hours oxygen carbon dioxide ...").
    assert dc.decontaminate(rows, [("arc_test", ARC)], "report", 4)[1]["by_benchmark"] == {"arc": 1}
    assert dc.decontaminate(rows, [("arc_test", ARC)], "report", 13)[1]["by_benchmark"] == {"arc": 0}


def test_chunked_matching_equals_one_pass(monkeypatch):
    rows = [_row(i, f"Row {i} says hello to the world of numbers today.") for i in range(200)]
    rows[57]["output"] = QUESTION
    rows[150]["input"] = HELLASWAG[0]["ctx"]
    index = dc.build_index([("arc", ARC), ("hellaswag", HELLASWAG)], 13)
    whole = dc.find_contaminated(rows, index)
    monkeypatch.setattr(dc, "_CHUNK_WORDS", 40)  # many chunks: offsets must line up
    assert dc.find_contaminated(rows, index) == whole == {"r57": ["arc"], "r150": ["hellaswag"]}
    monkeypatch.setattr(dc, "_CHUNK_ROWS", 7)  # and chunks of rows, whose texts are built chunk by chunk
    assert dc.find_contaminated(rows, index) == whole


def test_bad_params_name_the_key():
    with pytest.raises(ConfigError, match="translate.decontaminate_ngram"):
        TranslateConfig(decontaminate_ngram=1)
    with pytest.raises(ConfigError, match="translate.min_back_score"):
        TranslateConfig(min_back_score=120.0)
    with pytest.raises(ConfigError, match="translate.decontaminate = 'sometimes' is invalid; allowed: 'drop'"):
        from_dict(TranslateConfig, {"decontaminate": "sometimes"}, "translate")
