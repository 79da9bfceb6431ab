"""Helpers for tests that run a stage script as the pipeline does (``python -m stages.<name>`` in a subprocess)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PARAMS: dict[str, Any] = yaml.safe_load((ROOT / "params.yaml").read_text())


def run_stage(
    stage: str, args: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``stages.<stage>`` with ``args``, offline, importing this checkout's okapi; returns the finished process."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", f"stages.{stage}", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_params(tmp_path: Path, **changes: Any) -> Path:
    """params.yaml with ``changes`` applied, written to ``tmp_path``; a key is dotted (``teacher.base_url``) and its
    value replaces what was there."""
    params = copy.deepcopy(PARAMS)
    for dotted, value in changes.items():
        node = params
        *parents, last = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def fake_teacher_params(tmp_path: Path, url: str, **changes: Any) -> Path:
    """write_params with the teacher pointed at a loopback OpenAI-compatible server (tests/openai_server.py)."""
    teacher = {"teacher.backend": "openai", "teacher.base_url": url, "teacher.model": "fake-model"}
    return write_params(tmp_path, **teacher, **{"teacher.max_concurrency": 4}, **changes)


def assert_one_clear_error(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The stage stopped with exit code 2 and one ``error:`` line holding ``words``; returns that line."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# --- whole-pipeline tests: dvc and the stages in a git+DVC copy of the project ------------------------------------

BIN = Path(sys.executable).parent  # the venv's dvc, git hooks' python


def pipeline_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for ``dvc repro`` in a copy of the project: the venv's tools first, this checkout's okapi
    importable, offline, DVC quiet with a private site cache, a git identity, one OpenMP thread, and no API key
    unless ``extra`` sets one."""
    env = dict(os.environ)
    env.pop("OPENAI_API_KEY", None)
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        HF_HUB_OFFLINE="1",
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(tmp / "site_cache"),
        OMP_NUM_THREADS="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    env.update(extra)
    return env


def run_checked(
    cwd: Path, env: dict[str, str], *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a command (``dvc ...`` runs this venv's dvc module); with ``check``, a failure shows its output."""
    cmd = [sys.executable, "-m", "dvc", *args[1:]] if args[0] == "dvc" else list(args)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def tiny_training(params: dict[str, Any], max_seq_length: int = 256) -> dict[str, Any]:
    """``params`` with SFT, the reward model and PPO cut to a step or two on tiny models (in place; returned)."""
    tiny_sft = {"num_train_epochs": 1.0, "batch_size": 2, "per_device_train_batch_size": 2}
    params["sft"].update(tiny_sft, max_seq_length=max_seq_length)
    params["sft_full"].update(tiny_sft, max_seq_length=max_seq_length, max_steps=1)
    params["rm"].update(batch_size=2, per_device_train_batch_size=2, max_length=max_seq_length, eval_fraction=0.25)
    params["ppo"].update(
        top_layers=2, batch_size=2, mini_batch_size=2, max_new_tokens=4, max_steps=1, heldout_samples=1
    )
    return params
