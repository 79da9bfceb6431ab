"""The one offline policy (okapi.hub), both ways: offline by default; OKAPI_ALLOW_HUB=1 lets a hub id load.
No download happens: the tests check the environment the policy sets and what would be passed to the loader."""

from __future__ import annotations

import pytest

from okapi import evaluate
from okapi.hub import apply_offline_policy, is_hub_id
from okapi.io import DataError

HUB_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "OKAPI_ALLOW_HUB")


@pytest.fixture
def env(monkeypatch):
    for name in HUB_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_offline_by_default():
    environ: dict[str, str] = {}
    apply_offline_policy(environ)
    assert environ["HF_HUB_OFFLINE"] == environ["HF_DATASETS_OFFLINE"] == "1"
    assert not is_hub_id("bigscience/bloomz-560m", environ)


def test_allowed_hub_is_not_forced_offline_and_accepts_hub_ids(tmp_path):
    environ = {"OKAPI_ALLOW_HUB": "1"}
    apply_offline_policy(environ)
    assert "HF_HUB_OFFLINE" not in environ and "HF_DATASETS_OFFLINE" not in environ
    assert is_hub_id("bigscience/bloomz-560m", environ)
    assert not is_hub_id("not a hub id", environ)
    (tmp_path / "org").mkdir()
    assert not is_hub_id(tmp_path / "org", environ)  # an existing local path is never taken for a hub id


def test_a_value_the_user_exported_is_kept():
    environ = {"HF_HUB_OFFLINE": "0"}
    apply_offline_policy(environ)
    assert environ["HF_HUB_OFFLINE"] == "0"


class _RecordingHFLM:
    """Stands in for lm-eval's HFLM: records what it was asked to load and the hub setting at that moment."""

    calls: list[tuple[dict, str | None]] = []

    def __init__(self, **kwargs):
        import os

        type(self).calls.append((kwargs, os.environ.get("HF_HUB_OFFLINE")))


@pytest.fixture
def recording_hflm(monkeypatch):
    import lm_eval.models.huggingface as hf

    _RecordingHFLM.calls = []
    monkeypatch.setattr(hf, "HFLM", _RecordingHFLM)
    return _RecordingHFLM.calls


def test_evaluate_loads_a_hub_reference_model_only_when_allowed(env, recording_hflm):
    cfg = evaluate.EvalConfig()
    with pytest.raises(DataError, match="not a model folder"):
        evaluate.load_lm("bigscience/bloomz-560m", cfg)
    assert recording_hflm == []

    env.setenv("OKAPI_ALLOW_HUB", "1")  # a new process where the user allowed the hub
    env.delenv("HF_HUB_OFFLINE")
    evaluate.load_lm("bigscience/bloomz-560m", cfg)
    (kwargs, offline) = recording_hflm[0]
    assert kwargs["pretrained"] == "bigscience/bloomz-560m" and offline is None


def test_stages_go_offline_on_start(env):
    from okapi import cli

    cli.run(lambda argv: None, [])
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
