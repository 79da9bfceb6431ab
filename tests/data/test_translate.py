"""Translation: Fig. 2 prompt, answer checks, splits, re-asks and eval-set shapes, with a fake teacher."""

from __future__ import annotations

import json

import pytest
from fakes import FakeTeacher
from tiny import small_config

from okapi import schemas
from okapi.config import ConfigError
from okapi.io import DataError, read_rows, write_parquet
from okapi.teacher import ParseError
from okapi.translate import (
    TranslateConfig,
    assign_splits,
    build_messages,
    make_validator,
    table2_lengths,
    translate_eval,
    translate_instructions,
)

# English -> German, written for these tests.
DE = {
    "Give three tips for staying healthy.": "Gib drei Tipps, um gesund zu bleiben.",
    "Eat a balanced diet, exercise regularly and sleep at least seven hours every night.": (
        "Iss ausgewogen, treibe regelmäßig Sport und schlafe jede Nacht mindestens sieben Stunden."
    ),
    "Translate the sentence into French.": "Übersetze den Satz ins Französische.",
    "Where is the library?": "Wo ist die Bibliothek?",
    "Où est la bibliothèque ?": "Où est la bibliothèque ?",
    "Write a Python function that adds two numbers.": "Schreibe eine Python-Funktion, die zwei Zahlen addiert.",
    "```python\ndef add(a, b):\n    # return the sum\n    return a + b\n```": (
        "```python\ndef add(a, b):\n    # gib die Summe zurück\n    return a + b\n```"
    ),
    "The city was founded long ago and grew quickly during the industrial age.": (
        "Die Stadt wurde vor langer Zeit gegründet und wuchs im Industriezeitalter schnell."
    ),
    "Which gas do plants absorb from the air for photosynthesis?": (
        "Welches Gas nehmen Pflanzen für die Photosynthese aus der Luft auf?"
    ),
    "Oxygen": "Sauerstoff",
    "Carbon dioxide": "Kohlendioxid",
    "Nitrogen": "Stickstoff",
    "Helium": "Helium",
    "Baking cookies": "Kekse backen",
    "A woman is mixing dough in a large bowl.": "Eine Frau mischt Teig in einer großen Schüssel.",
    "she": "sie",
    "puts the tray into the oven.": "schiebt das Blech in den Ofen.",
    "throws the bowl out of the window.": "wirft die Schüssel aus dem Fenster.",
    "starts singing about the weather.": "beginnt, über das Wetter zu singen.",
    "adds chocolate chips and stirs again.": "gibt Schokostückchen dazu und rührt erneut um.",
}
for i in range(10):
    DE[f"Describe the history of the city number {i} in two sentences."] = (
        f"Beschreibe die Geschichte der Stadt Nummer {i} in zwei Sätzen."
    )


def row(row_id, source, instruction, inp="", output=""):
    return {"id": row_id, "source": source, "instruction": instruction, "input": inp, "output": output}


def instruction_rows():
    rows = [
        row("seed-0", "seed", "Give three tips for staying healthy.", "", next(k for k in DE if k.startswith("Eat"))),
        row(
            "pool-0", "pool", "Translate the sentence into French.", "Where is the library?", "Où est la bibliothèque ?"
        ),
        row(
            "pool-1",
            "pool",
            "Write a Python function that adds two numbers.",
            "",
            "```python\ndef add(a, b):\n    # return the sum\n    return a + b\n```",
        ),
    ]
    city = "The city was founded long ago and grew quickly during the industrial age."
    for i in range(10):
        rows.append(
            row(f"gen-{i:05d}", "generated", f"Describe the history of the city number {i} in two sentences.", "", city)
        )
    return rows


def sent_record(messages):
    content = messages[0]["content"]
    return json.loads(content[content.index("\n\n{") + 2 :])


def german(messages, attempt):
    return json.dumps({k: DE[v] for k, v in sent_record(messages).items()}, ensure_ascii=False)


# -- prompt ----------------------------------------------------------------------------------------------------------
def test_messages_carry_fig2_requirements_and_the_json_object():
    record = {"instruction": "Give three tips.", "input": "", "output": "Sleep."}
    messages = build_messages(record, "Vietnamese")
    assert len(messages) == 1 and messages[0]["role"] == "user"
    text = messages[0]["content"]
    low = text.lower()
    assert "into Vietnamese" in text
    for phrase in ("every key", "in english", "code", "comments", "explanations", "native speakers", "terminology"):
        assert phrase in low, phrase
    assert "only a json object" in low
    assert sent_record(messages) == record


# -- validator ---------------------------------------------------------------------------------------------------------
SOURCE = {
    "instruction": "Give three tips for staying healthy.",
    "output": "Eat a balanced diet, exercise regularly and sleep at least seven hours every night.",
}
GOOD_DE = {k: DE[v] for k, v in SOURCE.items()}


def reason_of(parse, answer):
    with pytest.raises(ParseError) as err:
        parse(answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False))
    return str(err.value)


def test_validator_accepts_good_translations_in_various_wrappers():
    parse = make_validator(SOURCE, "de")
    good = json.dumps(GOOD_DE, ensure_ascii=False)
    assert parse(good) == GOOD_DE
    assert parse("```json\n" + good + "\n```") == GOOD_DE
    assert parse("Hier ist die Übersetzung:\n" + good) == GOOD_DE


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ("Ich kann das nicht übersetzen.", "not_json"),
        (["Gib drei Tipps"], "not_object"),
        ({"Anweisung": GOOD_DE["instruction"], "output": GOOD_DE["output"]}, "wrong_keys"),
        ({**GOOD_DE, "extra": "x"}, "wrong_keys"),
        ({"instruction": GOOD_DE["instruction"], "output": 3}, "not_string"),
        ({"instruction": GOOD_DE["instruction"], "output": "  "}, "empty_value"),
        (SOURCE, "untranslated"),
        ({"instruction": GOOD_DE["instruction"], "output": SOURCE["output"]}, "untranslated"),
        (
            {
                "instruction": "Please provide three suggestions for remaining healthy.",
                "output": "Have a balanced diet, do sports regularly and get seven hours of sleep each night.",
            },
            "left_in_english",
        ),
    ],
)
def test_validator_rejects_with_named_reasons(answer, code):
    assert reason_of(make_validator(SOURCE, "de"), answer).startswith(code + ":")


def test_code_must_stay_but_comments_may_be_translated():
    source = {
        "instruction": "Explain what the function `add` returns for two integers.",
        "output": "It returns their sum:\n```python\ndef add(a, b):\n    # return the sum\n    return a + b\n```",
    }
    parse = make_validator(source, "de", use_langid=False)
    ok = {
        "instruction": "Erkläre, was die Funktion `add` für zwei ganze Zahlen zurückgibt.",
        "output": "Sie gibt ihre Summe zurück:\n```python\ndef add(a, b):\n    # gib die Summe zurück\n    return a + b\n```",
    }
    assert parse(json.dumps(ok, ensure_ascii=False)) == ok
    changed_code = {**ok, "output": ok["output"].replace("return a + b", "return a - b")}
    assert reason_of(parse, changed_code).startswith("code_changed:")
    changed_inline = {**ok, "instruction": ok["instruction"].replace("`add`", "`addiere`")}
    assert reason_of(parse, changed_inline).startswith("code_changed:")
    lost_fence = {**ok, "output": "Sie gibt ihre Summe zurück: def add(a, b): return a + b"}
    assert reason_of(parse, lost_fence).startswith("code_changed:")


def test_script_and_language_checks_per_target():
    src = {"instruction": "Give three tips for staying healthy and explain each of them briefly."}
    ru = {"instruction": "Дайте три совета, как оставаться здоровым, и кратко объясните каждый из них."}
    hi = {"instruction": "स्वस्थ रहने के लिए तीन सुझाव दीजिए और हर एक को संक्षेप में समझाइए।"}
    zh = {"instruction": "请给出三个保持健康的建议，并简要解释每一个。"}
    assert make_validator(src, "ru")(json.dumps(ru, ensure_ascii=False)) == ru
    assert make_validator(src, "hi")(json.dumps(hi, ensure_ascii=False)) == hi
    assert make_validator(src, "zh")(json.dumps(zh, ensure_ascii=False)) == zh
    assert reason_of(make_validator(src, "ru"), {"instruction": GOOD_DE["instruction"] * 2}).startswith("wrong_script")
    assert reason_of(make_validator(src, "hi"), zh).startswith("wrong_script")
    # py3langid labels this Croatian sentence Serbian; close neighbours count as the target.
    hr = {"instruction": "Dobar dan, kako ste danas? Ovo je rečenica o zdravlju i tri savjeta."}
    assert make_validator(src, "hr")(json.dumps(hr, ensure_ascii=False)) == hr
    assert reason_of(make_validator(src, "vi"), hr).startswith("wrong_language")
    # Without py3langid an English paraphrase cannot be told from German.
    english = {"instruction": "Please provide three suggestions for remaining healthy, with short reasons."}
    assert make_validator(src, "de", use_langid=False)(json.dumps(english)) == english


def test_identical_short_or_foreign_values_are_allowed():
    source = {"instruction": "Translate the sentence into French.", "output": "Où est la bibliothèque ?"}
    answer = {"instruction": "Übersetze den Satz ins Französische.", "output": "Où est la bibliothèque ?"}
    assert make_validator(source, "de")(json.dumps(answer, ensure_ascii=False)) == answer
    options = {"instruction": DE["Which gas do plants absorb from the air for photosynthesis?"], "option_d": "Helium"}
    src = {"instruction": "Which gas do plants absorb from the air for photosynthesis?", "option_d": "Helium"}
    assert make_validator(src, "de")(json.dumps(options, ensure_ascii=False)) == options


# -- instructions ------------------------------------------------------------------------------------------------------
def test_translate_instructions_rows_splits_and_reasks(tmp_path):
    def responder(messages, attempt):
        record = sent_record(messages)
        if record["instruction"].endswith("number 3 in two sentences.") and len(messages) == 1:
            return json.dumps(record)  # left in English the first time
        if record["instruction"].endswith("number 4 in two sentences."):
            return json.dumps({"instruction": "Beschreibe etwas.", "ausgabe": "Etwas."})  # wrong keys, always
        return german(messages, attempt)

    teacher = FakeTeacher(responder)
    rows = instruction_rows()
    out, metrics = translate_instructions(teacher, rows, "de", small_config(TranslateConfig, rank_fraction=0.4))
    assert [r["id"] for r in out] == [r["id"] for r in rows]  # ids (and order) survive translation
    by_id = {r["id"]: r for r in out}
    assert by_id["seed-0"]["split"] == "sft" and by_id["pool-1"]["split"] == "sft"
    gen_splits = [r["split"] for r in out if r["source"] == "generated"]
    assert gen_splits.count("rank") == 4 and gen_splits.count("ppo") == 6
    assert by_id["pool-0"]["input"] == "Wo ist die Bibliothek?" and by_id["seed-0"]["input"] == ""
    assert by_id["pool-1"]["output"].endswith("# gib die Summe zurück\n    return a + b\n```")
    assert by_id["gen-00001"]["en_instruction"] == rows[4]["instruction"]

    retried = by_id["gen-00003"]
    assert retried["status"] == "ok" and retried["attempts"] == 2
    reask = next(m for m, _ in teacher.calls if len(m) == 3)
    assert reask[1]["role"] == "assistant" and "untranslated" in reask[2]["content"]

    failed = by_id["gen-00004"]
    assert failed["status"] == "rejected" and failed["reason"].startswith("wrong_keys")
    assert failed["instruction"] is None and failed["output"] is None and "ausgabe" in failed["raw"]
    assert failed["attempts"] == 3

    assert metrics["accepted"] == 12 and metrics["rejected"] == 1
    assert metrics["rejected_by_reason"] == {"wrong_keys": 1}
    assert metrics["acceptance_rate"] == round(12 / 13, 4)
    assert sum(v["ok"] + v["rejected"] for v in metrics["splits"].values()) == 13
    path = tmp_path / "t.parquet"
    write_parquet(out, path, schemas.TRANSLATIONS)
    assert read_rows(path, schemas.TRANSLATIONS) == out


def test_splits_are_seeded_language_independent_and_never_empty():
    rows = instruction_rows()
    a = assign_splits(rows, small_config(TranslateConfig, seed=1))
    assert a == assign_splits(list(reversed(rows)), small_config(TranslateConfig, seed=1))
    assert a != assign_splits(rows, small_config(TranslateConfig, seed=2))
    tiny = assign_splits(rows, small_config(TranslateConfig, limit=3))
    assert sorted(tiny.values()) == ["ppo", "rank", "sft"]
    small = assign_splits(rows, small_config(TranslateConfig, limit=5, rank_fraction=0.1))
    assert sorted(set(small.values())) == ["ppo", "rank", "sft"] and len(small) == 5
    only_gen = assign_splits(rows[3:5], small_config(TranslateConfig, rank_fraction=0.9))
    assert sorted(only_gen.values()) == ["ppo", "rank"]


def test_bad_rows_and_config_are_named():
    rows = instruction_rows()
    rows[2] = {**rows[2], "source": "web"}
    with pytest.raises(DataError, match="source 'web' is invalid"):
        translate_instructions(FakeTeacher(german), rows, "de", small_config(TranslateConfig))
    with pytest.raises(ConfigError, match="translate.rank_fraction"):
        small_config(TranslateConfig, rank_fraction=1.0)


# -- evaluation sets -----------------------------------------------------------------------------------------------------
def test_translate_eval_multiple_choice_keeps_ids_and_drops_rejected(tmp_path):
    records = [
        {
            "id": "Mercury_1",
            "answer": "B",
            "instruction": "Which gas do plants absorb from the air for photosynthesis?",
            "option_a": "Oxygen",
            "option_b": "Carbon dioxide",
            "option_c": "Nitrogen",
            "option_d": "Helium",
            "option_e": None,
        },
        {
            "id": "Mercury_2",
            "answer": "A",
            "instruction": "What is the boiling point of water at sea level in degrees Celsius?",
            "option_a": "100",
            "option_b": "90",
            "option_c": None,
            "option_d": None,
            "option_e": None,
        },
    ]

    def responder(messages, attempt):
        record = sent_record(messages)
        if "boiling" in record["instruction"]:
            return json.dumps(record)  # stays English every time
        return german(messages, attempt)

    out, metrics = translate_eval(FakeTeacher(responder), "arc", records, "de", small_config(TranslateConfig))
    assert out == [
        {
            "id": "Mercury_1",
            "answer": "B",
            "instruction": "Welches Gas nehmen Pflanzen für die Photosynthese aus der Luft auf?",
            "option_a": "Sauerstoff",
            "option_b": "Kohlendioxid",
            "option_c": "Stickstoff",
            "option_d": "Helium",
            "option_e": None,
        }
    ]
    assert metrics["translated"] == 1 and metrics["dropped"] == 1
    assert metrics["dropped_by_reason"] == {"untranslated": 1}
    write_parquet(out, tmp_path / "arc.parquet", schemas.MULTIPLE_CHOICE)
    limited, metrics = translate_eval(
        FakeTeacher(responder), "mmlu", records, "de", small_config(TranslateConfig, eval_limit=1)
    )
    assert limited == out and metrics["records"] == 1


def test_translate_eval_hellaswag_rebuilds_ctx(tmp_path):
    record = {
        "ind": 4,
        "activity_label": "Baking cookies",
        "ctx_a": "A woman is mixing dough in a large bowl.",
        "ctx_b": "she",
        "ctx": "A woman is mixing dough in a large bowl. She",
        "endings": [
            "puts the tray into the oven.",
            "throws the bowl out of the window.",
            "starts singing about the weather.",
            "adds chocolate chips and stirs again.",
        ],
        "source_id": "activitynet~v_x",
        "split": "val",
        "split_type": "indomain",
        "label": "3",
    }
    teacher = FakeTeacher(german)
    out, metrics = translate_eval(teacher, "hellaswag", [record], "de", small_config(TranslateConfig))
    sent = sent_record(teacher.calls[0][0])
    assert sorted(sent) == ["activity_label", "ctx_a", "ctx_b", "ending_1", "ending_2", "ending_3", "ending_4"]
    (got,) = out
    assert got["ctx"] == "Eine Frau mischt Teig in einer großen Schüssel. Sie"
    assert got["endings"][3] == "gibt Schokostückchen dazu und rührt erneut um."
    assert (got["ind"], got["label"], got["source_id"], got["split"]) == (4, "3", "activitynet~v_x", "val")
    assert metrics["translated"] == 1
    write_parquet(out, tmp_path / "hs.parquet", schemas.HELLASWAG)
    with pytest.raises(DataError, match="hellaswag record 1: field 'endings'"):
        translate_eval(teacher, "hellaswag", [{**record, "endings": "x"}], "de", small_config(TranslateConfig))


# -- Table 2 ------------------------------------------------------------------------------------------------------------
def test_table2_lengths_by_source(tmp_path):
    from tiny import build_tokenizer

    tok = build_tokenizer(tmp_path)
    rows = [
        {"source": "pool", "status": "ok", "instruction": "Give three tips.", "input": "", "output": "Eat well."},
        {"source": "pool", "status": "ok", "instruction": "Fix it.", "input": "He go.", "output": "He goes."},
        {"source": "generated", "status": "ok", "instruction": "Name a gas.", "input": "", "output": "Helium"},
        {"source": "generated", "status": "rejected", "instruction": None, "input": None, "output": None},
    ]

    def n(text):
        return len(tok(text, add_special_tokens=False)["input_ids"])

    table = table2_lengths(rows, tok)
    assert table["pool"] == {
        "rows": 2,
        "prompt": round((n("Give three tips.") + n("Fix it.") + n("He go.")) / 2, 2),
        "response": round((n("Eat well.") + n("He goes.")) / 2, 2),
    }
    assert table["generated"] == {"rows": 1, "prompt": n("Name a gas."), "response": n("Helium")}


def test_report_mode_accepts_untranslated_answers_but_counts_them():
    import json as _json

    from fakes import FakeTeacher

    from okapi.translate import TranslateConfig, translate_instructions

    rows = [
        {
            "id": f"seed-{i}",
            "source": "seed",
            "instruction": f"Name three primary colours please {i}.",
            "input": "",
            "output": "Red, yellow and blue are the primary colours.",
        }
        for i in range(2)
    ] + [
        {
            "id": f"gen-{i}",
            "source": "generated",
            "instruction": f"Describe the water cycle in simple words {i}.",
            "input": "",
            "output": "Water evaporates, forms clouds and falls again as rain.",
        }
        for i in range(2)
    ]

    def echo_source(messages, attempt):  # a teacher that cannot translate: repeats the English JSON
        text = messages[0]["content"]
        return text[text.index("{") :]

    for mode, accepted in (("enforce", 0), ("report", 4)):
        cfg = small_config(TranslateConfig, language_checks=mode, max_attempts=2, structured=False)
        out, metrics = translate_instructions(FakeTeacher(echo_source), rows, "vi", cfg)
        assert metrics["accepted"] == accepted
        if mode == "report":
            assert metrics["language_warnings"] == {"untranslated": 4}
            assert all(r["status"] == "ok" and r["reason"].startswith("language_check_reported") for r in out)
            assert _json.dumps(out)  # rows stay serialisable
        else:
            assert metrics["rejected_by_reason"] == {"untranslated": 4}


def test_pool_fraction_sets_the_mix_under_a_limit():
    from okapi.translate import TranslateConfig, assign_splits

    rows = [{"id": f"s{i}", "source": "seed"} for i in range(55)] + [
        {"id": f"g{i}", "source": "generated"} for i in range(12)
    ]
    proportional = assign_splits(rows, small_config(TranslateConfig, limit=20))
    mixed = assign_splits(rows, small_config(TranslateConfig, limit=20, pool_fraction=0.4))
    count = lambda splits, name: sum(1 for v in splits.values() if v == name)  # noqa: E731
    assert count(proportional, "sft") > count(mixed, "sft") == 8
    assert count(mixed, "rank") == 5 and count(mixed, "ppo") == 7


# -- languages outside Table 1, and English ------------------------------------------------------------------------------
JA = {
    "instruction": "健康を保つための三つのヒントを教えてください。それぞれについて、カタカナのメモも短く書いてください。"
}


def test_japanese_mixes_han_hiragana_and_katakana():
    src = {"instruction": "Give three tips for staying healthy and write a short note about each of them."}
    assert make_validator(src, "ja")(json.dumps(JA, ensure_ascii=False)) == JA
    # Katakana alone is Japanese too (one of its three scripts); Chinese-only Han text passes the script check.
    kana = {"instruction": "ヘルシー ライフ ノート ヒント スリー ポイント メモ"}
    assert make_validator(src, "ja", use_langid=False)(json.dumps(kana, ensure_ascii=False)) == kana
    # Left in English, or written in Cyrillic: the script check names Japanese's three scripts.
    paraphrase = {"instruction": "Please provide three suggestions for remaining healthy, with short reasons."}
    assert "Hani / Hira / Kana script expected for Japanese" in reason_of(make_validator(src, "ja"), paraphrase)
    ru = {"instruction": "Дайте три совета, как оставаться здоровым, и кратко объясните каждый из них."}
    assert reason_of(make_validator(src, "ja"), ru).startswith("wrong_script")


def test_langid_check_that_cannot_run_is_counted():
    from okapi.params import Params

    # Hawaiian: CLDR knows it (name, Latin script), py3langid does not.
    Params({"languages": {"haw": {}, "xx": {"name": "Klingon", "script": "Latn", "langid": None}}})
    src = {"instruction": "Give three tips for staying healthy and explain each of them briefly please."}
    haw = {"instruction": "E hāʻawi mai i ʻekolu manaʻo no ka noho olakino ʻana a wehewehe pōkole i kēlā me kēia."}
    assert make_validator(src, "haw")(json.dumps(haw, ensure_ascii=False)) == haw

    def hawaiian(messages, attempt):
        return json.dumps({k: "Aloha mai kākou i kēia lā " + str(i) for i, k in enumerate(sent_record(messages))})

    rows = [r for r in instruction_rows() if "```" not in r["output"]][:4]  # no code block to keep
    out, metrics = translate_instructions(FakeTeacher(hawaiian), rows, "haw", TranslateConfig())
    assert metrics["accepted"] == 4
    assert metrics["language_checks_run"] == {"scripts": ["Latn"], "langid": None, "not_run": {"langid_unavailable": 4}}
    _, metrics = translate_instructions(FakeTeacher(hawaiian), rows, "xx", TranslateConfig(langid=False))
    assert metrics["language_checks_run"]["not_run"] == {}  # switched off by the user, not a gap of the library
    _, metrics = translate_instructions(FakeTeacher(german), rows, "de", TranslateConfig())
    assert metrics["language_checks_run"] == {"scripts": ["Latn"], "langid": "de", "not_run": {}}


def test_english_passes_through_without_a_teacher_request():
    def no_request(messages, attempt):
        raise AssertionError("English must not be sent to the teacher")

    teacher = FakeTeacher(no_request)
    rows = instruction_rows()
    out, metrics = translate_instructions(teacher, rows, "en", TranslateConfig(rank_fraction=0.4))
    assert teacher.calls == []
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    for r, src in zip(out, rows, strict=True):
        assert (r["instruction"], r["input"], r["output"]) == (src["instruction"], src["input"], src["output"])
        assert r["status"] == "ok" and r["reason"].startswith("source_language:") and r["attempts"] == 0
    assert metrics["accepted"] == 13 and metrics["answers"] == 0
    assert metrics["language_checks_run"] == {"passthrough": 13, "not_run": {}}
    # Same splits as any target language, so English models train on the same examples.
    assert {r["id"]: r["split"] for r in out} == assign_splits(rows, TranslateConfig(rank_fraction=0.4))
    records = [
        {
            "id": "Mercury_1",
            "answer": "B",
            "instruction": "Which gas do plants absorb from the air for photosynthesis?",
            "option_a": "Oxygen",
            "option_b": "Carbon dioxide",
            "option_c": None,
            "option_d": None,
            "option_e": None,
        }
    ]
    out, metrics = translate_eval(teacher, "arc", records, "en", TranslateConfig())
    assert out == records and metrics["translated"] == 1 and teacher.calls == []
