"""Plumbing that SFT, the reward model and PPO share: the effective batch, TRL trainer arguments, training then
saving atomically under accelerate, and the metrics block every training stage reports.

The recipes (what is trained on which data) stay in okapi.sft, okapi.reward and okapi.ppo; this module holds only
what would otherwise be copied between them.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import torch

from okapi.io import replace_dir


def tmp_dir(out_dir: Path) -> Path:
    """The temporary sibling a model folder is written to before it replaces ``out_dir``.

    Deterministic, so every process of a multi-GPU run writes its share of the checkpoint to the same place."""
    return out_dir.parent / f".{out_dir.name}.tmp"


def accumulation_steps(batch_size: int, per_device: int, n_processes: int) -> int:
    """Gradient accumulation that makes per_device x processes x accumulation reach the effective batch size."""
    return max(1, math.ceil(batch_size / (per_device * n_processes)))


def use_bf16() -> bool:
    # TRL turns bf16 on by default; on a CPU that is emulated and about 20x slower, so only on capable GPUs.
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def trainer_args(cfg: Any, accumulation: int) -> dict[str, Any]:
    """The TRL/transformers training arguments SFT and the reward model share (``cfg``: SFTConfig or
    RewardConfig): schedule, precision, logging, seeds, no checkpoint saving and no reporting."""
    return dict(
        num_train_epochs=cfg.num_train_epochs,
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        gradient_accumulation_steps=accumulation,
        bf16=use_bf16(),
        fp16=False,
        # TRL turns activation checkpointing on by default (~20% slower); only when asked for. The deprecated
        # gradient_checkpointing alias is cleared so transformers does not warn about it.
        activation_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing=None,
        logging_steps=cfg.logging_steps,
        save_strategy="no",
        report_to=[],
        seed=cfg.seed,
        data_seed=cfg.seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Every parameter takes part in the loss; transformers' default (True without activation checkpointing)
        # costs DDP an extra pass over the autograd graph at every step.
        ddp_find_unused_parameters=False,
    )


def train_and_save(trainer: Any, out_dir: Path) -> Any:
    """Run ``trainer.train()`` and publish the model to ``out_dir`` atomically; returns the TrainOutput.

    Works the same in one process and under ``accelerate launch``: every process trains and takes part in
    save_model (sharded states are gathered), only the main one clears leftovers and renames the folder, and all
    wait for it, so no process reads a half-written ``out_dir``."""
    tmp = tmp_dir(Path(out_dir))
    if trainer.is_world_process_zero() and tmp.exists():
        shutil.rmtree(tmp)  # leftovers of a killed run
    trainer.accelerator.wait_for_everyone()
    result = trainer.train()
    trainer.save_model(str(tmp))
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        for leftover in tmp.glob("checkpoint-*"):
            shutil.rmtree(leftover)
        (tmp / "training_args.bin").unlink(missing_ok=True)
        replace_dir(tmp, Path(out_dir))
    trainer.accelerator.wait_for_everyone()
    return result


def loss_history(trainer: Any) -> list[float]:
    return [float(e["loss"]) for e in trainer.state.log_history if "loss" in e]


def trainer_metrics(trainer: Any, result: Any) -> dict[str, Any]:
    """The metrics block every TRL-trained stage reports: losses, steps, epochs and the batch actually used."""
    losses = loss_history(trainer)
    args = trainer.args
    n_proc = trainer.accelerator.num_processes
    return {
        "train_loss": float(result.training_loss),
        "first_loss": losses[0] if losses else float("nan"),
        "last_loss": losses[-1] if losses else float("nan"),
        "steps": int(trainer.state.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
        "effective_batch_size": int(args.per_device_train_batch_size * args.gradient_accumulation_steps * n_proc),
        "processes": int(n_proc),
    }
