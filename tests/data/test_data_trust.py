"""Issue 15 through the stage mains, against the loopback OpenAI server: a benchmark question planted in the
generated instructions is dropped by translate@es and counted; back-translation rejects a row whose
back-translation drifts and is cached like every teacher call; generate, translate and rank each write a dataset
card that huggingface_hub's DatasetCard parses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from huggingface_hub import DatasetCard
from openai_server import FakeOpenAIServer

from okapi.io import read_jsonl, read_rows, write_parquet
from okapi.schemas import INSTRUCTIONS, PAIRS, PROMPTS, SAMPLES, TRANSLATIONS

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-canary-data-trust"
PLANTED = read_jsonl(ROOT / "data/eval_sources/arc.jsonl")[0]["instruction"]  # 14 words: holds a 13-gram
SUFFIX = " (traducido)"


def responder(messages):
    first = messages[0]["content"]
    if "diverse task instructions" in first:
        n = len(first)  # distinct per request (the prompt lists different example tasks)
        tasks = [
            {
                "instruction": "Describe " + " ".join(f"q{n}z{i}k{k}" for k in range(6)) + ".",
                "input": "",
                "output": "Ok.",
            }
            for i in range(4)
        ]
        return json.dumps({"tasks": tasks})
    if "Translate the values" in first:
        obj = json.loads(first[first.index("{") : first.rindex("}") + 1])
        return json.dumps({k: v + SUFFIX for k, v in obj.items()})
    if "written in Spanish" in first:  # back-translation
        obj = json.loads(first[first.index("{") : first.rindex("}") + 1])
        if any("DRIFT" in v for v in obj.values()):
            return json.dumps({k: "Completely unrelated words about something else." for k in obj})
        return json.dumps({k: v.removesuffix(SUFFIX) for k, v in obj.items()})
    if len(messages) > 2:
        return json.dumps({"ranks": [1, 2, 3, 4]})
    return "Instruction: x. Input: <empty>. Response 1: a. Response 2: b. Response 3: c. Response 4: d."


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(responder) as srv:
        yield srv


def _params(tmp_path: Path, url: str, **translate) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["teacher"].update(backend="openai", base_url=url, model="fake-model", max_concurrency=4)
    params["generate"].update(num_instructions=4, max_rounds=3, request_batch_size=2)
    params["translate"].update(limit=None, eval_limit=2, langid=False, **translate)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _run(stage: str, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": KEY, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _instructions(path: Path) -> list[dict]:
    rows = [
        {
            "id": f"s{i}",
            "source": "seed",
            "instruction": f"Give advice number {i} on cooking rice.",
            "input": "",
            "output": "Rinse it first.",
        }
        for i in range(3)
    ]
    rows += [
        {
            "id": f"g{i}",
            "source": "generated",
            "instruction": f"List {i + 2} colours of the rainbow.",
            "input": "",
            "output": "Red and blue.",
        }
        for i in range(6)
    ]
    rows[4]["instruction"] = "Answer this: " + PLANTED  # a generated row that reproduces an ARC question
    rows[6]["output"] = "DRIFT in this answer."
    full = [{**r, "max_similarity": None, "avg_similarity": None, "most_similar_instructions": []} for r in rows]
    write_parquet(full, path, INSTRUCTIONS)
    return rows


def _translate(tmp_path: Path, params: Path, tokenizer: Path) -> list[str]:
    return [
        *("--lang", "es", "--instructions", str(tmp_path / "gen/instructions.parquet")),
        *("--eval-sources", str(ROOT / "data/eval_sources"), "--tokenizer", str(tokenizer)),
        *("--out", str(tmp_path / "tr"), "--eval-out", str(tmp_path / "ev"), "--cache", str(tmp_path / "c/t.jsonl")),
        *("--metrics", str(tmp_path / "m/t.json"), "--params", str(params)),
    ]


def test_planted_question_dropped_back_translation_and_cards(tmp_path, server, tiny_model_dir):
    params = _params(tmp_path, server.base_url, back_translation=True, min_back_score=40.0)
    _instructions(tmp_path / "gen/instructions.parquet")
    sent = len(server.requests)
    _run("translate", _translate(tmp_path, params, tiny_model_dir))
    requests = server.requests[sent:]
    back = [r for r in requests if "written in Spanish" in r["messages"][0]["content"]]
    assert len(back) == 9  # one back-translation per accepted row

    rows = {r["id"]: r for r in read_rows(tmp_path / "tr/all.parquet", TRANSLATIONS)}
    planted = rows["g1"]
    assert planted["status"] == "rejected" and planted["reason"].startswith("contaminated: a 13-gram overlaps arc")
    drift = rows["g3"]
    assert drift["status"] == "rejected" and drift["reason"].startswith("back_translation: chrF")
    assert drift["back_score"] < 40 and rows["s0"]["back_score"] == 100.0
    kept = {
        r["id"]
        for split in ("sft", "full", "rank", "ppo")
        for r in read_rows(tmp_path / f"tr/{split}.parquet", PROMPTS)
    }
    assert "g1" not in kept and "g3" not in kept and {"s0", "s1", "s2"} <= kept

    metrics = json.loads((tmp_path / "m/t.json").read_text())
    dc = metrics["decontamination"]
    assert dc["mode"] == "drop" and dc["ngram"] == 13
    assert dc["by_benchmark"] == {"arc": 1, "hellaswag": 0, "mmlu": 0}
    assert dc["contaminated_rows"] == dc["dropped_rows"] == 1
    assert set(dc["by_split"]) == {"sft", "rank", "ppo"}  # every split reports its count, zero or not
    assert sum(g["contaminated"] for g in dc["by_split"].values()) == 1
    # every English source record, and the 2 translated records (translate.eval_limit) of each benchmark
    english = {b: len(read_jsonl(ROOT / f"data/eval_sources/{b}.jsonl")) for b in ("arc", "hellaswag", "mmlu")}
    assert dc["eval_items"] == {b: n + 2 for b, n in english.items()}
    bt = metrics["back_translation"]
    assert bt["requests"] == 9 and bt["scored"] == 9 and bt["rejected"] == 1 and bt["scores"]["count"] == 9
    assert metrics["splits"]["full"] == 7

    card = DatasetCard.load(tmp_path / "tr/README.md")
    assert card.data.language == ["es"] and card.data.size_categories == ["n<1K"]
    assert "| decontamination | 1 |" in card.text and "| back-translation score | 1 |" in card.text
    assert "| full | `full.parquet` | 7 |" in card.text

    # A rerun answers every request, back-translations included, from the cache.
    sent = len(server.requests)
    _run("translate", _translate(tmp_path, params, tiny_model_dir))
    assert len(server.requests) == sent
    assert json.loads((tmp_path / "m/t.json").read_text())["teacher"]["requests_sent"] == 0


def test_report_mode_keeps_the_row_and_generate_rank_write_cards(tmp_path, server, tiny_model_dir):
    params = _params(tmp_path, server.base_url, decontaminate="report")
    _instructions(tmp_path / "gen/instructions.parquet")
    _run("translate", _translate(tmp_path, params, tiny_model_dir))
    rows = {r["id"]: r for r in read_rows(tmp_path / "tr/all.parquet", TRANSLATIONS)}
    assert rows["g1"]["status"] == "ok" and rows["g1"]["back_score"] is None
    dc = json.loads((tmp_path / "m/t.json").read_text())["decontamination"]
    assert dc["contaminated_rows"] == 1 and dc["dropped_rows"] == 0

    gen = tmp_path / "g2/instructions.parquet"
    _run(
        "generate",
        [
            *(
                "--seeds",
                str(ROOT / "data/seeds/seed_tasks.jsonl"),
                "--out",
                str(gen),
                "--card",
                str(tmp_path / "g2/README.md"),
            ),
            *("--cache", str(tmp_path / "c/g.jsonl"), "--metrics", str(tmp_path / "m/g.json"), "--params", str(params)),
        ],
    )
    card = DatasetCard.load(tmp_path / "g2/README.md")
    n = len(read_rows(gen, INSTRUCTIONS))
    assert card.data.language == ["en"] and f"| train | `instructions.parquet` | {n} |" in card.text

    samples = [
        {"id": f"p{i}", "lang": "es", "instruction": f"Pregunta {i}", "input": "", "responses": ["a", "b", "c", "d"]}
        for i in range(2)
    ]
    write_parquet(samples, tmp_path / "samples.parquet", SAMPLES)
    _run(
        "rank",
        [
            *("--lang", "es", "--samples", str(tmp_path / "samples.parquet"), "--out", str(tmp_path / "rk")),
            *("--cache", str(tmp_path / "c/r.jsonl"), "--metrics", str(tmp_path / "m/r.json"), "--params", str(params)),
        ],
    )
    pairs = read_rows(tmp_path / "rk/pairs.parquet", PAIRS)
    card = DatasetCard.load(tmp_path / "rk/README.md")
    assert card.data.language == ["es"] and f"| train | `pairs.parquet` | {len(pairs)} |" in card.text
    for path in tmp_path.rglob("README.md"):
        assert KEY.encode() not in path.read_bytes() and server.base_url not in path.read_text()
