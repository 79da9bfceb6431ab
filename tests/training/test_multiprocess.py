"""The training stages under a real ``accelerate launch`` with two processes on the CPU (DDP over gloo).

Each test launches a stage script exactly as a cluster run would, only with two CPU processes: the stage exits 0,
both processes take part (a metric or a log line says so), the main process alone writes the model folder, the
folder loads, the weights moved and the metrics are finite.

How to launch several CPU processes with accelerate 1.x: ``accelerate launch --cpu --num_processes 2`` starts ONE
process (its CPU launcher only fans out through mpirun), so the launch goes through the multi-GPU launcher
(torchrun) and ACCELERATE_USE_CPU=true makes every process a MULTI_CPU (gloo) rank.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from fakes import toy_pairs
from safetensors.torch import load_file
from tiny import build_untrained_rm

from okapi.io import write_parquet
from okapi.modeling import decoder_layers, load_causal_lm
from okapi.schemas import PAIRS, PROMPTS

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 240  # a healthy launch takes 15-30 s here; a deadlocked one fails at this limit instead of hanging
MODEL_FILES = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


class Deadlock(AssertionError):
    """The launch outlived its time limit: a collective some process never joined, most likely."""


def launch(stage: str, args: list[str], log_file: Path, timeout_s: float = TIMEOUT_S) -> str:
    """Run ``accelerate launch ... -m stages.<stage> <args>`` with two CPU processes; return its output.

    Fails the test on a non-zero exit; raises Deadlock (after stopping every process it started) on a timeout.
    """
    import psutil

    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",  # two processes on a small CPU: more threads each only contend
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OKAPI_LOG_LEVEL": "INFO",
    }
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",  # accelerate picks a free port
        "-m",
        f"stages.{stage}",
        *args,
    ]
    with log_file.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            # torchrun starts each worker in a session of its own: note them before the launcher goes away.
            workers = psutil.Process(proc.pid).children(recursive=True)
            proc.send_signal(signal.SIGTERM)  # the launcher passes it on to its workers
            _, alive = psutil.wait_procs(workers, timeout=20)
            for worker in alive:
                worker.kill()
            proc.kill()
            proc.wait()
            text = log_file.read_text(encoding="utf-8", errors="replace")
            raise Deadlock(
                f"stages.{stage} under 2 processes did not finish in {timeout_s} s:\n{text[-3000:]}"
            ) from None
    text = log_file.read_text(encoding="utf-8", errors="replace")
    assert proc.returncode == 0, f"stages.{stage} under 2 processes exited {proc.returncode}:\n{text[-6000:]}"
    return text


def write_params(tmp_path: Path, **sections: dict[str, Any]) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"languages": {"vi": {}}, **sections}), encoding="utf-8")
    return path


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {
        k for k in before if k in after and before[k].shape == after[k].shape and not torch.equal(before[k], after[k])
    }


def leftovers(folder: Path, expected: set[str]) -> list[str]:
    """Anything but the expected entries: temp folders of a save, checkpoints, a second copy of an output."""
    return sorted(p.name for p in folder.iterdir() if p.name not in expected)


def finite(metrics: dict[str, Any], *keys: str) -> None:
    for key in keys:
        assert isinstance(metrics[key], (int, float)) and math.isfinite(metrics[key]), (key, metrics[key])


def prompts_file(tmp_path: Path, n: int) -> Path:
    outputs = ["Eat well, sleep, exercise.", "Hello world.", "Carbon dioxide."]
    rows = [
        {
            "id": f"q{i:02d}",
            "lang": "vi",
            "instruction": f"Give tips number {i}.",
            "input": "",
            "output": outputs[i % 3],
        }
        for i in range(n)
    ]
    path = tmp_path / "prompts.parquet"
    write_parquet(rows, path, PROMPTS)
    return path


# ---------------------------------------------------------------------------------------------------- launch


def test_a_launch_whose_processes_each_run_alone_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchrun started 2 processes, but without a GPU and without ACCELERATE_USE_CPU accelerate makes each a
    single-process run: they would train separately and race to write one output folder."""
    from okapi import modeling
    from okapi.config import ConfigError

    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="ACCELERATE_USE_CPU=true"):
        modeling.world_size()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert modeling.world_size() == 1


# ---------------------------------------------------------------------------------------------------- SFT


def test_sft_under_two_processes(tiny_model_dir: Path, tmp_path: Path) -> None:
    data = prompts_file(tmp_path, 8)
    params = write_params(
        tmp_path,
        sft={
            "learning_rate": 1e-3,
            "warmup_steps": 0,
            "batch_size": 4,
            "per_device_train_batch_size": 2,
            "max_seq_length": 256,
            "max_steps": 2,
        },
    )
    out, metrics_file = tmp_path / "sft", tmp_path / "sft.json"
    args = ["--params", str(params), "--lang", "vi", "--model", str(tiny_model_dir), "--data", str(data)]
    launch("sft", [*args, "--out", str(out), "--metrics", str(metrics_file)], tmp_path / "sft.log")

    metrics = json.loads(metrics_file.read_text())
    assert metrics["processes"] == 2
    # 2 processes x 2 per device x accumulation 1: the accumulation was divided by the real world size (with the
    # world size read as 1 it was 2, an effective batch of 8 and two epochs in two steps).
    assert metrics["effective_batch_size"] == 4
    assert metrics["steps"] == 2 and metrics["epochs"] == pytest.approx(1.0)
    finite(metrics, "train_loss", "first_loss", "last_loss")
    assert metrics["last_loss"] < metrics["first_loss"]

    assert sorted(p.name for p in out.iterdir()) == MODEL_FILES
    assert leftovers(tmp_path, {"prompts.parquet", "params.yaml", "sft", "sft.json", "sft.log"}) == []
    before, after = weights(tiny_model_dir), weights(out)
    assert len(changed(before, after)) > 0.9 * len(before)  # full fine-tuning: (almost) every tensor moved
    model, tok = load_causal_lm(out, for_training=False)
    assert model.get_input_embeddings().num_embeddings == len(tok)


# ---------------------------------------------------------------------------------------------------- reward model


def test_reward_model_under_two_processes(tiny_model_dir: Path, tmp_path: Path) -> None:
    pairs = toy_pairs(10)
    write_parquet(pairs, tmp_path / "pairs.parquet", PAIRS)
    params = write_params(
        tmp_path,
        rm={
            "learning_rate": 1e-3,
            "batch_size": 4,
            "per_device_train_batch_size": 2,
            "max_length": 256,
            "eval_fraction": 0.2,
            "max_steps": 2,
        },
    )
    out, metrics_file = tmp_path / "rm", tmp_path / "rm.json"
    args = [
        "--params",
        str(params),
        "--lang",
        "vi",
        "--sft",
        str(tiny_model_dir),
        "--pairs",
        str(tmp_path / "pairs.parquet"),
    ]
    launch("rm", [*args, "--out", str(out), "--metrics", str(metrics_file)], tmp_path / "rm.log")

    metrics = json.loads(metrics_file.read_text())
    assert metrics["processes"] == 2 and metrics["effective_batch_size"] == 4
    assert metrics["steps"] == 2 and metrics["epochs"] == pytest.approx(1.0)  # 8 training pairs, 2 x 4 per step
    assert metrics["train_pairs"] == 8 and metrics["heldout_pairs"] == 2
    finite(metrics, "train_loss", "first_loss", "last_loss", "heldout_accuracy", "heldout_margin")

    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert leftovers(tmp_path, {"pairs.parquet", "params.yaml", "rm", "rm.json", "rm.log"}) == []
    before, after = weights(tiny_model_dir), weights(out)
    assert "score.weight" in after
    assert len(changed(before, after)) > 0.9 * (len(before) - 1)  # the trunk moved (the LM head is gone)
    from okapi.reward import load_reward_model

    model, _ = load_reward_model(out)
    assert model.config.num_labels == 1


# ---------------------------------------------------------------------------------------------------- PPO


PPO_PARAMS = {
    "top_layers": 2,
    "epochs": 1,
    "learning_rate": 1e-3,
    "batch_size": 4,
    "mini_batch_size": 2,
    "ppo_epochs": 2,
    "max_new_tokens": 6,
    "heldout_fraction": 0.25,
    "heldout_samples": 1,
    "eval_batch_size": 4,
}


def run_ppo(tiny_model_dir: Path, tmp_path: Path, n_prompts: int, timeout_s: float = TIMEOUT_S, **ppo: Any) -> tuple:
    data = prompts_file(tmp_path, n_prompts)
    rm = build_untrained_rm(tiny_model_dir, tmp_path / "rm")
    params = write_params(tmp_path, ppo={**PPO_PARAMS, **ppo})
    out = tmp_path / "ppo"
    args = ["--params", str(params), "--lang", "vi", "--sft", str(tiny_model_dir), "--rm", str(rm)]
    files = ["--prompts", str(data), "--out", str(out), "--metrics", str(tmp_path / "ppo.json")]
    text = launch("ppo", [*args, *files, "--history", str(tmp_path / "history.json")], tmp_path / "ppo.log", timeout_s)
    metrics = json.loads((tmp_path / "ppo.json").read_text())
    history = json.loads((tmp_path / "history.json").read_text())
    return out, metrics, history, text


PPO_OUTPUTS = {"prompts.parquet", "params.yaml", "rm", "ppo", "ppo.json", "history.json", "ppo.log"}


def test_ppo_under_two_processes(tiny_model_dir: Path, tmp_path: Path) -> None:
    # 8 prompts: 2 held out, 6 to train on in batches of 4 and 2, each split evenly between the processes.
    out, metrics, history, text = run_ppo(tiny_model_dir, tmp_path, 8)

    assert metrics["prompts"] == 6 and metrics["heldout_prompts"] == 2
    assert metrics["steps"] == 2 and [h["step"] for h in history] == [1, 2]
    # Every process runs the loop and logs its (reduced) step: both took part in every step.
    for step in (1, 2):
        assert text.count(f"ppo step {step}: ") == 2, text[-3000:]
    finite(metrics, "mean_reward_sft_heldout", "mean_reward_ppo_heldout", "kl", "policy_loss", "value_loss", "entropy")
    assert all(math.isfinite(v) for h in history for v in h.values())
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-4)  # the first batch is sampled before any update

    assert sorted(p.name for p in out.iterdir()) == sorted([*MODEL_FILES, "value_head.safetensors"])
    assert leftovers(tmp_path, PPO_OUTPUTS) == []
    before, after = weights(tiny_model_dir), weights(out)
    moved = changed(before, after)
    assert moved and all(k.startswith(("model.layers.4.", "model.layers.5.")) for k in moved)  # top 2 of 6 only
    head = load_file(str(out / "value_head.safetensors"))
    assert head["weight"].abs().sum() > 0  # the value head (zero at the start) learned
    model, _ = load_causal_lm(out, for_training=False)
    assert len(decoder_layers(model)) == 6


def test_ppo_under_two_processes_with_a_short_last_batch(tiny_model_dir: Path, tmp_path: Path) -> None:
    # 9 prompts: 2 held out, 7 to train on in batches of 4 and 3; the batch of 3 does not split evenly.
    out, metrics, history, text = run_ppo(
        tiny_model_dir, tmp_path, 9, timeout_s=60, heldout_fraction=0.2, mini_batch_size=1, ppo_epochs=1
    )
    assert metrics["processes"] == 2
    assert metrics["prompts"] == 7 and metrics["steps"] == 2 and len(history) == 2
    for step in (1, 2):
        assert text.count(f"ppo step {step}: ") == 2, text[-3000:]
    finite(metrics, "mean_reward_ppo_heldout", "kl", "policy_loss", "value_loss")
    assert sorted(p.name for p in out.iterdir()) == sorted([*MODEL_FILES, "value_head.safetensors"])
    assert leftovers(tmp_path, PPO_OUTPUTS) == []
