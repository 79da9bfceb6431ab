"""Supervised fine-tuning on (instruction, input, output) triples (Okapi §3, "Supervised Fine-tuning").

TRL's SFTTrainer on prompt-completion data: the prompt is the Alpaca template, the completion the response plus
EOS, and only completion tokens carry loss. Runs unchanged on a laptop CPU and under ``accelerate launch``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from okapi.config import check, check_choices
from okapi.io import DataError
from okapi.modeling import load_causal_lm, world_size
from okapi.prompting import format_example
from okapi.training import accumulation_steps, tmp_dir, train_and_save, trainer_args, trainer_metrics

log = logging.getLogger(__name__)


@dataclass
class SFTConfig:
    """The ``sft`` and ``sft_full`` sections (the same recipe, each with its own values).

    Paper §3: 3 epochs, lr 2e-5, cosine schedule, 200 warm-up steps, batch 128, weight decay 0.05."""

    num_train_epochs: float = 2.0
    """Passes over the training rows (paper: 3)."""
    learning_rate: float = 5e-5
    """Peak learning rate (paper: 2e-5; larger so a few CPU steps move something)."""
    warmup_steps: int = 2
    """Linear warm-up steps (paper: 200)."""
    lr_scheduler_type: Literal[
        "cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"
    ] = "cosine"
    """transformers' learning-rate schedule (paper: cosine)."""
    weight_decay: float = 0.05
    """AdamW weight decay (paper: 0.05)."""
    batch_size: int = 8
    """Effective batch: all processes together, after gradient accumulation (paper: 128)."""
    per_device_train_batch_size: int = 4
    """Rows per process per forward pass; accumulation makes up the rest of batch_size."""
    max_seq_length: int = 384
    """Tokens of prompt + response; TRL truncates longer examples (and drops those left with no response)."""
    max_steps: int = -1
    """Optimizer steps; -1: run num_train_epochs."""
    seed: int = 0
    """Seeds data order and initialisation."""
    logging_steps: int = 1
    """Log the loss every N steps (the metrics' first/last loss come from these logs)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about 20% slower."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    batching: Literal["rebalance", "random"] = "rebalance"
    """How rows become micro-batches. rebalance: each optimizer step still draws a random effective batch
    (batch_size rows, seeded by ``seed``), whose rows are then split by length into micro-batches of about equal
    padded cost (transformers' BatchRebalanceSampler, across processes too): less padding, and since the loss is
    a token mean over the whole effective batch, the same gradient as any other split. random: random
    micro-batches (torch's RandomSampler)."""

    def __post_init__(self) -> None:
        check_choices(self, "sft")
        check(self.num_train_epochs > 0, "sft.num_train_epochs", self.num_train_epochs, "> 0")
        check(0 < self.learning_rate < 1, "sft.learning_rate", self.learning_rate, "0 < lr < 1")
        check(self.warmup_steps >= 0, "sft.warmup_steps", self.warmup_steps, ">= 0")
        check(0 <= self.weight_decay < 1, "sft.weight_decay", self.weight_decay, "0 <= wd < 1")
        check(self.batch_size >= 1, "sft.batch_size", self.batch_size, ">= 1")
        check(
            1 <= self.per_device_train_batch_size <= self.batch_size,
            "sft.per_device_train_batch_size",
            self.per_device_train_batch_size,
            f"1..batch_size ({self.batch_size})",
        )
        check(self.max_seq_length >= 16, "sft.max_seq_length", self.max_seq_length, ">= 16")
        check(self.max_steps == -1 or self.max_steps >= 1, "sft.max_steps", self.max_steps, "-1 or >= 1")
        check(self.logging_steps >= 1, "sft.logging_steps", self.logging_steps, ">= 1")
        check(self.max_grad_norm > 0, "sft.max_grad_norm", self.max_grad_norm, "> 0")


def sft_examples(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Prompt-completion records; a row without instruction or output stops the stage naming the record.

    Input columns: schemas.PROMPTS: instruction, input, output.
    Output columns: none (TRL prompt-completion dicts: prompt, completion).
    """
    out = []
    for i, row in enumerate(rows):
        where = f"SFT row {i} (id {row.get('id')!r})"
        for key in ("instruction", "output"):
            value = row.get(key)
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{where}: field {key!r} is missing or empty; SFT needs instruction and output")
        prompt, completion = format_example(row["instruction"], row.get("input"), row["output"])
        out.append({"prompt": prompt, "completion": completion})
    return out


def _seeded_sampler(trainer_cls: type) -> type:
    """``trainer_cls`` whose BatchRebalanceSampler is seeded by the run's data seed (transformers leaves it at
    its own fixed default, so ``seed`` would not change the data order)."""
    from transformers.trainer_pt_utils import BatchRebalanceSampler

    class SeededSampler(trainer_cls):
        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            sampler = super()._get_train_sampler(train_dataset)
            if isinstance(sampler, BatchRebalanceSampler):
                sampler.seed = int(self.args.data_seed if self.args.data_seed is not None else self.args.seed)
            return sampler

    return SeededSampler


def build_sft_trainer(model_dir: Path, rows: list[dict[str, Any]], out_dir: Path, cfg: SFTConfig) -> Any:
    """The configured TRL SFTTrainer (exposed so tests can inspect its tokenized data and labels)."""
    from datasets import Dataset
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    if not rows:
        raise DataError("SFT: no training rows; the prompts file is empty")
    examples = sft_examples(rows)
    model, tokenizer = load_causal_lm(model_dir, for_training=True)
    n_proc = world_size()
    accum = accumulation_steps(cfg.batch_size, cfg.per_device_train_batch_size, n_proc)
    effective = accum * cfg.per_device_train_batch_size * n_proc
    if effective != cfg.batch_size:
        log.warning(
            "effective batch size is %d (batch_size %d is not a multiple of %d x %d processes)",
            effective,
            cfg.batch_size,
            cfg.per_device_train_batch_size,
            n_proc,
        )
    args = TRLSFTConfig(
        output_dir=str(tmp_dir(Path(out_dir))),
        **trainer_args(cfg, accum),
        max_grad_norm=cfg.max_grad_norm,
        max_length=cfg.max_seq_length,
        completion_only_loss=True,
        packing=False,
        train_sampling_strategy="batch_rebalance" if cfg.batching == "rebalance" else "random",
    )
    trainer = _seeded_sampler(SFTTrainer)(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
    )
    # TRL drops examples whose response is cut off entirely by max_length: count them, and stop when none is left.
    trainer.dropped_no_response = len(examples) - len(trainer.train_dataset)
    if trainer.dropped_no_response:
        log.warning(
            "SFT: %d of %d examples have no response token left within max_seq_length = %d and were dropped",
            trainer.dropped_no_response,
            len(examples),
            cfg.max_seq_length,
        )
    if len(trainer.train_dataset) == 0:
        raise DataError(
            f"SFT: all {len(examples)} examples were dropped because their prompt fills max_seq_length = "
            f"{cfg.max_seq_length} tokens, leaving no response token to learn; raise sft.max_seq_length"
        )
    return trainer


def train_sft(model_dir: Path, rows: list[dict[str, Any]], out_dir: Path, cfg: SFTConfig) -> dict[str, Any]:
    """Fine-tune ``model_dir`` on ``rows`` (instruction/input/output) and save model + tokenizer to ``out_dir``.

    Input columns: schemas.PROMPTS: id, instruction, input, output (the sft or full split).
    Output columns: none (a model folder; metrics).
    """
    out_dir = Path(out_dir)
    trainer = build_sft_trainer(Path(model_dir), rows, out_dir, cfg)
    result = train_and_save(trainer, out_dir)
    metrics = {
        **trainer_metrics(trainer, result),
        "rows": len(rows),
        "dropped_no_response_tokens": int(trainer.dropped_no_response),
    }
    log.info("SFT done: %s", metrics)
    return metrics
