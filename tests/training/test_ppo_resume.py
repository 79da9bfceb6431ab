"""Resumable PPO checkpoints (a resumed run ends exactly where an uninterrupted one does) and DVCLive curves."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from safetensors.torch import load_file
from tiny import TINY_PPO, build_untrained_rm, small_config

from okapi.config import ConfigError
from okapi.ppo import CKPT_OPTIMIZER, CKPT_STATE, CKPT_WEIGHTS, VALUE_HEAD_FILE, PPOConfig, RewardFn, train_ppo

ROWS = [{"id": f"q{i:02d}", "instruction": f"Give three tips number {i}.", "input": ""} for i in range(10)]
# 10 prompts in batches of 4: 3 steps per epoch (the last one short), 5 steps in all, across an epoch boundary.
CFG = dict(
    **TINY_PPO,
    epochs=2,
    max_steps=5,
    checkpoint_every=2,
)


class Crash(RuntimeError):
    """Stands in for a killed job."""


def make_reward(crash_on_call: int | None = None) -> tuple[RewardFn, list[int]]:
    """A toy reward (longer responses score more) that can crash at its n-th call; also returns its call log.

    One factory, one function name: the runs under test have the same reward in their fingerprint."""
    calls: list[int] = []

    def reward(prompts: list[str], responses: list[str]) -> list[float]:
        calls.append(len(prompts))
        if crash_on_call is not None and len(calls) == crash_on_call:
            raise Crash(f"killed during reward call {crash_on_call}")
        return [float(len(r)) / 10 for r in responses]

    return reward, calls


def weights(out_dir: Path) -> dict[str, torch.Tensor]:
    return {**load_file(str(out_dir / "model.safetensors")), **load_file(str(out_dir / VALUE_HEAD_FILE))}


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, different


def state(ckpt: Path) -> dict:
    return json.loads((ckpt / CKPT_STATE).read_text())


@pytest.fixture
def ppo_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="okapi.ppo")
    return caplog


def test_a_run_killed_after_a_checkpoint_resumes_to_the_uninterrupted_result(
    tiny_model_dir: Path, tmp_path: Path, ppo_log: pytest.LogCaptureFixture
) -> None:
    cfg = small_config(PPOConfig, **CFG)
    reward, calls = make_reward()
    plain = train_ppo(tiny_model_dir, None, ROWS, None, tmp_path / "plain", cfg, reward_fn=reward)
    assert plain[0]["steps"] == 5 and len(calls) == 6  # five steps, then the final policy's KL samples

    # Killed while scoring step 4: steps 1-3 ran, the last checkpoint is step 2's (checkpoint_every = 2).
    ckpt = tmp_path / "ckpt"
    crashing, _ = make_reward(crash_on_call=4)
    with pytest.raises(Crash):
        train_ppo(tiny_model_dir, None, ROWS, None, tmp_path / "resumed", cfg, reward_fn=crashing, checkpoint_dir=ckpt)
    assert state(ckpt)["step"] == 2 and not (tmp_path / "resumed").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "plain"]  # no temporary folder left

    ppo_log.clear()
    reward, calls = make_reward()
    resumed = train_ppo(
        tiny_model_dir, None, ROWS, None, tmp_path / "resumed", cfg, reward_fn=reward, checkpoint_dir=ckpt
    )
    assert "resuming from step 2 of 5" in ppo_log.text
    assert len(calls) == 3 + 1  # only steps 3-5 ran again
    assert_same_weights(tmp_path / "plain", tmp_path / "resumed")
    assert resumed[1] == plain[1]  # history: losses, rewards and KLs of every step, bit for bit
    assert resumed == plain
    assert state(ckpt)["step"] == 5  # the last step is always saved

    # Finished: a rerun redoes no step, only the final evaluation and save.
    ppo_log.clear()
    reward, calls = make_reward()
    again = train_ppo(tiny_model_dir, None, ROWS, None, tmp_path / "again", cfg, reward_fn=reward, checkpoint_dir=ckpt)
    assert "resuming from step 5 of 5" in ppo_log.text and len(calls) == 1
    assert again == plain
    assert_same_weights(tmp_path / "plain", tmp_path / "again")


def test_longer_runs_resume_and_changed_params_start_fresh(
    tiny_model_dir: Path, tmp_path: Path, ppo_log: pytest.LogCaptureFixture
) -> None:
    ckpt = tmp_path / "ckpt"
    short = small_config(PPOConfig, **{**CFG, "max_steps": 1, "checkpoint_every": 1})
    reward, calls = make_reward()
    train_ppo(tiny_model_dir, None, ROWS, None, tmp_path / "o", short, reward_fn=reward, checkpoint_dir=ckpt)
    assert state(ckpt)["step"] == 1

    # max_steps only says where to stop: the run goes on from its checkpoint.
    ppo_log.clear()
    longer = small_config(PPOConfig, **{**CFG, "max_steps": 2, "checkpoint_every": 1})
    reward, calls = make_reward()
    metrics, _ = train_ppo(
        tiny_model_dir, None, ROWS, None, tmp_path / "o", longer, reward_fn=reward, checkpoint_dir=ckpt
    )
    assert "resuming from step 1 of 2" in ppo_log.text and len(calls) == 1 + 1 and metrics["steps"] == 2

    # A new learning rate is another run: the checkpoint is ignored (and says why), then overwritten.
    ppo_log.clear()
    other = small_config(PPOConfig, **{**CFG, "max_steps": 2, "checkpoint_every": 1, "learning_rate": 2e-3})
    reward, calls = make_reward()
    metrics, _ = train_ppo(
        tiny_model_dir, None, ROWS, None, tmp_path / "o", other, reward_fn=reward, checkpoint_dir=ckpt
    )
    assert "different ppo.learning_rate (0.001 -> 0.002)" in ppo_log.text and "starting PPO at step 0" in ppo_log.text
    assert "resuming" not in ppo_log.text and len(calls) == 2 + 1 and metrics["steps"] == 2
    assert state(ckpt)["fingerprint"]["ppo"]["learning_rate"] == 2e-3

    # So is another SFT model, even with the same params.
    sft = tmp_path / "sft"
    sft.mkdir()
    for f in tiny_model_dir.iterdir():
        (sft / f.name).write_bytes(f.read_bytes())
    with (sft / "config.json").open("a") as fh:
        fh.write("\n")
    ppo_log.clear()
    train_ppo(sft, None, ROWS, None, tmp_path / "o", other, reward_fn=reward, checkpoint_dir=ckpt)
    assert "different SFT model (file hash)" in ppo_log.text


@pytest.mark.parametrize("damage", ["missing optimizer", "truncated weights", "bad state"])
def test_a_damaged_checkpoint_is_ignored_with_a_warning_and_rewritten(
    tiny_model_dir: Path, tmp_path: Path, ppo_log: pytest.LogCaptureFixture, damage: str
) -> None:
    ckpt = tmp_path / "ckpt"
    cfg = small_config(PPOConfig, **{**CFG, "max_steps": 1})
    reward, _ = make_reward()
    train_ppo(tiny_model_dir, None, ROWS, None, tmp_path / "o", cfg, reward_fn=reward, checkpoint_dir=ckpt)
    if damage == "missing optimizer":
        (ckpt / CKPT_OPTIMIZER).unlink()
        expected = f"{ckpt / CKPT_OPTIMIZER} is missing"
    elif damage == "truncated weights":
        data = (ckpt / CKPT_WEIGHTS).read_bytes()
        (ckpt / CKPT_WEIGHTS).write_bytes(data[: len(data) // 2])
        expected = f"{ckpt / CKPT_WEIGHTS} does not load"
    else:
        (ckpt / CKPT_STATE).write_text('{"step": 1')
        expected = "is not readable JSON"

    ppo_log.clear()
    reward, calls = make_reward()
    metrics, _ = train_ppo(tiny_model_dir, None, ROWS, None, tmp_path / "o", cfg, reward_fn=reward, checkpoint_dir=ckpt)
    warnings = [r.getMessage() for r in ppo_log.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and expected in warnings[0] and "starting PPO at step 0" in warnings[0]
    assert len(calls) == 1 + 1 and metrics["steps"] == 1  # trained from scratch
    assert state(ckpt)["step"] == 1 and (ckpt / CKPT_OPTIMIZER).is_file()


def test_checkpoint_every_is_validated_and_zero_turns_checkpoints_off(tiny_model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ppo.checkpoint_every = -1 is invalid; allowed: 0 \(off\) or >= 1"):
        small_config(PPOConfig, checkpoint_every=-1)
    reward, _ = make_reward()
    cfg = small_config(PPOConfig, **{**CFG, "max_steps": 1, "checkpoint_every": 0})
    train_ppo(tiny_model_dir, None, ROWS, None, tmp_path / "o", cfg, reward_fn=reward, checkpoint_dir=tmp_path / "ck")
    assert (tmp_path / "ck").is_dir() and not any((tmp_path / "ck").iterdir())  # exists for DVC, holds nothing


# ---------------------------------------------------------------------------------------------------- the stage


def _tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.mark.parametrize("where", ["no repository", "git repository without commits"])
def test_stage_logs_dvclive_curves_and_resumes(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ppo_log: pytest.LogCaptureFixture, where: str
) -> None:
    from stages.ppo import main

    monkeypatch.chdir(tmp_path)  # DVCLive must need neither a DVC repository nor a git commit
    if where != "no repository":
        subprocess.run(["git", "init", "-q"], check=True)
    rm = build_untrained_rm(tiny_model_dir, tmp_path / "rm")
    rows = [{**r, "lang": "vi", "output": ""} for r in ROWS]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "ppo.parquet")
    ppo = {**CFG, "max_steps": 3, "checkpoint_every": 1, "heldout_fraction": 0.2, "heldout_samples": 1}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"languages": {"vi": {}}, "ppo": ppo}))
    args = [
        "--params", "params.yaml", "--lang", "vi", "--sft", str(tiny_model_dir), "--rm", str(rm),
        "--prompts", "ppo.parquet", "--out", "models/vi/ppo", "--metrics", "metrics/ppo/vi.json",
        "--history", "metrics/ppo/vi_history.json", "--live-dir", "metrics/ppo/vi/live",
        "--checkpoint-dir", "checkpoints/ppo/vi",
    ]  # fmt: skip
    main(args)

    live = tmp_path / "metrics/ppo/vi/live"
    history = json.loads((tmp_path / "metrics/ppo/vi_history.json").read_text())
    assert [h["step"] for h in history] == [1, 2, 3]
    for name in ("reward", "kl", "policy_loss", "value_loss", "clip_frac", "entropy", "response_length"):
        tsv = _tsv(live / "plots/metrics" / f"{name}.tsv")
        assert [int(r["step"]) for r in tsv] == [1, 2, 3], name
        assert [float(r[name]) for r in tsv] == pytest.approx([h[name] for h in history]), name
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["step"] == 3 and summary["reward"] == pytest.approx(history[-1]["reward"])
    assert not (live / "dvc.yaml").exists() and not (tmp_path / "dvc.yaml").exists()
    assert not (tmp_path / ".dvc").exists() and (tmp_path / ".git").exists() == (where != "no repository")
    assert state(tmp_path / "checkpoints/ppo/vi")["step"] == 3

    # DVC empties the stage's outputs before a rerun but keeps the persistent checkpoint: nothing is trained again
    # and the curves come back whole from the checkpoint's history.
    first_metrics = json.loads((tmp_path / "metrics/ppo/vi.json").read_text())
    first_summary = (live / "metrics.json").read_bytes()
    for out in ("models/vi/ppo", "metrics/ppo/vi/live/plots", "metrics/ppo/vi/live/metrics.json"):
        path = tmp_path / out
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    ppo_log.clear()
    main(args)
    assert "resuming from step 3 of 3" in ppo_log.text
    assert json.loads((tmp_path / "metrics/ppo/vi.json").read_text()) == first_metrics
    assert [int(r["step"]) for r in _tsv(live / "plots/metrics/kl.tsv")] == [1, 2, 3]
    assert (live / "metrics.json").read_bytes() == first_summary  # the same bytes, keys in the same order
    assert (tmp_path / "models/vi/ppo" / VALUE_HEAD_FILE).is_file()
