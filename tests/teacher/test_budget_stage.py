"""teacher.budget_usd through a real stage script: one clear line and exit 2, the answers kept, resumed on rerun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from openai_server import FakeOpenAIServer

from okapi.cache import read_cache

ROOT = Path(__file__).resolve().parents[2]


def tasks(messages):
    n = len(messages[0]["content"])  # distinct per prompt, so the ROUGE-L filter keeps them apart
    return json.dumps(
        {
            "tasks": [
                {"instruction": f"Describe q{n}z{i} w{n}v{i} in detail.", "input": "", "output": "ok"} for i in range(3)
            ]
        }
    )


def _params(tmp_path: Path, url: str, budget: float | None, rounds: int) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["teacher"].update(
        backend="openai",
        base_url=url,
        model="m",
        max_concurrency=1,
        prices={"m": {"prompt": 1000.0, "completion": 1000.0}},
        budget_usd=budget,
    )
    params["generate"].update(num_instructions=12, max_rounds=rounds, request_batch_size=2)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def _generate(tmp_path: Path, params: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-test", "HF_HUB_OFFLINE": "1"}
    args = ["--seeds", str(ROOT / "data/seeds/seed_tasks.jsonl"), "--out", str(tmp_path / "gen.parquet")]
    args += ["--cache", str(tmp_path / "gen.sqlite"), "--metrics", str(tmp_path / "m.json"), "--params", str(params)]
    return subprocess.run(
        [sys.executable, "-m", "stages.generate", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_spent_budget_stops_the_stage_in_one_line_and_a_larger_one_resumes_without_resending(tmp_path):
    with FakeOpenAIServer(tasks) as srv:
        # One round, no cap: 2 answers at 10 + 5 tokens each, $0.03 in the cache.
        first = _generate(tmp_path, _params(tmp_path, srv.base_url, None, rounds=1))
        assert first.returncode == 0, first.stderr[-2000:]
        assert len(srv.requests) == 2 and len(read_cache(tmp_path / "gen.sqlite")) == 2
        (tmp_path / "gen.parquet").unlink()

        # More rounds under a budget the cache has already spent: round 1 is cached, round 2 may not be bought.
        stopped = _generate(tmp_path, _params(tmp_path, srv.base_url, 0.02, rounds=4))
        assert stopped.returncode == 2
        err = [line for line in stopped.stderr.splitlines() if line.startswith("error:")]
        assert len(err) == 1, stopped.stderr[-2000:]
        assert "teacher.budget_usd = 0.02 is already spent" in err[0] and "$0.0300" in err[0]
        assert len(srv.requests) == 2 and not (tmp_path / "gen.parquet").exists()

        done = _generate(tmp_path, _params(tmp_path, srv.base_url, 100.0, rounds=4))
        assert done.returncode == 0, done.stderr[-2000:]
        bodies = [json.dumps(r["messages"]) for r in srv.requests]
        assert len(bodies) > 2 and len(bodies) == len(set(bodies))  # nothing bought before was asked again
        assert json.loads((tmp_path / "m.json").read_text())["teacher"]["cache_hits"] == 2
