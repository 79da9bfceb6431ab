"""The teacher stages' mains (generate, translate, rank) against a real OpenAI-compatible HTTP server on loopback,
with a remote-teacher config: real outputs, per-stage spending accounts, a cached rerun that sends nothing, and
the API key nowhere in outputs, metrics, caches or logs."""

from __future__ import annotations

import itertools
import json
import subprocess
from pathlib import Path

import pytest
import yaml
from fakes import distinct_tasks_answer
from openai_server import FakeOpenAIServer
from stagekit import ROOT, fake_teacher_params, run_stage

from okapi.io import read_rows, write_parquet
from okapi.schemas import INSTRUCTIONS, PAIRS, RANKINGS, SAMPLES, TRANSLATIONS

CANARY = "sk-canary-9f8e7d-stage-key"
_counter = itertools.count()


def responder(messages):
    first = messages[0]["content"]
    last = messages[-1]["content"]
    if "diverse task instructions" in first:
        return distinct_tasks_answer(next(_counter))
    if "Translate the values" in first:
        src = json.loads(first[first.index("{") : first.rindex("}") + 1])
        return json.dumps({k: f"{v} (traducido)" for k, v in src.items()})
    if "rank" in last.lower() and len(messages) > 2:
        return json.dumps({"ranks": [2, 1, 4, 3]})
    return "Instruction: translated. Input: <empty>. Response 1: a. Response 2: b. Response 3: c. Response 4: d."


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer(responder) as srv:
        yield srv


def _params(tmp_path: Path, url: str) -> Path:
    return fake_teacher_params(
        tmp_path,
        url,
        **{"teacher.prices": {"fake-model": {"prompt": 1.0, "completion": 2.0}}},
        **{"generate.num_instructions": 6, "generate.max_rounds": 3, "generate.request_batch_size": 2},
        **{"translate.limit": 10, "translate.eval_limit": 2, "translate.langid": False},
    )


def _run(stage: str, args: list[str]) -> subprocess.CompletedProcess:
    proc = run_stage(stage, args, env={"OPENAI_API_KEY": CANARY})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _generate_args(gen: Path, cache: Path) -> list[str]:
    return ["--seeds", str(ROOT / "data/seeds/seed_tasks.jsonl"), "--out", str(gen), "--cache", str(cache)]


def _translate_args(gen: Path, tokenizer: Path, tmp_path: Path, out: str, eval_out: str, cache: str) -> list[str]:
    return [
        *("--lang", "es", "--instructions", str(gen), "--eval-sources", str(ROOT / "data/eval_sources")),
        *("--tokenizer", str(tokenizer), "--out", str(tmp_path / out), "--eval-out", str(tmp_path / eval_out)),
        *("--cache", str(tmp_path / cache)),
    ]


def test_generate_translate_rank_stages(tmp_path, server, tiny_model_dir):
    params = _params(tmp_path, server.base_url)
    logs = []
    gen = tmp_path / "generated.parquet"
    gen_args = [*_generate_args(gen, tmp_path / "cache/generate.jsonl"), "--metrics", str(tmp_path / "m/generate.json")]
    logs.append(_run("generate", [*gen_args, "--params", str(params)]))
    rows = read_rows(gen, INSTRUCTIONS)
    assert sum(r["source"] == "generated" for r in rows) >= 6
    assert json.loads((tmp_path / "m/generate.json").read_text())["teacher"]["requests_sent"] > 0

    tr_args = _translate_args(gen, tiny_model_dir, tmp_path, "translated", "eval", "cache/translate-es.jsonl")
    tr_args += ["--metrics", str(tmp_path / "m/translate.json"), "--params", str(params)]
    logs.append(_run("translate", tr_args))
    translated = read_rows(tmp_path / "translated/all.parquet", TRANSLATIONS)
    assert {r["id"] for r in translated} <= {r["id"] for r in rows}  # ids survive translation
    assert all(r["instruction"].endswith("(traducido)") for r in translated if r["status"] == "ok")
    metrics = json.loads((tmp_path / "m/translate.json").read_text())
    assert metrics["teacher"]["estimated_cost_usd"] > 0
    for split in ("sft", "rank", "ppo", "full"):
        assert (tmp_path / f"translated/{split}.parquet").is_file()

    sent_before = len(server.requests)
    logs.append(_run("translate", tr_args))  # rerun with the cache: nothing is sent
    assert len(server.requests) == sent_before
    assert json.loads((tmp_path / "m/translate.json").read_text())["teacher"]["requests_sent"] == 0

    samples = [
        {
            "id": r["id"],
            "lang": "es",
            "instruction": r["instruction"],
            "input": r["input"],
            "responses": ["uno", "dos", "tres", "cuatro"],
        }
        for r in translated
        if r["status"] == "ok"
    ][:3]
    write_parquet(samples, tmp_path / "samples.parquet", SAMPLES)
    logs.append(
        _run(
            "rank",
            [
                "--lang",
                "es",
                "--samples",
                str(tmp_path / "samples.parquet"),
                "--out",
                str(tmp_path / "rankings"),
                "--cache",
                str(tmp_path / "cache/rank-es.jsonl"),
                "--metrics",
                str(tmp_path / "m/rank.json"),
                "--params",
                str(params),
            ],
        )
    )
    ranked = read_rows(tmp_path / "rankings/rankings.parquet", RANKINGS)
    assert [r["ranks"] for r in ranked] == [[2, 1, 4, 3]] * 3
    pairs = read_rows(tmp_path / "rankings/pairs.parquet", PAIRS)
    assert len(pairs) == 3 * 6 and all(p["chosen"] != p["rejected"] for p in pairs)
    assert ("dos", "uno") in {(p["chosen"], p["rejected"]) for p in pairs}

    # The key travelled in the Authorization header only.
    assert all(h == f"Bearer {CANARY}" for h in server.auth_headers)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path
    for proc in logs:
        assert CANARY not in proc.stdout + proc.stderr


def test_released_ranking_and_eval_with_our_own_translations(tmp_path, server, tiny_model_dir):
    """released.parts [ranking, eval]: the teacher generates and translates the instructions; the release gives
    the preference pairs (no sampling, no ranking request) and the benchmarks (no eval translation request)."""
    from released_fixture import release_tree

    params = yaml.safe_load(_params(tmp_path, server.base_url).read_text())
    params["released"].update(use=True, parts=["ranking", "eval"])
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    p = ["--params", str(path)]
    release_tree(tmp_path / "released", lang="es")
    gen = tmp_path / "generated.parquet"
    _run("generate", [*_generate_args(gen, tmp_path / "c/g.jsonl"), "--metrics", str(tmp_path / "m/g.json"), *p])
    assert sum(r["source"] == "generated" for r in read_rows(gen, INSTRUCTIONS)) >= 6  # not skipped
    conv = tmp_path / "conv"
    _run(
        "released",
        [
            "--lang",
            "es",
            "--src",
            str(tmp_path / "released"),
            "--out",
            str(conv),
            "--metrics",
            str(tmp_path / "m/released.json"),
            *p,
        ],
    )
    assert sorted(f.name for f in conv.iterdir()) == ["eval", "manifest.json", "pairs.parquet", "rank.parquet"]
    sent = len(server.requests)
    tr_args = _translate_args(gen, tiny_model_dir, tmp_path, "tr", "ev", "c/t.jsonl")
    _run("translate", [*tr_args, "--released", str(conv), "--metrics", str(tmp_path / "m/t.json"), *p])
    translate_requests = server.requests[sent:]
    assert translate_requests and all("Translate the values" in r["messages"][0]["content"] for r in translate_requests)
    n_rows = len(read_rows(tmp_path / "tr/all.parquet", TRANSLATIONS))
    assert len(translate_requests) == n_rows  # one per instruction: no benchmark record went to the teacher
    metrics = json.loads((tmp_path / "m/t.json").read_text())
    assert metrics["source"] == {"instructions": "teacher", "eval": "released"}
    assert sorted(f.name for f in (tmp_path / "ev").iterdir())[0] == "arc_test.parquet"
    _run(
        "sample",
        [
            "--lang",
            "es",
            "--model",
            str(tmp_path / "no-model-needed"),
            "--prompts",
            str(tmp_path / "tr/rank.parquet"),
            "--out",
            str(tmp_path / "s.parquet"),
            "--metrics",
            str(tmp_path / "m/s.json"),
            *p,
        ],
    )
    assert read_rows(tmp_path / "s.parquet", SAMPLES) == []
    sent = len(server.requests)
    _run(
        "rank",
        [
            "--lang",
            "es",
            "--samples",
            str(tmp_path / "s.parquet"),
            "--out",
            str(tmp_path / "rk"),
            "--cache",
            str(tmp_path / "c/r.jsonl"),
            "--released",
            str(conv),
            "--metrics",
            str(tmp_path / "m/r.json"),
            *p,
        ],
    )
    assert len(server.requests) == sent
    pairs = read_rows(tmp_path / "rk/pairs.parquet", PAIRS)
    assert [p["id"] for p in pairs] == [f"okapi-ranking-es-{i}" for i in range(4)]
