"""Alpaca's seed tasks in the paper profile: `python -m okapi.seeds fetch` runs `dvc import-url` against a loopback
HTTP server serving a fixture file in Alpaca's format (written by us), and the generate stage then draws its
in-context examples from those seeds plus the project's 30 Okapi-category ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from openai_server import FakeOpenAIServer
from released_fixture import serve
from stagekit import ROOT, pipeline_env

from okapi.io import read_rows
from okapi.schemas import INSTRUCTIONS


def _run(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _records(n: int) -> list[str]:
    return [
        json.dumps(
            {
                "id": f"seed_task_{i}",
                "name": f"alpaca_like_{i}",
                "instruction": f"List {i + 2} board games that need no more than two players.",
                "instances": [{"input": "", "output": "Chess and backgammon."}],
                "is_classification": False,
            }
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seeds_project")
    srv = tmp / "srv"
    srv.mkdir()
    (srv / "seed_tasks.jsonl").write_text("\n".join(_records(8)) + "\n")
    bad = _records(3)
    bad[1] = bad[1].replace('"output": "Chess and backgammon."', '"output": ""')
    (srv / "bad.jsonl").write_text("\n".join(bad) + "\n")
    repo = tmp / "repo"
    repo.mkdir()
    env = pipeline_env(tmp)
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)
    with serve(srv) as server:
        url = server.base_url
        done = _run(repo, env, "-m", "okapi.seeds", "fetch", "--url", f"{url}/seed_tasks.jsonl")
        yield {"repo": repo, "env": env, "url": url, "fetched": done}


def test_fetch_imports_alpacas_seed_file_with_its_url_recorded_and_only_once(project):
    repo, env, url, done = project["repo"], project["env"], project["url"], project["fetched"]
    assert done.returncode == 0, done.stderr
    assert "imported 8 seed tasks into data/seeds/alpaca/seed_tasks.jsonl" in done.stdout
    target = repo / "data/seeds/alpaca/seed_tasks.jsonl"
    assert target.read_text().count("\n") == 8
    dvc_file = yaml.safe_load(Path(f"{target}.dvc").read_text())
    assert dvc_file["deps"][0]["path"] == f"{url}/seed_tasks.jsonl" and dvc_file["outs"][0]["md5"]
    again = _run(repo, env, "-m", "okapi.seeds", "fetch", "--url", f"{url}/seed_tasks.jsonl")
    assert again.returncode == 0 and "already imported (8 seed tasks)" in again.stdout


def test_a_malformed_served_file_is_refused_named_and_leaves_nothing(project):
    repo, env, url = project["repo"], project["env"], project["url"]
    bad = _run(repo, env, "-m", "okapi.seeds", "fetch", "--url", f"{url}/bad.jsonl", "--dest", "data/bad")
    assert bad.returncode == 2
    lines = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "data/bad/seed_tasks.jsonl, line 2: field instances[0].output" in lines[0]
    assert not (repo / "data/bad/seed_tasks.jsonl").exists() and not (repo / "data/bad/seed_tasks.jsonl.dvc").exists()
    missing = _run(repo, env, "-m", "okapi.seeds", "fetch", "--url", f"{url}/nothing.jsonl", "--dest", "data/none")
    assert missing.returncode == 2 and "could not import Alpaca's seed tasks from" in missing.stderr
    assert not (repo / "data/none/seed_tasks.jsonl.dvc").exists()


def test_generate_stage_uses_the_fetched_seeds_with_seed_tasks_alpaca(project, tmp_path):
    repo, env = project["repo"], project["env"]
    assert project["fetched"].returncode == 0, project["fetched"].stderr
    prompts: list[str] = []

    def answer(messages):
        prompts.append(messages[0]["content"])
        return json.dumps(
            {"tasks": [{"instruction": f"Describe item q{len(prompts)}z now.", "input": "", "output": "x"}]}
        )

    with FakeOpenAIServer(answer) as teacher:
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["teacher"].update(backend="openai", base_url=teacher.base_url, model="m", max_retries=0)
        params["generate"].update(num_instructions=2, max_rounds=2, request_batch_size=1, seed_tasks="alpaca")
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        out, metrics = tmp_path / "gen.parquet", tmp_path / "gen.json"
        args = ["--seeds", str(ROOT / "data/seeds/seed_tasks.jsonl"), "--alpaca-seeds", "data/seeds/alpaca"]
        args += ["--out", str(out), "--cache", str(tmp_path / "c.jsonl"), "--metrics", str(metrics)]
        key_env = {**env, "OPENAI_API_KEY": "sk-test-not-a-key"}
        done = _run(repo, key_env, "-m", "stages.generate", *args, "--params", str(tmp_path / "params.yaml"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(metrics.read_text())["seeds"] == 8 + 30
    seeds = [r for r in read_rows(out, INSTRUCTIONS) if r["source"] == "seed"]
    assert len(seeds) == 38 and seeds[0]["instruction"].startswith("List 2 board games")
    assert prompts
