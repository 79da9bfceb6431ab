"""Evaluation protocols end to end on files in the layout of Okapi's release: okapi.import_eval, then
okapi.evaluate --protocol ... --log-samples, and what the logged contexts and continuations look like."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

import okapi.evaluate as ev
from okapi.config import ConfigError
from okapi.import_eval import import_benchmark
from okapi.io import DataError
from okapi.protocols import hellaswag_doc

LANG = "vi"
SHOTS = 25  # the authors' ARC and MMLU shots


def _mc(prefix: str, i: int, answer: str, options: int = 4) -> dict:
    # Short ASCII texts keep 25-shot contexts cheap for the tiny model; the prefix tells the splits apart.
    rec = {"id": f"{prefix}{i}", "answer": answer, "instruction": f"{prefix} {i}?"}
    for j, letter in enumerate("abcde"):
        rec[f"option_{letter}"] = f"{letter}{i}" if j < options else None
    return rec


def _hs(i: int) -> dict:
    return {
        "ind": i,
        "activity_label": "Cooking [title] Fry eggs" if i == 0 else "Biking",
        "ctx_a": f"A cook cracks {i} eggs.",
        "ctx_b": "THEN he" if i == 0 else "",
        "ctx": "unused",
        "endings": [f" fries them [step] {i}.", "sings.", "naps.", "hops."],
        "source_id": f"s{i}",
        "split": "val",
        "split_type": "indomain",
        "label": str(i % 4),
    }


def write_release(root: Path) -> Path:
    """okapi-eval/m_{arc,mmlu,hellaswag}/<lang>_<split>.json as the release names them (fields as in the release)."""
    files = {
        "m_arc": {
            "train": [_mc("Train", i, "ABC"[i % 3], 3 + i % 3) for i in range(30)],
            "validation": [_mc("Valid", i, "A") for i in range(3)],
            "test": [_mc("Test", i, "BD"[i % 2]) for i in range(4)],
        },
        "m_mmlu": {
            "dev": [_mc("Dev", i, "ABCD"[i % 4]) for i in range(30)],
            "val": [_mc("Val", i, "A") for i in range(3)],
            "test": [_mc("Exam", i, "CA"[i % 2]) for i in range(4)],
        },
        "m_hellaswag": {"val": [_hs(i) for i in range(4)]},
    }
    for folder, splits in files.items():
        for split, records in splits.items():
            path = root / "okapi-eval" / folder / f"{LANG}_{split}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(records), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    root = write_release(tmp_path_factory.mktemp("release"))
    out = tmp_path_factory.mktemp("eval") / LANG
    for bench, folder in (("arc", "m_arc"), ("mmlu", "m_mmlu"), ("hellaswag", "m_hellaswag")):
        import_benchmark(bench, LANG, root / "okapi-eval" / folder, out)
    return out


def run_cli(model: Path, data: Path, bench: str, tmp: Path, *extra: str) -> tuple[dict, list[dict]]:
    samples, out = tmp / f"{bench}.jsonl", tmp / f"{bench}.json"
    args = ["--model", str(model), "--benchmark", bench, "--lang", LANG, "--data", str(data)]
    args += ["--log-samples", str(samples), "--out", str(out), *extra]
    assert ev.main(args) == 0
    docs = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines()]
    return json.loads(out.read_text()), docs


@pytest.fixture(scope="module")
def paper_runs(imported, tiny_model_dir, tmp_path_factory) -> dict[str, tuple[dict, list[dict]]]:
    tmp = tmp_path_factory.mktemp("paper")
    return {
        b: run_cli(tiny_model_dir, imported, b, tmp, "--protocol", "okapi_paper", "--limit", "2")
        for b in ("arc", "mmlu", "hellaswag")
    }


def _shots(context: str) -> list[str]:
    """The few-shot blocks of a context: everything before the last blank-line-separated block."""
    return context.split("\n\n")[:-1]


def _check_doc_fields(doc: dict) -> None:
    assert set(doc) == {"doc_id", "id", "context", "continuations", "gold", "acc", "acc_norm", "loglikelihoods"}
    lls = doc["loglikelihoods"]
    assert len(lls) == len(doc["continuations"])
    # The per-document correctness is the argmax of what the model scored (raw, then per character).
    assert doc["acc"] == float(max(range(len(lls)), key=lambda i: lls[i]) == doc["gold"])
    per_char = [ll / len(c.lstrip(" ")) for ll, c in zip(lls, doc["continuations"], strict=True)]
    assert doc["acc_norm"] == float(max(range(len(lls)), key=lambda i: per_char[i]) == doc["gold"])


def test_import_keeps_the_release_splits(imported):
    names = sorted(p.name for p in imported.glob("*.parquet"))
    assert names == [
        "arc_test.parquet",
        "arc_train.parquet",
        "arc_validation.parquet",
        "hellaswag_val.parquet",
        "mmlu_dev.parquet",
        "mmlu_test.parquet",
        "mmlu_val.parquet",
    ]


def test_okapi_paper_arc_25_shots_from_train_whole_choice_texts(paper_runs):
    result, docs = paper_runs["arc"]
    assert result["protocol"] == "okapi_paper" and result["num_fewshot"] == SHOTS and result["n"] == 2
    assert [d["doc_id"] for d in docs] == [0, 1] and [d["id"] for d in docs] == ["Test0", "Test1"]
    for doc in docs:
        _check_doc_fields(doc)
        i = doc["doc_id"]
        assert doc["context"].endswith(f"\n\nQuestion: Test {i}?\nAnswer:")
        shots = _shots(doc["context"])
        assert len(shots) == SHOTS and len(set(shots)) == SHOTS  # 25 distinct examples
        for shot in shots:
            # The authors' shot: query, a space, the gold option's whole text (from the train split only).
            m = re.fullmatch(r"Question: Train (\d+)\?\nAnswer: ([a-e])(\d+)", shot)
            assert m, shot
            n = int(m[1])
            assert m[2] == "abc"[n % 3] and m[3] == m[1]  # the gold option of train record n
        assert "Valid" not in doc["context"] and doc["context"].count("Test") == 1
        assert doc["continuations"] == [f" {letter}{i}" for letter in "abcd"]
        assert doc["gold"] == "ABCD".index("BD"[i % 2])
    assert result["acc"] == pytest.approx(sum(d["acc"] for d in docs) / 2)
    assert result["acc_norm"] == pytest.approx(sum(d["acc_norm"] for d in docs) / 2)


def test_okapi_paper_mmlu_25_shots_from_dev_choices_block_and_texts(paper_runs):
    result, docs = paper_runs["mmlu"]
    assert result["num_fewshot"] == SHOTS
    for doc in docs:
        _check_doc_fields(doc)
        i = doc["doc_id"]
        query = f"Question: Exam {i}?\nChoices:\nA. a{i}\nB. b{i}\nC. c{i}\nD. d{i}\nAnswer:"
        assert doc["context"].endswith("\n\n" + query)
        shots = _shots(doc["context"])
        assert len(shots) == SHOTS
        for shot in shots:
            m = re.fullmatch(
                r"Question: Dev (\d+)\?\nChoices:\nA\. a\1\nB\. b\1\nC\. c\1\nD\. d\1\nAnswer: ([a-d])\1", shot
            )
            assert m, shot
            assert m[2] == "abcd"[int(m[1]) % 4]
        assert "Val " not in doc["context"]
        # Whole choice texts, not letters: acc_norm is a different metric here.
        assert doc["continuations"] == [f" a{i}", f" b{i}", f" c{i}", f" d{i}"]
    # Drawn at random from dev (the authors' sampler), not the first 25 in file order.
    first = [int(re.match(r"Question: Dev (\d+)", s)[1]) for s in _shots(docs[0]["context"])]
    assert first != list(range(SHOTS))


def test_okapi_paper_hellaswag_is_zero_shot_with_the_cleanup(paper_runs):
    result, docs = paper_runs["hellaswag"]
    assert result["num_fewshot"] == 0
    _check_doc_fields(docs[0])
    assert docs[0]["context"] == "Cooking. Fry eggs: A cook cracks 0 eggs. Then he"
    assert docs[0]["continuations"] == [" fries them 0.", " sings.", " naps.", " hops."]
    assert docs[1]["context"] == "Biking: A cook cracks 1 eggs."
    assert [d["gold"] for d in docs] == [0, 1]


def test_lm_eval_okapi_and_an_override_on_the_same_files(imported, tiny_model_dir, tmp_path):
    result, docs = run_cli(tiny_model_dir, imported, "mmlu", tmp_path, "--limit", "1")
    assert result["protocol"] == "lm_eval_okapi" and result["num_fewshot"] == 0
    assert docs[0]["context"] == "Exam 0?\nA. a0\nB. b0\nC. c0\nD. d0\nAnswer:"
    assert docs[0]["continuations"] == [" A", " B", " C", " D"]
    result, docs = run_cli(tiny_model_dir, imported, "arc", tmp_path, "--protocol", "okapi_paper", "--num-fewshot", "3")
    assert result["num_fewshot"] == 3 and result["n"] == 4
    assert all(len(_shots(d["context"])) == 3 for d in docs)
    result, docs = run_cli(tiny_model_dir, imported, "mmlu", tmp_path, "--protocol", "leaderboard", "--limit", "1")
    shots = _shots(docs[0]["context"])
    # leaderboard MMLU: 5 shots, the first five of dev in file order, letters as targets.
    assert result["num_fewshot"] == 5 and [s.split("?")[0] for s in shots] == [f"Dev {n}" for n in range(5)]
    assert shots[1].endswith("Answer: B")


def test_leaderboard_hellaswag_takes_10_shots_from_a_train_split(imported, tiny_model_dir, tmp_path):
    from okapi.io import write_parquet
    from okapi.schemas import HELLASWAG

    data = tmp_path / LANG
    data.mkdir()
    (data / "hellaswag_val.parquet").write_bytes((imported / "hellaswag_val.parquet").read_bytes())
    train = [{**_hs(i), "ind": 100 + i, "activity_label": f"Train{i}", "split": "train"} for i in range(12)]
    write_parquet(train, data / "hellaswag_train.parquet", HELLASWAG)
    result, docs = run_cli(tiny_model_dir, data, "hellaswag", tmp_path, "--protocol", "leaderboard", "--limit", "1")
    assert result["protocol"] == "leaderboard" and result["num_fewshot"] == 10
    shots = _shots(docs[0]["context"])
    assert len(shots) == 10 and all(s.startswith("Train") for s in shots)
    # Each shot ends with its gold ending, cleaned like the continuations.
    for shot in shots:
        i = int(shot.split(":")[0].removeprefix("Train"))
        assert shot.endswith(" " + hellaswag_doc(train[i])["choices"][i % 4])
    assert docs[0]["context"].endswith("\n\nCooking. Fry eggs: A cook cracks 0 eggs. Then he")


def test_a_missing_shot_split_is_one_error_before_any_model_loads(imported, tmp_path, monkeypatch, capsys):
    data = tmp_path / LANG
    data.mkdir()
    for name in ("arc_test.parquet", "hellaswag_val.parquet"):
        (data / name).write_bytes((imported / name).read_bytes())
    monkeypatch.setattr(ev, "load_lm", lambda *a: pytest.fail("a model was loaded"))
    cfg = ev.EvalConfig(protocol="okapi_paper", benchmarks=["hellaswag", "arc"])
    with pytest.raises(DataError, match=r"arc_train\.parquet: missing; evaluate.protocol = okapi_paper draws 25"):
        ev.evaluate_models({"m": tmp_path}, LANG, data, cfg)
    # HellaSwag has no shot split in the release: 10 leaderboard shots need a translated train split.
    with pytest.raises(DataError, match=r"hellaswag_train\.parquet: missing.*num_fewshot.hellaswag: 0"):
        ev.evaluate_models({"m": tmp_path}, LANG, data, ev.EvalConfig(protocol="leaderboard", benchmarks=["hellaswag"]))
    args = ["--model", str(tmp_path), "--benchmark", "arc", "--lang", LANG, "--data", str(data)]
    code = ev.main([*args, "--protocol", "okapi_paper", "--out", str(tmp_path / "o.json")])
    err = capsys.readouterr().err
    assert code == 2 and "arc_train.parquet: missing" in err and "Traceback" not in err
    assert not (tmp_path / "o.json").exists()
    # Zero shots need no shot split.
    assert ev.plan_benchmark(data, "arc", cfg, num_fewshot=0).fewshot_file is None


def test_protocol_shots_and_overrides():
    cfg = ev.EvalConfig(protocol="okapi_paper")
    assert {b: cfg.shots(b) for b in ev.BENCHMARKS} == {"arc": 25, "hellaswag": 0, "mmlu": 25}
    cfg = ev.EvalConfig(protocol="leaderboard", num_fewshot={"mmlu": 0})
    assert {b: cfg.shots(b) for b in ev.BENCHMARKS} == {"arc": 25, "hellaswag": 10, "mmlu": 0}
    assert {b: ev.EvalConfig().shots(b) for b in ev.BENCHMARKS} == {"arc": 0, "hellaswag": 0, "mmlu": 0}
    with pytest.raises(ConfigError, match="evaluate.num_fewshot.arc"):
        ev.EvalConfig(num_fewshot={"arc": -1})


def test_stage_writes_per_document_samples_for_every_model_and_benchmark(imported, tiny_model_dir, tmp_path):
    import stages.evaluate as stage
    from okapi.params import read_params_file

    params = read_params_file(Path(__file__).resolve().parents[2] / "params.yaml")
    params["languages"] = {LANG: {}}
    params["evaluate"].update(protocol="okapi_paper", num_fewshot={"arc": 2, "mmlu": 2}, limit=2)
    (tmp_path / "params.yaml").write_text(json.dumps(params))
    out, samples = tmp_path / "m.json", tmp_path / "samples"
    argv = ["--params", str(tmp_path / "params.yaml"), "--lang", LANG, "--model", f"base={tiny_model_dir}"]
    stage.main(
        [*argv, "--model", f"sft={tiny_model_dir}", "--data", str(imported), "--out", str(out)]
        + [
            "--samples",
            str(samples),
        ]
    )
    metrics = json.loads(out.read_text())
    assert sorted(p.name for p in samples.iterdir()) == sorted(
        f"{m}_{b}.jsonl" for m in ("base", "sft") for b in ("arc", "hellaswag", "mmlu")
    )
    for model in ("base", "sft"):
        for bench in ("arc", "hellaswag", "mmlu"):
            docs = [json.loads(x) for x in (samples / f"{model}_{bench}.jsonl").read_text().splitlines()]
            assert len(docs) == 2 and metrics[model][bench]["protocol"] == "okapi_paper"
            assert metrics[model][bench]["acc"] == pytest.approx(sum(d["acc"] for d in docs) / 2)
            assert all(not math.isnan(ll) for d in docs for ll in d["loglikelihoods"])


# --- the teacher path translates the shot splits the protocol needs ----------------------------------------------


def _translate_setup(tmp_path: Path, url: str, protocol: str, shot_sources: bool) -> tuple[list[str], Path]:
    import shutil

    import yaml

    from okapi.io import write_parquet
    from okapi.schemas import INSTRUCTIONS

    root = Path(__file__).resolve().parents[2]
    tmp_path.mkdir(parents=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["teacher"].update(backend="openai", base_url=url, model="fake-model", max_concurrency=4)
    params["translate"].update(limit=None, eval_limit=3, langid=False, structured=True)
    params["evaluate"].update(
        protocol=protocol, num_fewshot={"arc": 2, "mmlu": 2} if protocol != "lm_eval_okapi" else None
    )
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    sources = tmp_path / "sources"
    shutil.copytree(root / "data/eval_sources", sources)
    if shot_sources:  # English shot splits next to the evaluation splits, as data/eval_sources/<bench>_<split>.jsonl
        for bench, split in (("arc", "train"), ("mmlu", "dev")):
            lines = (sources / f"{bench}.jsonl").read_text().splitlines()[-4:]
            (sources / f"{bench}_{split}.jsonl").write_text("\n".join(lines) + "\n")
    rows = [
        {"id": f"{src}{i}", "source": src, "instruction": f"Say {src} {i}.", "input": "", "output": f"ok {i}"}
        for src, n in (("seed", 2), ("generated", 4))
        for i in range(n)
    ]
    write_parquet(rows, tmp_path / "instructions.parquet", INSTRUCTIONS)
    args = [
        "--params",
        str(tmp_path / "params.yaml"),
        "--lang",
        "es",
        "--instructions",
        str(tmp_path / "instructions.parquet"),
    ]
    args += ["--eval-sources", str(sources), "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / "tr")]
    args += ["--eval-out", str(tmp_path / "ev"), "--cache", str(tmp_path / "cache.jsonl")]
    args += ["--metrics", str(tmp_path / "m.json")]
    return args, tmp_path / "ev"


def _translator(messages):
    first = messages[0]["content"]
    src = json.loads(first[first.index("{") : first.rindex("}") + 1])
    return json.dumps({k: f"{v} (es)" for k, v in src.items()})


def test_translate_stage_translates_the_protocols_shot_splits(tmp_path, tiny_model_dir, monkeypatch, capsys):
    from openai_server import FakeOpenAIServer

    import stages.translate as stage
    from okapi.cli import run
    from okapi.io import read_rows
    from okapi.schemas import MULTIPLE_CHOICE

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeOpenAIServer(_translator) as server:
        # No English source for ARC's train split: one error naming what to set, before any request is sent.
        args, _ = _translate_setup(tmp_path / "a", server.base_url, "okapi_paper", shot_sources=False)
        args[args.index("--tokenizer") + 1] = str(tiny_model_dir)
        assert run(stage.main, args) == 2
        err = capsys.readouterr().err
        assert "translate.eval_sources.arc_train" in err and "arc_train.jsonl" in err and "Traceback" not in err
        assert server.requests == []

        args, ev_dir = _translate_setup(tmp_path / "b", server.base_url, "okapi_paper", shot_sources=True)
        args[args.index("--tokenizer") + 1] = str(tiny_model_dir)
        assert run(stage.main, args) == 0
        assert sorted(p.name for p in ev_dir.iterdir()) == [
            "arc.parquet",
            "arc_train.parquet",
            "hellaswag.parquet",
            "mmlu.parquet",
            "mmlu_dev.parquet",
        ]
        shots = read_rows(ev_dir / "arc_train.parquet", MULTIPLE_CHOICE)
        assert len(shots) == 3 and all(r["instruction"].endswith("(es)") for r in shots)
        scored = {r["id"] for r in read_rows(ev_dir / "arc.parquet", MULTIPLE_CHOICE)}
        assert not scored & {r["id"] for r in shots}  # the shots are other records than the scored ones
        metrics = json.loads((tmp_path / "b/m.json").read_text())
        assert metrics["eval"]["mmlu_dev"]["translated"] == 3

        # The embedded default's protocol (0 shots) translates no shot split, even when a source is there.
        args, ev_dir = _translate_setup(tmp_path / "c", server.base_url, "lm_eval_okapi", shot_sources=True)
        args[args.index("--tokenizer") + 1] = str(tiny_model_dir)
        assert run(stage.main, args) == 0
        assert sorted(p.name for p in ev_dir.iterdir()) == ["arc.parquet", "hellaswag.parquet", "mmlu.parquet"]
