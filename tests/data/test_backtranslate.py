"""Back-translation score (okapi.backtranslate) with a fake teacher: requests, chrF scores, rejections, metrics."""

from __future__ import annotations

import json

from fakes import FakeTeacher

from okapi.backtranslate import back_translate, back_translation_requests, chrf, distribution
from okapi.translate import TranslateConfig

SOURCES = {
    "good": ("Give three tips for staying healthy.", "", "Eat well, sleep enough and exercise every day."),
    "bad": ("Name the capital city of France.", "", "The capital of France is Paris."),
    "broken": ("Describe a sunny day at the beach.", "", "Warm sand, blue water and gulls."),
    "with_input": ("Summarise the text.", "Cats sleep a lot during the day.", "Cats sleep much of the day."),
}


def _rows() -> list[dict]:
    rows = []
    for key, (ins, inp, out) in SOURCES.items():
        rows.append(
            {
                "id": key,
                "status": "ok",
                "reason": None,
                "instruction": f"[vi] {ins}",
                "input": f"[vi] {inp}" if inp else "",
                "output": f"[vi] {out}",
                "en_instruction": ins,
                "en_input": inp,
                "en_output": out,
            }
        )
    rows.append({**rows[0], "id": "rejected-before", "status": "rejected", "instruction": None})
    return rows


def responder(messages, attempt):
    body = messages[0]["content"]
    obj = json.loads(body[body.index("{") :])
    if "France" in body or "capital" in body:
        return json.dumps({k: "Something about a completely different subject." for k in obj})
    if "beach" in body:
        return "I cannot do that."
    return json.dumps({k: v.removeprefix("[vi] ") for k, v in obj.items()})


def test_requests_one_per_accepted_row_with_the_translated_fields():
    cfg = TranslateConfig(max_tokens=256)
    requests = back_translation_requests(_rows(), "vi", cfg)
    assert [r.key for r in requests] == ["good", "bad", "broken", "with_input"]
    body = requests[3].messages[0]["content"]
    assert "written in Vietnamese" in body and "English" in body
    sent = json.loads(body[body.index("{") :])
    assert sent == {
        "instruction": "[vi] Summarise the text.",
        "input": "[vi] Cats sleep a lot during the day.",
        "output": "[vi] Cats sleep much of the day.",
    }
    assert requests[0].schema["required"] == ["instruction", "output"]  # empty input: not sent, not expected back
    assert requests[0].max_tokens == 256
    assert back_translation_requests(_rows(), "vi", TranslateConfig(structured=False))[0].schema is None


def test_scores_reject_below_threshold_and_keep_unscored():
    rows = _rows()
    teacher = FakeTeacher(responder, max_attempts=2)
    metrics = back_translate(teacher, rows, "vi", TranslateConfig(min_back_score=40.0))
    by_id = {r["id"]: r for r in rows}
    assert by_id["good"]["back_score"] == 100.0 and by_id["good"]["status"] == "ok"
    assert by_id["with_input"]["back_score"] == 100.0
    assert by_id["bad"]["back_score"] < 40 and by_id["bad"]["status"] == "rejected"
    assert by_id["bad"]["reason"].startswith("back_translation: chrF")
    assert "translate.min_back_score = 40.0" in by_id["bad"]["reason"]
    assert by_id["broken"]["status"] == "ok" and "back_score" not in by_id["broken"]
    assert metrics["requests"] == 4 and metrics["scored"] == 3 and metrics["rejected"] == 1
    assert metrics["unscored_by_reason"] == {"not_json": 1}
    assert metrics["scores"]["count"] == 3 and metrics["scores"]["max"] == 100.0
    assert sum(metrics["scores"]["histogram"].values()) == 3 and metrics["scores"]["histogram"]["90-100"] == 2


def test_chrf_and_distribution():
    assert chrf("the cat sat on the mat", "the cat sat on the mat") == 100.0
    assert 0 < chrf("the cat sat on a mat", "the cat sat on the mat") < 100
    assert distribution([]) == {"count": 0}
    d = distribution([10.0, 20.0, 30.0, 40.0, 100.0])
    assert d["median"] == 30.0 and d["mean"] == 40.0 and d["histogram"]["90-100"] == 1 and d["histogram"]["10-20"] == 1
