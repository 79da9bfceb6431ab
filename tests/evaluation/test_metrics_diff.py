"""`dvc metrics diff` and `dvc params diff` across two branches, as the README tells users to compare runs.

A minimal project shaped like ours: metrics/summary.json is a git-tracked DVC metric (cache: false) written by a
stage from params.yaml; one branch changes a param, reruns, and commits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent

REPORT = textwrap.dedent(
    """
    import json, pathlib, yaml
    lr = yaml.safe_load(open("params.yaml"))["ppo"]["learning_rate"]
    summary = {
        "metric": "acc_norm",
        "arc": {"sft": {"average": 30.0}, "rlhf": {"average": 30.0 + 1e4 * lr}},
        "teacher": {"requests_sent": 12},
    }
    pathlib.Path("metrics").mkdir(exist_ok=True)
    pathlib.Path("metrics/summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    """
)

DVC_YAML = textwrap.dedent(
    """
    stages:
      report:
        cmd: python report.py
        deps:
          - report.py
        params:
          - ppo.learning_rate
          - ppo.epochs
        metrics:
          - metrics/summary.json:
              cache: false
    """
)


def _params(lr: float) -> str:
    # Written as plain decimals: YAML 1.1 reads "5e-05" (no dot) as a string.
    return f"seed: 1234\nppo:\n  learning_rate: {lr}\n  epochs: 1\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("metrics_diff")
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "DVC_SITE_CACHE_DIR": str(tmp_path / "site_cache"),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    repo = tmp_path / "repo"
    repo.mkdir()

    def run(*args: str) -> str:
        cmd = [sys.executable, "-m", "dvc", *args[1:]] if args[0] == "dvc" else list(args)
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    (repo / "report.py").write_text(REPORT)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "params.yaml").write_text(_params(0.0001))
    run("git", "init", "-q", "-b", "main")
    run("dvc", "init", "-q")
    run("dvc", "repro", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline")
    run("git", "checkout", "-q", "-b", "higher-lr")
    (repo / "params.yaml").write_text(_params(0.0005))
    run("dvc", "repro", "-q")
    run("git", "commit", "-qam", "higher lr")
    return run


def test_metrics_diff_reports_changed_values_and_their_difference(project):
    diff = json.loads(project("dvc", "metrics", "diff", "main", "higher-lr", "--json"))
    changed = diff["metrics/summary.json"]
    rlhf = changed["arc.rlhf.average"]
    assert rlhf["old"] == pytest.approx(31.0)
    assert rlhf["new"] == pytest.approx(35.0)
    assert rlhf["diff"] == pytest.approx(4.0)
    # Unchanged values are left out unless asked for with --all.
    assert "arc.sft.average" not in changed and "teacher.requests_sent" not in changed
    full = json.loads(project("dvc", "metrics", "diff", "main", "higher-lr", "--all", "--json"))
    assert full["metrics/summary.json"]["arc.sft.average"] == {"old": 30.0, "new": 30.0, "diff": 0.0}


def test_params_diff_reports_the_changed_param(project):
    diff = json.loads(project("dvc", "params", "diff", "main", "higher-lr", "--json"))
    assert list(diff) == ["params.yaml"] and list(diff["params.yaml"]) == ["ppo.learning_rate"]
    lr = diff["params.yaml"]["ppo.learning_rate"]
    assert (lr["old"], lr["new"]) == (0.0001, 0.0005)
    assert lr["diff"] == pytest.approx(0.0004)
    # The workspace equals the branch head: nothing to report.
    assert json.loads(project("dvc", "params", "diff", "--json") or "{}") == {}
