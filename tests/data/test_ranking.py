"""Two-turn ranking (Fig. 3-4): prompts, strict parsing, the dialog with a fake teacher, preference pairs."""

from __future__ import annotations

import json

import pytest
from fakes import FakeTeacher
from tiny import small_config

from okapi import schemas
from okapi.config import ConfigError
from okapi.io import DataError, read_rows, write_parquet
from okapi.ranking import (
    RANKING_SCHEMA,
    RankConfig,
    build_turn1,
    build_turn2,
    make_pairs,
    parse_ranking,
    parse_ranking_json,
    rank_samples,
)
from okapi.teacher import ParseError

RESPONSES = ["Hà Nội là thủ đô.", "Thủ đô của Việt Nam là Hà Nội.", "Tôi không biết.", "Hồ Chí Minh."]


def reason(fn, *args):
    with pytest.raises(ParseError) as err:
        fn(*args)
    return str(err.value).split(":", 1)[0]


# -- prompts -------------------------------------------------------------------------------------------------------------
def test_turn1_asks_for_english_translation_with_empty_input_marker():
    (msg,) = build_turn1("Thủ đô của Việt Nam là gì?", "", RESPONSES)
    text = msg["content"]
    assert msg["role"] == "user"
    assert "four possible responses" in text and "into English" in text and "<empty>" in text
    assert "Instruction: Thủ đô của Việt Nam là gì?\nInput: <empty>\nResponse 1: Hà Nội là thủ đô." in text
    assert text.endswith("Response 4: Hồ Chí Minh.")
    assert "Input: Việt Nam" in build_turn1("Thủ đô?", "Việt Nam", RESPONSES[:3])[0]["content"]
    assert "three possible responses" in build_turn1("Thủ đô?", "", RESPONSES[:3])[0]["content"]
    with pytest.raises(ValueError):
        build_turn1("x", "", ["only one"])


def test_turn2_continues_the_dialog_with_the_ranking_prompt():
    turn1 = build_turn1("Thủ đô của Việt Nam là gì?", "", RESPONSES)
    messages = build_turn2(turn1, "Instruction: What is the capital of Vietnam? ...")
    assert messages[:1] == turn1
    assert messages[1] == {"role": "assistant", "content": "Instruction: What is the capital of Vietnam? ..."}
    text = messages[2]["content"].lower()
    for phrase in ("correctness", "coherence", "naturalness", "from 1 to 4", "1 is the best"):
        assert phrase in text, phrase
    assert "cannot have the same rank" in text and "original order" in text and "explanation" in text
    assert '"response r: overall rank: k"' in text
    structured = build_turn2(turn1, "...", structured=True)[2]["content"]
    assert '{"ranks": [...]}' in structured and "Response 4" in structured
    assert "from 1 to 3" in build_turn2(build_turn1("q", "", RESPONSES[:3]), "...")[2]["content"]


# -- parsing -------------------------------------------------------------------------------------------------------------
def test_parse_ranking_accepts_the_requested_and_the_papers_compact_form():
    lines = "Response 1: overall rank: 3\nResponse 2: overall rank: 1\nResponse 3: overall rank: 4\nResponse 4: overall rank: 2"
    assert parse_ranking(lines, 4) == [3, 1, 4, 2]
    assert parse_ranking("Response 1: 3 Response 2: 1 Response 3: 4 Response 4: 2", 4) == [3, 1, 4, 2]
    assert parse_ranking("<Response 1>: overall rank: <2>\n<Response 2>: overall rank: <1>", 2) == [2, 1]
    assert parse_ranking("**Response 1**: Overall Rank: 1\n**Response 2**: Overall Rank: 2\n", 2) == [1, 2]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("I think response 2 is best.", "no_ranking"),
        ("Response 1: overall rank: 1\nResponse 2: overall rank: 1\nResponse 3: overall rank: 3", "tie"),
        ("Response 1: overall rank: 2\nResponse 2: overall rank: 1", "missing_entries"),
        ("Response 1: 1 Response 2: 2 Response 3: 3 Response 4: 4", "extra_entries"),
        ("Response 1: overall rank: 1\nResponse 3: overall rank: 2\nResponse 2: overall rank: 3", "out_of_order"),
        ("Response 1: overall rank: 4\nResponse 2: overall rank: 1\nResponse 3: overall rank: 2", "rank_out_of_range"),
        ("Response 1: 0 Response 2: 1 Response 3: 2", "rank_out_of_range"),
        (
            "Response 1: overall rank: 2\nResponse 2: overall rank: 1\nResponse 3: overall rank: 3\n"
            "Response 2 is the most correct because it names the capital.",
            "extra_text",
        ),
    ],
)
def test_parse_ranking_rejects_malformed_answers(text, code):
    assert reason(parse_ranking, text, 3) == code


def test_parse_ranking_json():
    assert parse_ranking_json('{"ranks": [2, 1, 3]}', 3) == [2, 1, 3]
    assert parse_ranking_json('```json\n{"ranks": [1, 2]}\n```', 2) == [1, 2]
    assert reason(parse_ranking_json, '{"ranks": [1, 1, 3]}', 3) == "tie"
    assert reason(parse_ranking_json, '{"ranks": [1, 2]}', 3) == "missing_entries"
    assert reason(parse_ranking_json, '{"ranks": ["1", "2"]}', 2) == "wrong_shape"
    assert reason(parse_ranking_json, '{"ranks": [true, 2]}', 2) == "wrong_shape"
    assert reason(parse_ranking_json, "ranks: 1, 2", 2) == "not_json"
    assert RANKING_SCHEMA["required"] == ["ranks"]


# -- the dialog ----------------------------------------------------------------------------------------------------------
def sample(sample_id, responses, instruction="Thủ đô của Việt Nam là gì?", inp=""):
    return {"id": sample_id, "lang": "vi", "instruction": instruction, "input": inp, "responses": responses}


def teacher_for(structured: bool) -> FakeTeacher:
    def respond(messages, attempt):
        if len(messages) == 1:
            if "SILENT" in messages[0]["content"]:
                return "   "
            return "Instruction: What is the capital of Vietnam?\nInput: <empty>\nResponse 1: ..."
        n = messages[0]["content"].count("\nResponse ")
        if "TIES" in messages[0]["content"]:
            ranks = [1] * n
        else:  # longer responses rank better, as a stand-in for a judgement
            texts = [line.split(": ", 1)[1] for line in messages[0]["content"].splitlines() if line.startswith("Resp")]
            order = sorted(range(n), key=lambda i: -len(texts[i]))
            ranks = [order.index(i) + 1 for i in range(n)]
        if structured:
            return json.dumps({"ranks": ranks})
        return "\n".join(f"Response {i + 1}: overall rank: {k}" for i, k in enumerate(ranks))

    return FakeTeacher(respond)


@pytest.mark.parametrize("structured", [False, True])
def test_rank_samples_two_turns(tmp_path, structured):
    samples = [
        sample("gen-1", RESPONSES),
        sample("gen-2", RESPONSES[:3], inp="Việt Nam"),
        sample("gen-1", RESPONSES),  # duplicate id
        sample("gen-3", ["Chỉ một câu trả lời."]),
        sample("gen-4", ["Một.", "  ", "Ba.", "Bốn."]),
        sample("gen-5", RESPONSES, instruction="TIES"),
        sample("gen-6", RESPONSES, instruction="SILENT"),
    ]
    teacher = teacher_for(structured)
    rows, metrics = rank_samples(
        teacher, samples, "vi", small_config(RankConfig, structured=structured, max_attempts=2)
    )
    by_id = {r["id"]: r for r in rows}
    assert list(by_id) == ["gen-1", "gen-2", "gen-5", "gen-6"]
    assert by_id["gen-1"]["ranks"] == [2, 1, 3, 4] and by_id["gen-1"]["status"] == "ok"
    assert by_id["gen-2"]["ranks"] == [2, 1, 3]
    assert by_id["gen-1"]["english"].startswith("Instruction: What is the capital")
    assert by_id["gen-5"]["status"] == "rejected" and by_id["gen-5"]["reason"].startswith("turn2: tie")
    assert by_id["gen-5"]["ranks"] is None and by_id["gen-5"]["raw"]
    assert by_id["gen-6"]["reason"].startswith("turn1: empty_translation")
    assert by_id["gen-1"]["attempts"] == 2 and by_id["gen-5"]["attempts"] == 3 and by_id["gen-6"]["attempts"] == 2
    assert metrics["dropped_by_reason"] == {"duplicate_id": 1, "empty_response": 1, "too_few_responses": 1}
    assert metrics["ranked"] == 2 and metrics["rejected"] == 2
    assert metrics["rejected_by_reason"] == {"turn1:empty_translation": 1, "turn2:tie": 1}
    assert metrics["mean_rank_by_position"] == [2.0, 1.0, 3.0, 4.0]
    # Turn 2 carries the turn-1 conversation and answer.
    turn2 = [m for m, _ in teacher.calls if len(m) == 3]
    assert turn2 and all(m[1]["role"] == "assistant" and m[1]["content"].startswith("Instruction:") for m in turn2)
    path = tmp_path / "rankings.parquet"
    write_parquet(rows, path, schemas.RANKINGS)
    assert read_rows(path, schemas.RANKINGS) == rows


def test_rank_samples_rejects_broken_rows_and_config():
    with pytest.raises(DataError, match="sample row 1 \\(id a\\): field 'responses'"):
        rank_samples(teacher_for(False), [sample("a", "not a list")], "vi", small_config(RankConfig))
    with pytest.raises(ConfigError, match="rank.pairs"):
        small_config(RankConfig, pairs="best")


# -- pairs ---------------------------------------------------------------------------------------------------------------
def ranking_row(row_id, responses, ranks, status="ok"):
    return {
        "id": row_id,
        "lang": "vi",
        "instruction": "q",
        "input": "",
        "responses": responses,
        "ranks": ranks,
        "status": status,
    }


def test_make_pairs_modes(tmp_path):
    rows = [
        ranking_row("p1", ["a", "b", "c", "d"], [3, 1, 4, 2]),
        ranking_row("p2", ["x", "y"], None, status="rejected"),
    ]
    all_pairs = make_pairs(rows, "all")
    assert len(all_pairs) == 6
    assert {(p["chosen"], p["rejected"]) for p in all_pairs} == {
        ("b", "d"),
        ("b", "a"),
        ("b", "c"),
        ("d", "a"),
        ("d", "c"),
        ("a", "c"),
    }
    assert all_pairs[0]["id"] == "p1:2>4"
    assert [(p["chosen"], p["rejected"]) for p in make_pairs(rows, "best_worst")] == [("b", "c")]
    assert [(p["chosen"], p["rejected"]) for p in make_pairs(rows, "adjacent")] == [("b", "d"), ("d", "a"), ("a", "c")]
    same = [ranking_row("p3", ["same", "same", "other"], [1, 2, 3])]
    assert [(p["chosen"], p["rejected"]) for p in make_pairs(same, "all")] == [("same", "other"), ("same", "other")]
    write_parquet(all_pairs, tmp_path / "pairs.parquet", schemas.PAIRS)
    with pytest.raises(ValueError):
        make_pairs(rows, "random")


def test_ranking_schema_pins_the_number_and_range_of_ranks():
    from okapi.ranking import ranking_schema

    ranks = ranking_schema(4)["properties"]["ranks"]
    assert ranks["minItems"] == ranks["maxItems"] == 4
    assert ranks["items"]["enum"] == [1, 2, 3, 4]


@pytest.mark.parametrize("structured", [False, True])
def test_english_skips_the_translation_turn(structured):
    responses = ["Hanoi is the capital.", "The capital of Vietnam is Hanoi.", "I do not know.", "Ho Chi Minh City."]
    samples = [{**sample("gen-1", responses, instruction="What is the capital of Vietnam?"), "lang": "en"}]

    def respond(messages, attempt):  # longer responses rank better, from the one message's listing
        assert len(messages) == 1, "English gets no turn 1"
        texts = [line.split(": ", 1)[1] for line in messages[0]["content"].splitlines() if line.startswith("Resp")]
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        ranks = [order.index(i) + 1 for i in range(len(texts))]
        if structured:
            return json.dumps({"ranks": ranks})
        return "\n".join(f"Response {i + 1}: overall rank: {k}" for i, k in enumerate(ranks))

    teacher = FakeTeacher(respond)
    rows, metrics = rank_samples(teacher, samples, "en", RankConfig(structured=structured))
    assert len(teacher.calls) == 1  # one request: no turn 1
    (messages, _), row = teacher.calls[0], rows[0]
    assert len(messages) == 1 and "Translate" not in messages[0]["content"]
    assert "Instruction: What is the capital of Vietnam?" in messages[0]["content"]
    assert "Response 4: Ho Chi Minh City." in messages[0]["content"] and "rank the responses" in messages[0]["content"]
    assert row["status"] == "ok" and row["ranks"] == [2, 1, 4, 3] and row["english"] is None and row["attempts"] == 1
    assert metrics["translation_turn"] == "skipped" and metrics["ranked"] == 1
    _, metrics = rank_samples(teacher_for(structured), [sample("gen-1", RESPONSES)], "vi", RankConfig())
    assert metrics["translation_turn"] == "sent"
    # The Fig. 3 turn-1 text is unchanged for target languages (cached requests stay valid).
    assert (
        build_turn1("x", "", ["a", "b"])[0]["content"]
        .split("\n")[0]
        .endswith("Translate the instruction, the input and the responses into English.")
    )
