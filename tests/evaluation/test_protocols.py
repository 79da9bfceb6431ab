"""okapi.protocols: each protocol's record -> (query, continuations) shapes and shot table, without a model."""

from __future__ import annotations

import sys
import types

import pytest

from okapi.config import ConfigError, from_dict
from okapi.eval_sources import check_sources, load_sources
from okapi.protocols import PROTOCOLS, doc_function, shot_splits, shots_for
from okapi.translate import TranslateConfig

ARC = {
    "id": "x",
    "answer": "C",
    "instruction": " Why [step] rain? ",
    "option_a": "sun",
    "option_b": "clouds [title] wet",
    "option_c": "wind",
    "option_d": None,
    "option_e": None,
}
MMLU = {**ARC, "answer": "D", "option_d": "all"}


def test_arc_paper_keeps_the_text_okapi_task_cleans_it():
    paper = doc_function("okapi_paper", "arc")(ARC)
    assert paper == {
        "query": "Question:  Why [step] rain? \nAnswer:",
        "choices": ["sun", "clouds [title] wet", "wind"],
        "gold": 2,
    }
    okapi = doc_function("lm_eval_okapi", "arc")(ARC)
    assert okapi["query"] == "Question: Why rain?\nAnswer:" and okapi["choices"][1] == "clouds. wet"


def test_mmlu_paper_lists_choices_and_scores_their_texts():
    paper = doc_function("okapi_paper", "mmlu")(MMLU)
    assert (
        paper["query"]
        == "Question:  Why [step] rain? \nChoices:\nA. sun\nB. clouds [title] wet\nC. wind\nD. all\nAnswer:"
    )
    assert paper["choices"] == ["sun", "clouds [title] wet", "wind", "all"] and paper["gold"] == 3
    assert doc_function("leaderboard", "mmlu")(MMLU)["choices"] == ["A", "B", "C", "D"]


def test_shot_table_and_the_splits_to_translate():
    assert {p: {b: s.shots for b, s in table.items()} for p, table in PROTOCOLS.items()} == {
        "lm_eval_okapi": {"arc": 0, "hellaswag": 0, "mmlu": 0},
        "okapi_paper": {"arc": 25, "hellaswag": 0, "mmlu": 25},
        "leaderboard": {"arc": 25, "hellaswag": 10, "mmlu": 5},
    }
    assert shot_splits("okapi_paper", ["arc", "hellaswag", "mmlu"]) == {"arc": "train", "mmlu": "dev"}
    assert shot_splits("lm_eval_okapi", ["arc", "hellaswag", "mmlu"]) == {}
    assert shot_splits("lm_eval_okapi", ["arc", "hellaswag"], {"hellaswag": 3}) == {"hellaswag": "train"}
    assert shots_for("leaderboard", "mmlu", {"arc": 1}) == 5
    with pytest.raises(ConfigError, match="evaluate.protocol = 'x' is invalid; allowed: okapi_paper"):
        shots_for("x", "arc")


def test_shot_split_sources_come_from_the_hub_key_or_a_local_file(monkeypatch, tmp_path):
    calls = []
    arc = [{"id": "t1", "question": "Q?", "answerKey": "A", "choices": {"text": ["a", "b"], "label": ["A", "B"]}}]

    def load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        return arc

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    for bench in ("arc", "mmlu", "hellaswag"):
        (tmp_path / f"{bench}.jsonl").write_text("")
    (tmp_path / "mmlu_dev.jsonl").write_text('{"id": "d1"}\n')
    hub = {"arc_train": "allenai/ai2_arc:ARC-Challenge@train"}
    sources = load_sources(tmp_path, hub, shot_keys=["arc_train", "mmlu_dev"])
    assert calls == [("allenai/ai2_arc", "ARC-Challenge", "train")]
    assert sources["arc_train"][0]["id"] == "t1" and sources["mmlu_dev"] == [{"id": "d1"}]
    with pytest.raises(ConfigError, match=r"set translate.eval_sources.hellaswag_train \(e.g. Rowan/hellaswag@train\)"):
        check_sources(tmp_path, hub, ["hellaswag_train"])
    cfg = from_dict(TranslateConfig, {"eval_sources": {"mmlu_dev": "cais/mmlu:all@dev"}}, "translate")
    assert cfg.eval_sources == {"mmlu_dev": "cais/mmlu:all@dev"}
    with pytest.raises(ConfigError, match="translate.eval_sources.mmlu_train"):
        from_dict(TranslateConfig, {"eval_sources": {"mmlu_train": "cais/mmlu:all@dev"}}, "translate")


def test_every_report_table_names_its_protocol(tmp_path):
    from okapi.report import build_report

    def result(protocol, shots):
        return {"acc": 0.5, "acc_norm": 0.25, "n": 4, "protocol": protocol, "num_fewshot": shots}

    results = {
        lang: {
            "base": {"arc": result("okapi_paper", 25), "hellaswag": result("okapi_paper", 0)},
            "rlhf": {"arc": result("okapi_paper", 25), "hellaswag": result("okapi_paper", 0)},
        }
        for lang in ("vi", "es")
    }
    results["es"]["bloomz"] = {"arc": result("lm_eval_okapi", 0)}  # a mixed table says so
    build_report(results, tmp_path, tmp_path / "summary.json", ["base", "rlhf"])
    arc, hellaswag = (tmp_path / "arc.md").read_text(), (tmp_path / "hellaswag.md").read_text()
    assert arc.rstrip().endswith("Protocol: lm_eval_okapi, 0-shot; okapi_paper, 25-shot (okapi/protocols.py).")
    assert hellaswag.rstrip().endswith("Protocol: okapi_paper, 0-shot (okapi/protocols.py).")
    del results["vi"]["base"]["arc"]["protocol"]  # results written before protocols existed
    build_report(results, tmp_path, tmp_path / "summary.json", ["base", "rlhf"])
    assert "not recorded, 25-shot" in (tmp_path / "arc.md").read_text()


def test_paper_profile_dry_check_needs_no_teacher_model_or_hub(monkeypatch, tmp_path, capsys):
    from pathlib import Path

    import yaml

    from okapi.check_params import main

    root = Path(__file__).resolve().parents[2]
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    paper = root / "configs/paper/params.yaml"
    assert main(["--params", str(paper), "--eval-sources", str(root / "data/eval_sources")]) == 0
    out = capsys.readouterr().out
    assert out.count("evaluate okapi_paper (arc 25-shot, hellaswag 0-shot, mmlu 25-shot)") == 26
    assert "shot splits from the teacher: arc_train, mmlu_dev" in out
    # Without the ARC train source the profile would draw its shots from nowhere: one sentence, exit code 2.
    raw = yaml.safe_load(paper.read_text())
    del raw["translate"]["eval_sources"]["arc_train"]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    assert main(["--params", str(tmp_path / "p.yaml"), "--eval-sources", str(root / "data/eval_sources")]) == 2
    assert "set translate.eval_sources.arc_train" in capsys.readouterr().err
    # With the release's eval files, ARC train and MMLU dev come from it; leaderboard HellaSwag shots cannot.
    raw["released"].update(use=True)
    raw["evaluate"].update(protocol="leaderboard")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    assert main(["--params", str(tmp_path / "p.yaml")]) == 2
    assert "set evaluate.num_fewshot.hellaswag: 0" in capsys.readouterr().err
    raw["evaluate"].update(num_fewshot={"hellaswag": 0})
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    assert main(["--params", str(tmp_path / "p.yaml")]) == 0
    assert (
        "leaderboard (arc 25-shot, hellaswag 0-shot, mmlu 5-shot); shot splits from the release"
        in capsys.readouterr().out
    )
