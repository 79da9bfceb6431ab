"""English benchmark sources: hub records converted into Okapi's shapes, local files otherwise."""

from __future__ import annotations

import sys
import types

import pytest

from okapi.config import ConfigError, from_dict
from okapi.eval_sources import from_hub, load_sources, parse_hub_spec
from okapi.translate import TranslateConfig

ARC = [
    {
        "id": "Mercury_1",
        "question": "Which is a metal?",
        "answerKey": "2",
        "choices": {"text": ["wood", "iron", "glass"], "label": ["1", "2", "3"]},
    },
    {
        "id": "Mercury_2",
        "question": "What do plants need?",
        "answerKey": "D",
        "choices": {"text": ["salt", "sand", "oil", "light", "ice"], "label": ["A", "B", "C", "D", "E"]},
    },
]
MMLU = [{"question": "2 + 2 = ?", "subject": "math", "choices": ["3", "4", "5", "6"], "answer": 1}]
HS = [
    {
        "ind": 7,
        "activity_label": "Cooking",
        "ctx_a": "A man cracks eggs.",
        "ctx_b": "he",
        "ctx": "A man cracks eggs. He",
        "endings": ["a", "b", "c", "d"],
        "source_id": "x",
        "split": "val",
        "split_type": "indomain",
        "label": "2",
    }
]


@pytest.fixture
def fake_hub(monkeypatch):
    calls = []
    data = {"allenai/ai2_arc": ARC, "cais/mmlu": MMLU, "Rowan/hellaswag": HS}

    def load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        return data[name]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


def test_hub_records_become_okapi_records(fake_hub):
    arc = from_hub("arc", "allenai/ai2_arc:ARC-Challenge@test")
    assert fake_hub[0] == ("allenai/ai2_arc", "ARC-Challenge", "test")
    assert arc[0] == {
        "id": "Mercury_1",
        "answer": "B",
        "instruction": "Which is a metal?",
        "option_a": "wood",
        "option_b": "iron",
        "option_c": "glass",
        "option_d": None,
        "option_e": None,
    }
    assert arc[1]["answer"] == "D" and arc[1]["option_e"] == "ice"
    mmlu = from_hub("mmlu", "cais/mmlu:all@test")
    assert mmlu[0]["answer"] == "B" and mmlu[0]["id"] == "math/0" and mmlu[0]["option_d"] == "6"
    hs = from_hub("hellaswag", "Rowan/hellaswag@validation")
    assert hs[0]["label"] == "2" and hs[0]["endings"] == ["a", "b", "c", "d"] and hs[0]["ind"] == 7


def test_local_files_fill_in_what_the_hub_does_not_name(fake_hub, tmp_path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "data/eval_sources"
    sources = load_sources(root, {"mmlu": "cais/mmlu:all@test"})
    assert sources["mmlu"][0]["id"] == "math/0"
    assert len(sources["arc"]) >= 20 and len(sources["hellaswag"]) >= 20


def test_bad_specs_name_the_key():
    with pytest.raises(ConfigError, match="translate.eval_sources.arc"):
        parse_hub_spec("not a spec", "translate.eval_sources.arc")
    with pytest.raises(ConfigError, match="translate.eval_sources.squad"):
        from_dict(TranslateConfig, {"eval_sources": {"squad": "rajpurkar/squad@train"}}, "translate")
