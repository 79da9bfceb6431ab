"""okapi.repro: the languages' columns of a DVC pipeline run side by side, and the result is what `dvc repro` builds."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import yaml

from okapi import repro

ROOT = Path(__file__).resolve().parents[2]

# Each column's first stage writes its marker, then waits for the other column's: run one after the other, the
# first column would wait in vain and fail. Every stage reads what the stage before it wrote.
PIPELINE = textwrap.dedent(
    """
    stages:
      first:
        cmd: echo seed > first.txt
        outs:
          - first.txt
      other:
        cmd: echo other > other.txt
        outs:
          - other.txt
      col:
        foreach: [x, y]
        do:
          cmd: python col.py ${item}
          deps:
            - first.txt
            - col.py
          outs:
            - col_${item}.txt
      more:
        foreach: [x, y]
        do:
          cmd: python more.py ${item}
          deps:
            - col_${item}.txt
            - more.py
          outs:
            - more_${item}.txt
      last:
        cmd: cat more_x.txt more_y.txt other.txt > last.txt
        deps:
          - other.txt
          - more_x.txt
          - more_y.txt
        outs:
          - last.txt
    """
)
COL = textwrap.dedent(
    """
    import pathlib, sys, time
    me = sys.argv[1]
    other = "y" if me == "x" else "x"
    pathlib.Path(f"{me}.mark").write_text("1")
    for _ in range(300):
        if pathlib.Path(f"{other}.mark").exists():
            break
        time.sleep(0.1)
    else:
        sys.exit(f"column {me} ran alone: {other} never started")
    pathlib.Path(f"col_{me}.txt").write_text(pathlib.Path("first.txt").read_text() + me)
    """
)
MORE = textwrap.dedent(
    """
    import pathlib, sys
    me = sys.argv[1]
    if me in pathlib.Path("fail.txt").read_text().split():
        sys.exit(f"more@{me} fails on purpose")
    pathlib.Path(f"more_{me}.txt").write_text(pathlib.Path(f"col_{me}.txt").read_text() + "+")
    """
)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    (tmp_path / "col.py").write_text(COL)
    (tmp_path / "more.py").write_text(MORE)
    (tmp_path / "fail.txt").write_text("")
    return tmp_path


def test_plan_splits_shared_stages_and_columns(project: Path) -> None:
    first, columns = repro.plan(project)
    assert first == {"first": ["first"], "other": ["other"]}
    assert columns == {"x": ["col@x", "more@x"], "y": ["col@y", "more@y"]}


def test_columns_run_side_by_side_and_the_result_is_up_to_date(project: Path) -> None:
    assert repro.run(2, project) == 0
    assert (project / "last.txt").read_text() == "seed\nx+seed\ny+other\n"
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert set(lock) == {"first", "other", "col@x", "col@y", "more@x", "more@y", "last"}
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json"], cwd=project, capture_output=True, text=True, check=True
    )
    assert status.stdout.strip() == "{}"


def test_a_failed_column_fails_the_run_and_keeps_the_others(project: Path, capsys) -> None:
    (project / "fail.txt").write_text("y")
    assert repro.run(2, project) == 1
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert {"first", "col@x", "col@y", "more@x"} <= set(lock) and "more@y" not in lock
    assert not (project / "last.txt").exists()
    assert "the stages of y failed" in capsys.readouterr().err


def test_column_env_shares_the_cores_unless_set(monkeypatch) -> None:
    monkeypatch.setattr(repro.os, "cpu_count", lambda: 4)
    assert repro.column_env(2, {})["OMP_NUM_THREADS"] == "2"
    assert repro.column_env(8, {})["OMP_NUM_THREADS"] == "1"
    assert repro.column_env(2, {"OMP_NUM_THREADS": "3"})["OMP_NUM_THREADS"] == "3"


def test_the_pipeline_plan_is_shared_stages_then_one_column_per_language() -> None:
    first, columns = repro.plan(ROOT)
    assert first == {"base": ["base"], "generate": ["generate"]}
    languages = list(yaml.safe_load((ROOT / "params.yaml").read_text())["languages"])
    assert sorted(columns) == sorted(languages)
    assert all(name.endswith(f"@{lang}") for lang, names in columns.items() for name in names)


@pytest.mark.parametrize("argv, words", [(["--jobs", "0"], "--jobs must be an integer >= 1")])
def test_bad_jobs_is_one_sentence(argv, words, capsys) -> None:
    assert repro.main(argv) == 2
    assert words in capsys.readouterr().err


def test_of_the_stages_ready_the_one_with_the_most_work_ahead_goes_first(monkeypatch) -> None:
    """Two columns a -> b -> c plus a -> side: once a is done, b (more work from it to the column's end) starts
    before side, as sft@L and ppo@L before sft_full@L; a failure stops the rest of its column only."""
    columns = {"x": ["a@x", "side@x", "b@x", "c@x"], "y": ["a@y", "side@y", "b@y", "c@y"]}
    needs = {
        f"{s}@{c}": deps
        for c in "xy"
        for s, deps in (("a", set()), ("side", {f"a@{c}"}), ("b", {f"a@{c}"}), ("c", {f"b@{c}"}))
    }
    ahead = repro._critical_paths(needs, {"a": 1, "b": 5, "c": 1, "side": 2})
    assert ahead == {"a@x": 7, "b@x": 6, "c@x": 1, "side@x": 2, "a@y": 7, "b@y": 6, "c@y": 1, "side@y": 2}
    assert repro._critical_paths({"ppo@x": set(), "sft_full@x": set()}) == {
        "ppo@x": repro.STAGE_SECONDS["ppo"],
        "sft_full@x": repro.STAGE_SECONDS["sft_full"],
    }
    monkeypatch.setattr(repro, "STAGE_SECONDS", {"a": 1, "b": 5, "c": 1, "side": 2})
    started: list[str] = []
    lock = threading.Lock()

    def fake_dvc(args, root, *, env=None, prefix=""):  # type: ignore[no-untyped-def]
        with lock:
            started.append(args[-1])
        return 1 if args[-1] == fail else 0

    monkeypatch.setattr(repro, "_dvc", fake_dvc)
    fail = None
    assert repro._stage_by_stage(columns, needs, 2, ".") == []
    assert sorted(started) == sorted(needs)
    for c in "xy":  # both ready once a@c is done: the one with a chain after it first
        assert started.index(f"b@{c}") < started.index(f"side@{c}")
    started.clear()
    fail = "b@y"
    assert repro._stage_by_stage(columns, needs, 2, ".") == ["y"]
    assert "c@y" not in started and "side@y" not in started  # the rest of y: not run
    assert {"a@x", "b@x", "c@x", "side@x"} <= set(started)


def test_the_larger_column_goes_first_by_its_translated_tokens(monkeypatch, tmp_path) -> None:
    """column_sizes: a column's translated tokens over the columns' mean (1.0 while unknown); with equal stages the
    larger column's are taken first, so the smaller one's fill the other core at the end."""
    (tmp_path / "metrics" / "translate").mkdir(parents=True)
    for lang, tokens in (
        ("x", {"completion_tokens": 100}),
        ("y", {"completion_tokens": 200, "cached_completion_tokens": 100}),
    ):
        (tmp_path / "metrics" / "translate" / f"{lang}.json").write_text(json.dumps({"teacher": tokens}))
    (tmp_path / "metrics" / "translate" / "w.json").write_text("{not json")
    assert repro.column_sizes(["x", "y", "z", "w"], tmp_path) == {"x": 0.5, "y": 1.5, "z": 1.0, "w": 1.0}
    columns = {"x": ["a@x", "b@x"], "y": ["a@y", "b@y"]}
    needs = {"a@x": set(), "b@x": {"a@x"}, "a@y": set(), "b@y": {"a@y"}}
    monkeypatch.setattr(repro, "STAGE_SECONDS", {"a": 1, "b": 1})
    started: list[str] = []
    monkeypatch.setattr(repro, "_dvc", lambda args, root, *, env=None, prefix="": started.append(args[-1]) or 0)
    assert repro._stage_by_stage(columns, needs, 1, tmp_path) == []
    assert started == ["a@y", "b@y", "a@x", "b@x"]
    started.clear()
    assert repro._stage_by_stage(columns, needs, 1, tmp_path / "nothing") == []  # sizes unknown: equal columns
    assert started == ["a@x", "a@y", "b@x", "b@y"]  # the most work ahead first, then the earlier column


def test_a_side_stage_starts_where_it_keeps_both_cores_busy_to_the_end() -> None:
    """pick: the longest chain first would start p and r, then s, leaving q and then the join z to one core at the
    end (10 s); trying each ready stage with the rest following the longest chain, s goes first (9 s)."""
    needs = {"p@x": set(), "q@x": {"p@x"}, "s@x": set(), "z@x": {"q@x", "s@x"}, "r@y": set()}
    expected = {"p@x": 3.0, "q@x": 3.0, "s@x": 4.0, "z@x": 1.0, "r@y": 6.0}
    ahead = repro._paths(needs, expected)
    assert ahead == {"p@x": 7, "q@x": 4, "s@x": 5, "z@x": 1, "r@y": 6}
    pending = set(needs)
    assert repro._finish(needs, expected, ahead, 0.0, {}, set(), pending, 2) == 10.0  # longest chain first
    ready = ["p@x", "s@x", "r@y"]
    assert repro.pick(ready, needs, expected, 0.0, {}, set(), pending, 2) == "s@x"
    running = {"s@x": 4.0}
    assert repro.pick(["p@x", "r@y"], needs, expected, 0.0, running, set(), pending - {"s@x"}, 2) == "p@x"
    assert repro._finish(needs, expected, ahead, 0.0, {"s@x": 4.0, "p@x": 3.0}, set(), {"q@x", "z@x", "r@y"}, 2) == 9.0
    # One worker: every order ends at the same time, so the longest chain goes first, then the place.
    assert repro.pick(ready, needs, expected, 0.0, {}, set(), pending, 1) == "p@x"
    # expected_seconds: a column's size scales its stages but not those in UNSCALED (evaluate, released).
    sized = repro.expected_seconds({"sft@a": set(), "evaluate@a": set(), "sft@b": set()}, {"a": 1.5})
    assert sized == {
        "sft@a": 1.5 * repro.STAGE_SECONDS["sft"],
        "evaluate@a": repro.STAGE_SECONDS["evaluate"],
        "sft@b": repro.STAGE_SECONDS["sft"],
    }
