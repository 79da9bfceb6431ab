"""Reward model (Okapi §3, "Reward Model Training").

Initialised from the SFT model with a scalar sequence-classification head and trained with TRL's RewardTrainer on
the binary ranking loss -log sigmoid(r(x, y_c) - r(x, y_r)). The text scored is always
``format_prompt(instruction, input) + response + EOS``, built by one function for training and for scoring, so PPO
and evaluation see exactly the inputs the reward model was trained on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from okapi.config import check, check_choices
from okapi.io import DataError
from okapi.modeling import (
    check_model_folder,
    default_device,
    ensure_pad_token,
    process_state,
    world_size,
)
from okapi.prompting import format_prompt
from okapi.splits import PromptGroupSampler, prompt_groups, prompt_key, split_by_prompt
from okapi.training import accumulation_steps, tmp_dir, train_and_save, trainer_args, trainer_metrics

log = logging.getLogger(__name__)


@dataclass
class RewardConfig:
    """The ``rm`` section: the reward model. Paper §3: 2 epochs, batch 64, lr 1e-5, AdamW."""

    num_train_epochs: float = 2.0
    """Passes over the training pairs (paper: 2)."""
    learning_rate: float = 1e-5
    """Peak learning rate (paper: 1e-5)."""
    batch_size: int = 8
    """Effective pairs per optimizer step, all processes together (paper: 64)."""
    per_device_train_batch_size: int = 8
    """Pairs per process per forward pass; accumulation makes up the rest of batch_size."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    warmup_steps: int = 0
    """Linear warm-up steps."""
    lr_scheduler_type: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    """transformers' learning-rate schedule."""
    max_length: int = 384
    """Tokens of prompt + response + EOS; longer pairs are dropped and counted."""
    eval_fraction: float = 0.2
    """Share of prompts (with all their pairs) held out for the reward model's accuracy."""
    max_steps: int = -1
    """Optimizer steps; -1: run num_train_epochs."""
    seed: int = 0
    """Seeds the score head's initialisation, the held-out split and data order."""
    logging_steps: int = 1
    """Log the loss every N steps."""
    score_batch_size: int = 8
    """Sequences per forward pass when scoring (held-out accuracy, PPO rewards)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about 20% slower."""

    def __post_init__(self) -> None:
        check_choices(self, "rm")
        check(self.num_train_epochs > 0, "rm.num_train_epochs", self.num_train_epochs, "> 0")
        check(0 < self.learning_rate < 1, "rm.learning_rate", self.learning_rate, "0 < lr < 1")
        check(self.batch_size >= 1, "rm.batch_size", self.batch_size, ">= 1")
        check(
            1 <= self.per_device_train_batch_size <= self.batch_size,
            "rm.per_device_train_batch_size",
            self.per_device_train_batch_size,
            f"1..batch_size ({self.batch_size})",
        )
        check(0 <= self.weight_decay < 1, "rm.weight_decay", self.weight_decay, "0 <= wd < 1")
        check(self.warmup_steps >= 0, "rm.warmup_steps", self.warmup_steps, ">= 0")
        check(self.max_length >= 16, "rm.max_length", self.max_length, ">= 16")
        check(0 <= self.eval_fraction < 1, "rm.eval_fraction", self.eval_fraction, "0 <= f < 1")
        check(self.max_steps == -1 or self.max_steps >= 1, "rm.max_steps", self.max_steps, "-1 or >= 1")
        check(self.logging_steps >= 1, "rm.logging_steps", self.logging_steps, ">= 1")
        check(self.score_batch_size >= 1, "rm.score_batch_size", self.score_batch_size, ">= 1")


def reward_input_ids(tokenizer: Any, prompt: str, response: str) -> list[int]:
    """Token ids the reward model scores: prompt + response + EOS (the same in training and scoring)."""
    return list(tokenizer(text=prompt + response + tokenizer.eos_token)["input_ids"])


def load_reward_model(rm_dir: str | Path) -> tuple[Any, Any]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    check_model_folder(rm_dir, kind="reward")
    tokenizer = AutoTokenizer.from_pretrained(rm_dir)
    model = AutoModelForSequenceClassification.from_pretrained(rm_dir, dtype=torch.float32)
    ensure_pad_token(model, tokenizer)
    model.eval()
    return model, tokenizer


@torch.no_grad()
def score_ids(model: Any, pad_id: int, sequences: list[list[int]], batch_size: int = 8) -> list[float]:
    """Scalar reward of each token sequence (right-padded; the head reads the last non-pad token)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    # A sequence given twice (a response in several pairs) is scored once.
    distinct = list(dict.fromkeys(tuple(s) for s in sequences))
    scores: list[float] = []
    for i in range(0, len(distinct), batch_size):
        chunk = distinct[i : i + batch_size]
        width = max(len(s) for s in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for j, seq in enumerate(chunk):
            ids[j, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[j, : len(seq)] = 1
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
        scores.extend(float(x) for x in logits[:, 0].float().cpu())
    model.train(was_training)
    by_sequence = dict(zip(distinct, scores, strict=True))
    return [by_sequence[tuple(s)] for s in sequences]


class PromptCachedScorer:
    """Scores (formatted prompt, response) pairs with a frozen reward model, computing a prompt's tokens once.

    PPO scores the responses of the same few prompts at every step (and each held-out prompt's repeats): the
    prompt is most of each scored sequence. The keys and values of a prompt's tokens are kept (the last
    ``max_prompts`` prompts used) and each sequence runs only its own tokens after them; the score is read from the
    last token as the model's head does. The sequences are tokenized whole, as reward_input_ids; the shared part is
    the longest run of the prompt's own tokens they all start with (a sequence that does not start with it, or
    has nothing after it, is scored whole). Scores agree with score_ids to float rounding. Off
    (``max_prompts = 0``) where prompts seldom repeat: each prompt then costs a forward pass of its own."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 8, max_prompts: int = 16) -> None:
        self.model, self.tokenizer, self.batch_size, self.max_prompts = model, tokenizer, batch_size, max_prompts
        self._prompts: dict[str, tuple[tuple[int, ...], Any]] = {}  # prompt -> (its token ids, their cache)
        head = getattr(model, "score", None)
        self._usable = max_prompts > 0 and isinstance(head, torch.nn.Module) and hasattr(model, "base_model")

    @torch.no_grad()
    def __call__(self, prompts: list[str], responses: list[str]) -> list[float]:
        if len(prompts) != len(responses):
            raise ValueError(f"reward scoring: {len(prompts)} prompts but {len(responses)} responses")
        sequences = [reward_input_ids(self.tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]
        pad = self.tokenizer.pad_token_id
        if not self._usable:
            return score_ids(self.model, pad, sequences, self.batch_size)
        scores: dict[tuple[int, ...], float] = {}
        whole: list[list[int]] = []
        by_prompt: dict[str, list[tuple[int, ...]]] = {}
        for prompt, seq in zip(prompts, sequences, strict=True):
            by_prompt.setdefault(prompt, [])
            if tuple(seq) not in by_prompt[prompt]:
                by_prompt[prompt].append(tuple(seq))
        was_training = self.model.training
        self.model.eval()
        try:
            for prompt, seqs in by_prompt.items():
                prefix, cache = self._prefix(prompt, seqs)
                n = len(prefix)
                rest = [s for s in seqs if n == 0 or len(s) <= n or s[:n] != prefix]
                whole.extend(list(s) for s in rest)
                cached = [s for s in seqs if s not in rest]
                for i in range(0, len(cached), self.batch_size):
                    chunk = cached[i : i + self.batch_size]
                    scores.update(zip(chunk, self._score_after(n, cache, chunk, pad), strict=True))
        finally:
            self.model.train(was_training)
        if whole:
            scores.update(zip(map(tuple, whole), score_ids(self.model, pad, whole, self.batch_size), strict=True))
        return [scores[tuple(s)] for s in sequences]

    def _prefix(self, prompt: str, seqs: list[tuple[int, ...]]) -> tuple[tuple[int, ...], Any]:
        """The prompt's cached token ids and keys/values, computed (and the oldest dropped) when not kept yet."""
        if prompt in self._prompts:
            self._prompts[prompt] = self._prompts.pop(prompt)  # most recently used last
            return self._prompts[prompt]
        ids = tuple(self.tokenizer(text=prompt)["input_ids"])
        n = len(ids)
        for seq in seqs:  # the prompt's tokens every sequence starts with, one token at least left after them
            same = next((i for i, (a, b) in enumerate(zip(ids, seq, strict=False)) if a != b), min(len(ids), len(seq)))
            n = min(n, len(seq) - 1, same)
        prefix = ids[: max(n, 0)]
        cache = None
        if prefix:
            device = next(self.model.parameters()).device
            out = self.model.base_model(input_ids=torch.tensor([prefix], device=device), use_cache=True)
            cache = out.past_key_values
        self._prompts[prompt] = (prefix, cache)
        while len(self._prompts) > self.max_prompts:
            self._prompts.pop(next(iter(self._prompts)))
        return prefix, cache

    def _score_after(self, n: int, cache: Any, chunk: list[tuple[int, ...]], pad: int) -> list[float]:
        """Scores of sequences that start with the cached n tokens: only their own tokens run."""
        from okapi.sampling import forward_after_prefix

        rows = [list(s[n:]) for s in chunk]
        hidden = forward_after_prefix(self.model.base_model, cache, n, rows, pad).last_hidden_state
        last = torch.tensor([len(r) - 1 for r in rows], device=hidden.device)
        logits = self.model.score(hidden[torch.arange(len(rows), device=hidden.device), last])
        return [float(x) for x in logits[:, 0].float().cpu()]


def score_texts(
    rm_dir_or_model: str | Path | Any,
    tokenizer: Any,
    prompts: list[str],
    responses: list[str],
    *,
    batch_size: int = 8,
) -> list[float]:
    """Reward of each (formatted prompt, response) pair; pass a folder (tokenizer may be None) or a loaded model."""
    if len(prompts) != len(responses):
        raise ValueError(f"score_texts: {len(prompts)} prompts but {len(responses)} responses")
    if isinstance(rm_dir_or_model, (str, Path)):
        model, loaded_tok = load_reward_model(rm_dir_or_model)
        tokenizer = tokenizer or loaded_tok
        model.to(default_device())
    else:
        model = rm_dir_or_model
    if tokenizer is None:
        raise ValueError("score_texts: a tokenizer is required with a loaded model")
    sequences = [reward_input_ids(tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]
    return score_ids(model, tokenizer.pad_token_id, sequences, batch_size)


def _check_pairs(pairs: list[dict[str, Any]]) -> None:
    for i, pair in enumerate(pairs):
        for key in ("id", "instruction", "chosen", "rejected"):
            if not isinstance(pair.get(key), str):
                raise DataError(f"preference pair {i} (id {pair.get('id')!r}): field {key!r} is missing or not text")
        if not pair["instruction"].strip():
            raise DataError(f"preference pair {i} (id {pair['id']!r}): field 'instruction' is empty")


def split_heldout(pairs: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, heldout) split by prompt (instruction and input), so no prompt has pairs on both sides."""
    return split_by_prompt(pairs, fraction, seed)


class _DistinctRows:
    """Calls ``model`` on the distinct rows of a batch only and hands every row its row's output.

    With T responses per prompt and all C(T, 2) pairs, each response is in T - 1 pairs: TRL's collator stacks the
    chosen and rejected sides of every pair, so a batch holding a prompt's pairs repeats each response up to T - 1
    times. The loss over the pairs is unchanged (each pair still compares its two rewards; the gradients of a
    repeated row add up through the index), the forward and backward run once per distinct sequence (InstructGPT
    trains on a prompt's comparisons the same way). Rows are compared on their unpadded tokens."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def __call__(self, **inputs: Any) -> Any:
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        keys = [tuple(row[m.bool()].tolist()) for row, m in zip(ids, mask, strict=True)]
        first: dict[tuple[int, ...], int] = {}
        for i, key in enumerate(keys):
            first.setdefault(key, i)
        if len(first) == len(keys):
            return self.model(**inputs)
        rows = torch.tensor(list(first.values()), device=ids.device)
        width = int(mask[rows].sum(1).max())
        if bool(mask[rows][:, width:].any()):  # not right-padded: keep every column
            width = mask.shape[1]
        sub = {
            k: (v[rows][:, :width] if v.dim() == 2 else v[rows])
            if torch.is_tensor(v) and v.dim() and v.shape[0] == len(keys)
            else v
            for k, v in inputs.items()
        }
        out = self.model(**sub)
        slot = {key: j for j, key in enumerate(first)}
        inverse = torch.tensor([slot[key] for key in keys], device=ids.device)
        out["logits"] = out["logits"][inverse]
        return out


def _grouped_trainer(base: type) -> type:
    """``base`` (TRL's RewardTrainer) with the pairs of one prompt kept together in the training order, and each
    distinct sequence of a batch through the model once (:class:`_DistinctRows`)."""

    class GroupedRewardTrainer(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, pair_groups: list[int], **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.pair_groups = pair_groups

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            return super().compute_loss(_DistinctRows(model), inputs, return_outputs, num_items_in_batch)

        def _get_train_sampler(self, train_dataset: Any = None) -> PromptGroupSampler:
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            if len(dataset) != len(self.pair_groups):
                # TRL dropped or added rows: the groups would no longer match the pairs they were computed for.
                raise DataError(
                    f"reward model: the trainer holds {len(dataset)} pairs but {len(self.pair_groups)} were grouped"
                )
            return PromptGroupSampler(self.pair_groups, self.args.seed)

    return GroupedRewardTrainer


def heldout_accuracy(model: Any, tokenizer: Any, pairs: list[dict[str, Any]], batch_size: int) -> tuple[float, float]:
    """(accuracy, mean margin) of r(chosen) > r(rejected) over ``pairs``; a tie counts as wrong."""
    if not pairs:
        return float("nan"), float("nan")
    prompts = [format_prompt(p["instruction"], p.get("input")) for p in pairs]
    # One call for both sides: a response in several pairs is scored once (score_ids).
    responses = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    scores = score_texts(model, tokenizer, prompts + prompts, responses, batch_size=batch_size)
    chosen, rejected = scores[: len(pairs)], scores[len(pairs) :]
    wins = sum(c > r for c, r in zip(chosen, rejected, strict=True))
    margin = sum(c - r for c, r in zip(chosen, rejected, strict=True)) / len(pairs)
    return wins / len(pairs), margin


def train_reward_model(sft_dir: Path, pairs: list[dict[str, Any]], out_dir: Path, cfg: RewardConfig) -> dict[str, Any]:
    """Train a reward model from the SFT folder on preference pairs; save it atomically to ``out_dir``.

    Input columns: schemas.PAIRS: id, instruction, input, chosen, rejected.
    Output columns: none (a sequence-classification model folder; metrics).
    """
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    sft_dir, out_dir = Path(sft_dir), Path(out_dir)
    _check_pairs(pairs)
    if not pairs:
        raise DataError("reward model: no preference pairs; the pairs file is empty")
    check_model_folder(sft_dir, kind="causal-lm")
    tokenizer = AutoTokenizer.from_pretrained(sft_dir)
    # The score head is random: seed before creating it so reruns build the same reward model.
    torch.manual_seed(cfg.seed)
    model = AutoModelForSequenceClassification.from_pretrained(sft_dir, num_labels=1, dtype=torch.float32)
    ensure_pad_token(model, tokenizer)
    tokenizer.padding_side = "right"

    kept, dropped = [], 0
    for pair in pairs:
        prompt = format_prompt(pair["instruction"], pair.get("input"))
        c_ids = reward_input_ids(tokenizer, prompt, pair["chosen"])
        r_ids = reward_input_ids(tokenizer, prompt, pair["rejected"])
        if max(len(c_ids), len(r_ids)) > cfg.max_length:
            dropped += 1
            continue
        kept.append({**pair, "chosen_ids": c_ids, "rejected_ids": r_ids})
    if dropped:
        log.warning(
            "%d of %d pairs are longer than max_length %d tokens and were dropped", dropped, len(pairs), cfg.max_length
        )
    train, heldout = split_heldout(kept, cfg.eval_fraction, cfg.seed)
    if not train:
        raise DataError(
            f"reward model: no training pair left ({len(pairs)} pairs, {dropped} longer than "
            f"rm.max_length = {cfg.max_length}); raise max_length or provide more pairs"
        )
    # Score on this process's accelerator (the Trainer would move the model there anyway).
    model.to(process_state().device)
    acc_init, _ = heldout_accuracy(model, tokenizer, heldout, cfg.score_batch_size)

    n_proc = world_size()
    accum = accumulation_steps(cfg.batch_size, cfg.per_device_train_batch_size, n_proc)
    args = TRLRewardConfig(
        output_dir=str(tmp_dir(out_dir)),
        **trainer_args(cfg, accum),
        optim="adamw_torch",
        max_length=cfg.max_length,
    )
    columns = {"chosen_ids": [p["chosen_ids"] for p in train], "rejected_ids": [p["rejected_ids"] for p in train]}
    # The pairs of one prompt stay together in each epoch's order (okapi.splits.PromptGroupSampler).
    trainer = _grouped_trainer(RewardTrainer)(
        model=model,
        args=args,
        train_dataset=Dataset.from_dict(columns),
        processing_class=tokenizer,
        pair_groups=prompt_groups(train),
    )
    result = train_and_save(trainer, out_dir)
    trained = trainer.accelerator.unwrap_model(trainer.model)
    acc, margin = heldout_accuracy(trained, tokenizer, heldout, cfg.score_batch_size)
    metrics = {
        **trainer_metrics(trainer, result),
        "heldout_accuracy": acc,
        "heldout_accuracy_init": acc_init,
        "heldout_margin": margin,
        "heldout_pairs": len(heldout),
        "train_pairs": len(train),
        "heldout_prompts": len({prompt_key(p) for p in heldout}),
        "train_prompts": len({prompt_key(p) for p in train}),
        "dropped_too_long": dropped,
    }
    log.info("reward model done: %s", metrics)
    return metrics
