"""Resumable PPO checkpoints: what is saved, the run fingerprint that decides whether to resume, and loading."""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from okapi.config import to_dict
from okapi.io import DataError, atomic_dir, write_json
from okapi.ppo.config import PPOConfig
from okapi.ppo.policy import PolicyWithValue

log = logging.getLogger(__name__)

# Resumable checkpoints: one folder, replaced atomically at each save, with only what PPO changes.

CHECKPOINT_FORMAT = 1
CKPT_STATE = "state.json"  # step, history, fingerprint; written last
CKPT_WEIGHTS = "trainable.safetensors"  # the top blocks and the value head, by parameter name
CKPT_OPTIMIZER = "optimizer.pt"
CKPT_RNG = "rng_states.pt"  # one entry per process
CKPT_SCALER = "grad_scaler.pt"  # fp16 mixed precision only
# How long the run is, how often it is saved and how the held-out prompts are scored: none of these changes what
# steps 1..k do, so changing one resumes (or extends) a run instead of restarting it.
NOT_IN_FINGERPRINT = frozenset({"checkpoint_every", "max_steps", "epochs", "eval_batch_size", "heldout_samples"})
_FINGERPRINT_PARTS = {
    "format": "checkpoint format",
    "sft_model": "SFT model (file hash)",
    "reward": "reward model",
    "prompts": "set of PPO prompts",
    "num_processes": "number of processes",
    "mixed_precision": "mixed precision",
}


class CheckpointError(DataError):
    """A checkpoint folder that cannot be resumed from; the message names the file and the problem."""


@dataclass
class Checkpoint:
    """A loaded checkpoint: the PPO steps done, their history, and the states to continue from."""

    step: int
    history: list[dict[str, Any]]
    weights: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    scaler: dict[str, Any] | None


def hash_folder(folder: Path) -> str:
    """sha256 over every file's relative path, size and bytes, in sorted path order."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def run_fingerprint(
    cfg: PPOConfig, sft_dir: Path, reward: str, prompts: list[str], num_processes: int, mixed_precision: str
) -> dict[str, Any]:
    """Everything that decides PPO's trajectory: a checkpoint resumes only a run with the same fingerprint."""
    params = {k: v for k, v in to_dict(cfg).items() if k not in NOT_IN_FINGERPRINT}
    fingerprint = {
        "format": CHECKPOINT_FORMAT,
        "ppo": params,
        "sft_model": hash_folder(sft_dir),
        "reward": reward,
        "prompts": hashlib.sha256(json.dumps(prompts, ensure_ascii=False).encode()).hexdigest(),
        "num_processes": num_processes,
        "mixed_precision": str(mixed_precision),
    }
    return json.loads(json.dumps(fingerprint))  # tuples become lists, as they come back from state.json


def fingerprint_changes(old: Any, new: dict[str, Any]) -> list[str]:
    """What differs between a checkpoint's fingerprint and this run's, in words ([] when they match)."""
    if not isinstance(old, dict):
        return ["fingerprint (none recorded)"]
    changes = []
    for key, value in new.items():
        if key == "ppo":
            before = old.get("ppo") if isinstance(old.get("ppo"), dict) else {}
            changes += [f"ppo.{k} ({before.get(k)!r} -> {v!r})" for k, v in value.items() if before.get(k) != v]
        elif old.get(key) != value:
            changes.append(_FINGERPRINT_PARTS.get(key, key))
    return changes


def rng_state() -> dict[str, Any]:
    """This process's python, numpy, torch and CUDA generator states (torch.load(weights_only=True)-safe)."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, key, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    ckpt_dir: Path,
    policy: PolicyWithValue,
    optimizer: Any,
    accelerator: Any,
    step: int,
    history: list[dict[str, Any]],
    fingerprint: dict[str, Any] | None,
) -> None:
    """Every process hands in its RNG state; the main process writes the folder (temp folder, then rename)."""
    from accelerate.utils import gather_object
    from safetensors.torch import save_file

    rngs = gather_object([rng_state()])
    if accelerator.is_main_process:
        with atomic_dir(ckpt_dir) as tmp:
            weights = {n: p.detach().cpu().contiguous() for n, p in policy.named_parameters() if p.requires_grad}
            save_file(weights, str(tmp / CKPT_WEIGHTS))
            torch.save(optimizer.state_dict(), tmp / CKPT_OPTIMIZER)
            torch.save(list(rngs), tmp / CKPT_RNG)
            if accelerator.scaler is not None:
                torch.save(accelerator.scaler.state_dict(), tmp / CKPT_SCALER)
            state = {"format": CHECKPOINT_FORMAT, "step": step, "history": history, "fingerprint": fingerprint}
            write_json(state, tmp / CKPT_STATE)
        log.info("saved PPO checkpoint at step %d to %s", step, ckpt_dir)
    accelerator.wait_for_everyone()


def read_checkpoint_state(ckpt_dir: Path, fingerprint: dict[str, Any], total: int) -> tuple[dict[str, Any] | None, str]:
    """(state.json, "") when the checkpoint in ``ckpt_dir`` continues this run, else (None, the reason why not)."""
    state_file = ckpt_dir / CKPT_STATE
    if not ckpt_dir.is_dir() or not any(ckpt_dir.iterdir()):
        return None, f"no checkpoint in {ckpt_dir}"
    if not state_file.is_file():
        return None, f"ignoring checkpoint {ckpt_dir}: {CKPT_STATE} is missing (an incomplete checkpoint)"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return None, f"ignoring checkpoint {ckpt_dir}: {state_file} is not readable JSON ({err})"
    step = state.get("step") if isinstance(state, dict) else None
    history = state.get("history") if isinstance(state, dict) else None
    if not isinstance(step, int) or step < 0 or not isinstance(history, list) or len(history) != step:
        return None, f"ignoring checkpoint {ckpt_dir}: {state_file} lacks a step count matching its history"
    changes = fingerprint_changes(state.get("fingerprint"), fingerprint)
    if changes:
        return None, f"ignoring checkpoint {ckpt_dir}: it was made with a different {', '.join(changes)}"
    if step > total:
        return None, f"ignoring checkpoint {ckpt_dir}: it is at step {step}, past this run's last step {total}"
    return state, ""


def load_checkpoint(
    ckpt_dir: Path, state: dict[str, Any], policy: PolicyWithValue, optimizer: Any, process_index: int, n_proc: int
) -> Checkpoint:
    """Read a checkpoint's tensors and check them against this run's model and optimizer (CheckpointError if not)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    def need(name: str) -> Path:
        path = ckpt_dir / name
        if not path.is_file():
            raise CheckpointError(f"{path} is missing (an incomplete checkpoint)")
        return path

    weights_file, opt_file, rng_file = need(CKPT_WEIGHTS), need(CKPT_OPTIMIZER), need(CKPT_RNG)
    loading = weights_file
    try:
        weights = load_file(str(weights_file))
        loading = opt_file
        opt_state = torch.load(opt_file, map_location="cpu", weights_only=True)
        loading = rng_file
        rngs = torch.load(rng_file, map_location="cpu", weights_only=True)
        loading = ckpt_dir / CKPT_SCALER
        scaler = torch.load(loading, map_location="cpu", weights_only=True) if loading.is_file() else None
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError) as err:
        raise CheckpointError(f"{loading} does not load ({type(err).__name__}: {err})") from err
    expected = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    wrong = sorted(set(weights) ^ set(expected)) + sorted(
        n for n in set(weights) & set(expected) if weights[n].shape != expected[n].shape
    )
    if wrong:
        raise CheckpointError(
            f"{ckpt_dir / CKPT_WEIGHTS} does not match this model's {len(expected)} trainable tensors "
            f"(first mismatch: {wrong[0]})"
        )
    groups = opt_state.get("param_groups") if isinstance(opt_state, dict) else None
    ours = optimizer.state_dict()["param_groups"]
    if not isinstance(groups, list) or [len(g.get("params", ())) for g in groups] != [len(g["params"]) for g in ours]:
        raise CheckpointError(f"{ckpt_dir / CKPT_OPTIMIZER} does not hold this optimizer's parameter groups")
    if not isinstance(rngs, list) or len(rngs) != n_proc:
        raise CheckpointError(f"{ckpt_dir / CKPT_RNG} does not hold one RNG state for each of {n_proc} processes")
    rng = rngs[process_index]
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not isinstance(rng, dict) or set(rng) != {"python", "numpy", "torch", "cuda"} or len(rng["cuda"]) != n_gpus:
        raise CheckpointError(f"{ckpt_dir / CKPT_RNG}: process {process_index}'s RNG state does not fit {n_gpus} GPUs")
    return Checkpoint(state["step"], state["history"], weights, opt_state, rng, scaler)


def resume_checkpoint(
    ckpt_dir: Path,
    fingerprint: dict[str, Any] | None,
    total: int,
    policy: PolicyWithValue,
    optimizer: Any,
    accelerator: Any,
) -> Checkpoint | None:
    """The checkpoint to continue from, or None (with a log line saying why) to start at step 0.

    The main process alone reads state.json and compares fingerprints (``fingerprint`` is None elsewhere); every
    process then loads the tensors, and all start fresh unless all of them could.
    """
    from accelerate.utils import broadcast_object_list

    decision: list[Any] = [None]
    if accelerator.is_main_process:
        if fingerprint is None:
            raise ValueError("resume_checkpoint: the main process needs this run's fingerprint")
        _remove_stale_saves(ckpt_dir)
        decision = [read_checkpoint_state(ckpt_dir, fingerprint, total)]
    state, why = broadcast_object_list(decision)[0]
    ckpt, problem = None, ""
    if state is not None:
        try:
            ckpt = load_checkpoint(
                ckpt_dir, state, policy, optimizer, accelerator.process_index, accelerator.num_processes
            )
        except CheckpointError as err:
            problem = f"ignoring checkpoint {ckpt_dir}: {err}"
            if not accelerator.is_main_process:  # the main process says it below
                log.warning("process %d: %s", accelerator.process_index, problem)
        failed = accelerator.reduce(torch.tensor(float(ckpt is None), device=accelerator.device), reduction="sum")
        if float(failed) > 0:
            why, ckpt = problem or f"ignoring checkpoint {ckpt_dir}: it does not load on another process", None
    if ckpt is None:
        if accelerator.is_main_process:
            level = logging.INFO if state is None and why.startswith("no checkpoint") else logging.WARNING
            log.log(level, "%s; starting PPO at step 0 (the folder is overwritten at the first save)", why)
        return None
    if accelerator.is_main_process:
        log.info("resuming from step %d of %d (PPO checkpoint %s)", ckpt.step, total, ckpt_dir)
    return ckpt


def _remove_stale_saves(ckpt_dir: Path) -> None:
    """Temporary siblings a killed save left behind (atomic_dir / replace_dir name them .<name>.*.tmp/.old)."""
    if ckpt_dir.parent.is_dir():
        for stale in [
            *ckpt_dir.parent.glob(f".{ckpt_dir.name}.*.tmp"),
            *ckpt_dir.parent.glob(f".{ckpt_dir.name}.*.old"),
        ]:
            shutil.rmtree(stale, ignore_errors=True)


def apply_checkpoint(ckpt: Checkpoint, policy: PolicyWithValue, optimizer: Any, accelerator: Any) -> None:
    """Load the trained blocks, the value head, the optimizer and the gradient scaler (RNG: see set_rng_state)."""
    params = dict(policy.named_parameters())
    with torch.no_grad():
        for name, tensor in ckpt.weights.items():
            params[name].copy_(tensor)
    optimizer.load_state_dict(ckpt.optimizer)
    if ckpt.scaler is not None and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(ckpt.scaler)
