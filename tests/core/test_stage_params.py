"""Every param that dvc.yaml lists for a stage is read by that stage, and every param a stage reads is listed.

Each stage's main runs (in-process, in an empty folder, so its first input read fails) with ``load_params``
replaced by one that records what the stage reads: a section it loads (``rm``), a field it reads on a section
(``released.use``), a top-level value (``base``, ``report``, ``languages``) and ``languages.<code>`` when it applies
that language's overrides. The few calls that would do real work before the first input read (converting the base
model, starting a teacher, running the harness) are stopped. A stage that reads a param only after its inputs is
reported as not reading it: params are read and validated before any work (DESIGN.md).
"""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

import okapi.params
from okapi.io import DataError
from okapi.params import Params, read_params_file

ROOT = Path(__file__).resolve().parents[2]
LANG = "vi"


class Stop(Exception):
    """Raised where a stage would start real work (model conversion, a teacher, the harness)."""


def _stop(*args: Any, **kwargs: Any) -> Any:
    raise Stop


def _record_fields(obj: Any, section: str, reads: set[str]) -> Any:
    """Make ``obj`` (a config dataclass) add ``section.<field>`` to ``reads`` whenever a field is read."""
    fields = set(type(obj).__dataclass_fields__)
    base = type(obj)

    class Recorded(base):  # type: ignore[misc, valid-type]
        def __getattribute__(self, name: str) -> Any:
            if name in fields:
                reads.add(f"{section}.{name}")
            return super().__getattribute__(name)

    obj.__class__ = Recorded
    return obj


class RecordingParams(Params):
    def __init__(self, raw: dict[str, Any], lang: str | None = None) -> None:
        self.reads: set[str] = set()
        super().__init__(raw, lang)
        self.armed = True

    def __getattribute__(self, name: str) -> Any:
        if name in ("base", "report", "languages") and object.__getattribute__(self, "__dict__").get("armed"):
            object.__getattribute__(self, "reads").add(name)
        return super().__getattribute__(name)

    def _section(self, name: str, lang: str | None) -> Any:
        self.reads.add(name)
        if lang is not None:
            self.reads.add(f"languages.{lang}")
        return _record_fields(super()._section(name, lang), name, self.reads)


def _recording_loader(recorders: list[RecordingParams]) -> Any:
    """A stand-in for okapi.params.load_params that keeps every Params it hands out in ``recorders``."""

    def load(path: Any = "params.yaml", lang: str | None = None, sections: tuple[str, ...] = ()) -> Params:
        params = RecordingParams(read_params_file(path), lang)
        for section in sections:
            params.section(section)
        recorders.append(params)
        return params

    return load


def _stage_runs(dvc: dict[str, Any]) -> list[tuple[str, str, list[str], list[str]]]:
    """(stage name, module, argv, params listed) per stage, for language LANG where the stage is per language."""
    out = []
    for name, stage in dvc["stages"].items():
        body = stage.get("do", stage)
        cmd = body["cmd"].replace("${key}", LANG)
        words = shlex.split(cmd.split("-m ", 1)[1])
        listed = [str(p).replace("${key}", LANG) for p in body.get("params", [])]
        out.append((name, words[0], words[1:], listed))
    return out


def _covered(read: str, listed: list[str]) -> bool:
    return any(read == p or read.startswith(p + ".") or p.startswith(read + ".") for p in listed)


def _run_stages(params_file: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """What each stage of dvc.yaml reads when it runs with ``params_file`` (see the module docstring)."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    reads: dict[str, set[str]] = {}
    for name, module, argv, _ in _stage_runs(dvc):
        recorders: list[RecordingParams] = []
        stage = importlib.import_module(module)
        monkeypatch.setattr(stage, "load_params", _recording_loader(recorders))
        try:
            stage.main([*argv, "--params", str(params_file)])
        except (Stop, OSError, ValueError, DataError):
            pass  # the first input read (or a stopped call) ends the run; what was read before it is recorded
        reads[name] = set().union(*(r.reads for r in recorders))
    return reads


@pytest.mark.parametrize("profile", ["params.yaml", "configs/paper/params.yaml", "configs/paper-llama/params.yaml"])
def test_every_listed_param_is_read_and_every_read_param_is_listed(
    profile: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = read_params_file(ROOT / profile)
    raw["languages"] = {LANG: {}, **{k: v for k, v in raw["languages"].items() if k != LANG}}
    monkeypatch.chdir(tmp_path)
    for target in ("okapi.modeling.load_base_model", "okapi.teacher.open_teacher", "okapi.evaluate.evaluate_models"):
        monkeypatch.setattr(target, _stop)
    # released.use switches what generate / translate / sample / rank read (released.parts matters only when true),
    # so a listed param must be read in one of the two runs, and every param read in either run must be listed.
    runs = []
    for use in (False, True):
        path = tmp_path / f"params-{use}.yaml"
        variant = {**raw, "released": {**raw["released"], "use": use}}
        path.write_text(yaml.safe_dump(variant, sort_keys=False), encoding="utf-8")
        runs.append(_run_stages(path, monkeypatch))
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    problems = []
    for name, _, _, listed in _stage_runs(dvc):
        reads = runs[0][name] | runs[1][name]
        unread = [p for p in listed if not any(r == p or r.startswith(p + ".") for r in reads)]
        unlisted = sorted(r for r in reads if not _covered(r, listed))
        if unread:
            problems.append(f"{name}: dvc.yaml lists {unread} but the stage does not read them")
        if unlisted:
            problems.append(f"{name}: the stage reads {unlisted} but dvc.yaml does not list them")
    assert not problems, "\n".join(problems)


def test_a_retired_top_level_seed_is_one_clear_error(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    raw["seed"] = 1234
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(okapi.params.ConfigError, match="seed is no longer read: every stage .* has its own seed"):
        read_params_file(path)
