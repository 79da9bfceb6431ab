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
