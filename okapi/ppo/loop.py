"""The PPO training loop (train_ppo) in named phases, and its per-step curves."""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from okapi.config import ConfigError, check
from okapi.io import DataError
from okapi.modeling import check_launch, decoder_layers, load_causal_lm
from okapi.ppo.checkpoint import (
    apply_checkpoint,
    hash_folder,
    resume_checkpoint,
    run_fingerprint,
    save_checkpoint,
    set_rng_state,
)
from okapi.ppo.config import SHARDED, PPOConfig, RewardFn
from okapi.ppo.heldout import evaluate_heldout, mean_heldout_reward, split_heldout_prompts
from okapi.ppo.policy import PolicyWithValue, save_policy
from okapi.ppo.rollout import (
    make_optimizer,
    make_rollout,
    ppo_update,
    prompt_texts,
    rm_reward_fn,
    sample_with_trunk,
    score_responses,
)
from okapi.sampling import eos_ids

log = logging.getLogger(__name__)


class LiveCurves:
    """Per-step PPO curves through DVCLive: ``plots/metrics/<name>.tsv`` and ``metrics.json`` under ``live_dir``.

    Files only: no dvc.yaml of its own (the pipeline declares the plots as the stage's outputs), no report, no DVC
    experiment, no repository look-up, and ``next_step()`` / ``end()`` are never called, so nothing signals VS Code
    or stages files in git.
    """

    def __init__(self, live_dir: Path) -> None:
        from dvclive import Live

        class FilesOnlyLive(Live):
            def _init_dvc(self) -> None:
                # dvclive 3.49 opens the DVC repo and reads git HEAD here (for experiments and Studio) and fails in a
                # git repository without commits; the curves need none of it.
                self._dvc_file = self._init_dvc_file()

        # resume=False empties the folder: a resumed run replays its checkpointed history into it first.
        self.live = FilesOnlyLive(dir=str(live_dir), resume=False, report=None, save_dvc_exp=False, dvcyaml=None)

    def log(self, row: dict[str, Any]) -> None:
        self.live.step = int(row["step"])
        # In name order, as the checkpoint's history (write_json sorts keys) replays them on resume: metrics.json
        # then has the same bytes whether the run resumed or not.
        for key, value in sorted(row.items()):
            if key != "step" and isinstance(value, (int, float)):
                self.live.log_metric(key, value)
        self.live.make_summary()


def process_share(batch: list[str], index: int, n_proc: int) -> list[str]:
    """Process ``index``'s prompts of a PPO batch: every ``n_proc``-th one from ``index``, wrapping around to the
    batch's first prompts so that every process gets ``ceil(len(batch) / n_proc)``.

    The shares must be equal: under DDP every backward is a collective, and a process with one mini-batch fewer
    (a batch that does not divide by the number of processes, e.g. an epoch's short last one) leaves the others
    waiting in their all-reduce forever. The few repeated prompts count twice in that step's update.
    """
    per_process = math.ceil(len(batch) / n_proc)
    return [batch[(index + j * n_proc) % len(batch)] for j in range(per_process)]


def _batch_for_step(texts: list[str], step: int, steps_per_epoch: int, cfg: PPOConfig) -> list[str]:
    """The prompts of 0-based PPO step ``step``: each epoch is a fresh shuffle seeded by (seed, epoch) alone, so
    any step's batch can be rebuilt when a run resumes mid-epoch."""
    epoch, k = divmod(step, steps_per_epoch)
    order = list(range(len(texts)))
    random.Random(cfg.seed + epoch).shuffle(order)
    return [texts[j] for j in order[k * cfg.batch_size : (k + 1) * cfg.batch_size]]


def _reward_identity(rm_dir: Path | None, reward_fn: RewardFn | None) -> str:
    if reward_fn is not None:
        name = getattr(reward_fn, "__qualname__", type(reward_fn).__qualname__)
        return f"function {getattr(reward_fn, '__module__', '?')}.{name}"
    return f"reward model {hash_folder(Path(rm_dir))}"


def _start_accelerator(cfg: PPOConfig) -> Any:
    """The Accelerator for this run; stops before any model is loaded under an engine PPO cannot use."""
    from accelerate import Accelerator

    accelerator = Accelerator()
    n_proc = accelerator.num_processes
    check_launch(n_proc)
    if accelerator.distributed_type in SHARDED:
        # Sampling, the reference snapshot, checkpoints and saving use the unsharded module; under ZeRO-3/FSDP
        # they would see parameter shards. Only the top layers train, so the frozen trunk is small enough to
        # replicate: data parallelism is the right engine for this stage.
        raise ConfigError(
            f"PPO does not run under {accelerator.distributed_type.value} (its engine shards or wraps the parameters); launch ppo@<lang> "
            "with data parallelism instead, e.g. ppo_launcher: accelerate launch --config_file "
            "configs/accelerate/8gpu_ddp.yaml (only the top ppo.top_layers layers train, so every GPU holds "
            "the frozen trunk)"
        )
    check(cfg.batch_size >= n_proc, "ppo.batch_size", cfg.batch_size, f">= the number of processes ({n_proc})")
    return accelerator


def _train_and_heldout(
    prompts: list[dict[str, Any]], heldout: list[dict[str, Any]] | None, cfg: PPOConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(training prompts, held-out prompts): the given held-out prompts, or a slice of the PPO prompts."""
    if cfg.heldout_fraction > 0:
        if heldout:
            raise ConfigError(
                f"parameter ppo.heldout_fraction = {cfg.heldout_fraction} takes the held-out prompts from the PPO "
                f"prompts, but {len(heldout)} separate held-out prompts were given too; pass one or the other"
            )
        return split_heldout_prompts(prompts, cfg.heldout_fraction, cfg.seed)
    return prompts, heldout or []


def _ppo_step(
    step: int,
    steps_per_epoch: int,
    texts: list[str],
    tokenizer: Any,
    policy: PolicyWithValue,
    wrapped: Any,
    optimizer: Any,
    reward_fn: RewardFn,
    eos: list[int],
    cfg: PPOConfig,
    accelerator: Any,
) -> dict[str, float]:
    """One PPO iteration (sample, score, rollout, update); its history row, averaged over the processes."""
    device = accelerator.device
    batch = _batch_for_step(texts, step, steps_per_epoch, cfg)
    mine = process_share(batch, accelerator.process_index, accelerator.num_processes)
    ids, pmask, resp, mask, resp_texts, trunk = sample_with_trunk(policy, tokenizer, mine, cfg, device)
    scores = score_responses(reward_fn, mine, resp_texts, resp, mask, eos, cfg)
    # Same precision as the update's forward (bf16 under a mixed-precision config): old log-probs computed in
    # fp32 against bf16 new ones would make the first ratio differ from 1 and clip for no reason.
    with accelerator.autocast():
        rollout = make_rollout(policy, ids, pmask, resp, mask, scores, cfg, sampled_trunk=trunk)
    stats = ppo_update(wrapped, optimizer, rollout, cfg, accelerator)
    kl_seq = rollout.kl.sum(1)
    row = {
        "step": step + 1,
        "epoch": step // steps_per_epoch + 1,
        "reward": scores.mean(),
        "kl": kl_seq.mean(),
        "non_score_reward": (-cfg.kl_coef * kl_seq).mean(),
        "response_length": rollout.mask.float().sum(1).mean(),
    }
    reduced = {
        k: float(accelerator.reduce(v.detach().float(), reduction="mean")) if torch.is_tensor(v) else v
        for k, v in row.items()
    }
    reduced.update(
        {k: float(accelerator.reduce(torch.tensor(v, device=device), reduction="mean")) for k, v in stats.items()}
    )
    return reduced


def _summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The scalar metrics the run's per-step history adds up to."""

    def avg(key: str) -> float:
        return sum(h[key] for h in history) / len(history) if history else float("nan")

    return {
        "kl_last_rollout": history[-1]["kl"] if history else float("nan"),
        "policy_loss": avg("policy_loss"),
        "value_loss": avg("value_loss"),
        "clip_frac": avg("clip_frac"),
        "entropy": avg("entropy"),
        "response_length": avg("response_length"),
        "mean_reward_train_first": history[0]["reward"] if history else float("nan"),
        "mean_reward_train_last": history[-1]["reward"] if history else float("nan"),
        "steps": len(history),
    }


def train_ppo(
    sft_dir: Path,
    rm_dir: Path | None,
    prompts: list[dict[str, Any]],
    heldout: list[dict[str, Any]] | None,
    out_dir: Path,
    cfg: PPOConfig,
    *,
    reward_fn: RewardFn | None = None,
    checkpoint_dir: Path | None = None,
    live_dir: Path | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """PPO from the SFT model against the reward model in ``rm_dir`` (or ``reward_fn(prompts, responses)``).

    Held-out prompts are ``heldout``, or with ``cfg.heldout_fraction > 0`` a slice of ``prompts`` (then ``heldout``
    must be empty or None). Returns (metrics, history): scalar metrics, and one dict per PPO step.
    ``history[i]["kl"]`` is the KL of the policy that sampled step i's batch (before that step's update, so 0 at
    step 1); ``metrics["kl"]`` is the final policy's KL on fresh held-out samples.

    With ``checkpoint_dir`` and ``cfg.checkpoint_every > 0`` a checkpoint is saved every that many steps and after
    the last one; a run whose fingerprint (:func:`run_fingerprint`) matches the checkpoint's continues from it and
    ends with the same weights and history as an uninterrupted run. With ``live_dir`` the history is also logged
    step by step with DVCLive.

    Input columns: schemas.PROMPTS: id, instruction, input (prompts and heldout; output is not used).
    Output columns: none (a policy folder with value_head.safetensors; metrics and history).
    """
    from accelerate.utils import set_seed

    if rm_dir is None and reward_fn is None:
        raise ValueError("train_ppo needs rm_dir or reward_fn")
    # Launch and prompts
    accelerator = _start_accelerator(cfg)
    n_proc = accelerator.num_processes
    prompts, heldout = _train_and_heldout(prompts, heldout, cfg)
    set_seed(cfg.seed)
    lm, tokenizer = load_causal_lm(sft_dir, for_training=False)
    lm.config.use_cache = True
    texts, dropped = prompt_texts(prompts, tokenizer, cfg.max_prompt_length, "PPO prompt")
    held_texts, held_dropped = prompt_texts(heldout, tokenizer, cfg.max_prompt_length, "held-out prompt")
    if not texts:
        raise DataError(
            f"PPO: no prompt left ({len(prompts)} given, {dropped} longer than ppo.max_prompt_length = "
            f"{cfg.max_prompt_length} tokens)"
        )
    n_layers = len(decoder_layers(lm))
    if cfg.top_layers > n_layers:
        raise DataError(f"parameter ppo.top_layers = {cfg.top_layers} exceeds the model's {n_layers} layers")

    # Plan the run and its checkpoints
    steps_per_epoch = math.ceil(len(texts) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps > 0:
        total = min(total, cfg.max_steps)
    checkpointing = checkpoint_dir is not None and cfg.checkpoint_every > 0
    fingerprint = None
    if checkpointing and accelerator.is_main_process:
        fingerprint = run_fingerprint(
            cfg, Path(sft_dir), _reward_identity(rm_dir, reward_fn), texts, n_proc, accelerator.mixed_precision
        )
    elif checkpoint_dir is not None and accelerator.is_main_process:
        # The folder is a pipeline output: it must exist even when checkpoints are off.
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
        log.info("ppo.checkpoint_every = 0: no PPO checkpoint is read or written in %s", checkpoint_dir)

    # Build the policy, optimizer and reward
    device = accelerator.device
    lm.to(device)
    policy = PolicyWithValue(lm, cfg.top_layers).to(device)
    optimizer = make_optimizer(policy, cfg)
    wrapped, optimizer = accelerator.prepare(policy, optimizer)
    if reward_fn is None:
        reward_fn = rm_reward_fn(Path(rm_dir), device, cfg.rm_batch_size, cfg.rm_prompt_cache)
    eos = eos_ids(lm, tokenizer)

    # Score the SFT policy, then resume
    # Scored before any checkpoint is loaded: this is the SFT policy's reward.
    sft_heldout = mean_heldout_reward(lm, tokenizer, held_texts, reward_fn, cfg, accelerator) if held_texts else None
    ckpt = None
    if checkpointing:
        ckpt = resume_checkpoint(Path(checkpoint_dir), fingerprint, total, policy, optimizer, accelerator)
        if ckpt is not None:
            apply_checkpoint(ckpt, policy, optimizer, accelerator)
    # Different sampling streams per process, reproducible per run.
    set_seed(cfg.seed + accelerator.process_index)
    history: list[dict[str, Any]] = []
    first = 0
    if ckpt is not None:
        set_rng_state(ckpt.rng)
        history, first = list(ckpt.history), ckpt.step
        del ckpt  # the loaded tensors are in the model and optimizer now
    live = LiveCurves(Path(live_dir)) if live_dir is not None and accelerator.is_main_process else None
    if live is not None:
        for row in history:
            live.log(row)

    # Train
    progress = tqdm(
        range(first, total),
        desc="ppo",
        unit="step",
        initial=first,
        total=total,
        disable=not accelerator.is_main_process,
    )
    for step in progress:
        row = _ppo_step(
            step, steps_per_epoch, texts, tokenizer, policy, wrapped, optimizer, reward_fn, eos, cfg, accelerator
        )
        history.append(row)
        progress.set_postfix(reward=f"{row['reward']:.3f}", kl=f"{row['kl']:.3f}")
        log.info("ppo step %d: %s", step + 1, {k: round(v, 4) for k, v in row.items()})
        if live is not None:
            live.log(row)
        if checkpointing and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == total):
            save_checkpoint(Path(checkpoint_dir), policy, optimizer, accelerator, step + 1, history, fingerprint)

    # Score the PPO policy
    # The final policy's KL to the reference, on its own samples: the rollout KL in history predates each update.
    kl_prompts = held_texts or _batch_for_step(texts, total - 1, steps_per_epoch, cfg)
    ppo_heldout, final_kl = evaluate_heldout(lm, tokenizer, kl_prompts, reward_fn, cfg, accelerator, policy)
    if not held_texts:
        ppo_heldout = None

    # Save
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        save_policy(accelerator.unwrap_model(wrapped), tokenizer, Path(out_dir))
    accelerator.wait_for_everyone()

    metrics: dict[str, Any] = {
        "mean_reward_sft_heldout": sft_heldout,
        "mean_reward_ppo_heldout": ppo_heldout,
        "heldout_prompts": len(held_texts),
        "heldout_samples": len(held_texts) * cfg.heldout_samples,
        "kl": final_kl,
        **_summary(history),
        "processes": n_proc,
        "prompts": len(texts),
        "dropped_too_long": dropped + held_dropped,
        "trainable_params": sum(p.numel() for p in policy.parameters_to_train()),
    }
    log.info("PPO done: %s", metrics)
    return metrics, history
