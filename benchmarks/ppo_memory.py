"""Peak memory of one PPO step: ours (shared trunk) vs. separate reference and value models, same model and batch.

Ours (okapi.ppo): one causal LM whose top-k blocks and a scalar value head train; the reference policy is the same
network with a frozen copy of only those k blocks.

Baselines (the usual PPO layout, e.g. TRL's former PPOTrainer): a policy model, a full frozen copy of it as the
reference, and a separate value model (a full copy of the trunk plus a value head).
  separate       the policy and the value model train only their top-k blocks (+ head), like ours: isolates what
                 sharing the trunk buys
  separate-full  the policy and the value model train every parameter (the common full fine-tuning setup)

Each variant runs in a fresh process on identical inputs (seeded prompt and response ids; responses are fixed, not
generated, so both run the same batch). One step = rollout statistics (old/ref log-probs, values, rewards, GAE) +
``ppo_epochs`` optimisation passes.

Memory: on CPU the peak resident set size of the process during the step minus the RSS just before the models are
built (Linux VmHWM, reset through /proc/self/clear_refs; falls back to ru_maxrss when that is not permitted); it
counts weights, gradients, optimizer state and activations. On CUDA, torch.cuda.max_memory_allocated.

Usage (from the repository root):
    .venv/bin/python benchmarks/ppo_memory.py                       # SmolLM2-135M shape, random init, CPU
    .venv/bin/python benchmarks/ppo_memory.py --model-dir models/base --device cuda
    .venv/bin/python benchmarks/ppo_memory.py --preset tiny         # seconds; a smoke test
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRESETS = {
    # SmolLM2-135M's architecture (the embedded default's model), randomly initialised: no download needed.
    "smollm2-135m": dict(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
    ),
    "tiny": dict(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    ),
}


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _build_lm(args: argparse.Namespace) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if args.model_dir:
        from okapi.modeling import load_causal_lm

        lm, _ = load_causal_lm(args.model_dir, for_training=False)
        return lm
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**PRESETS[args.preset], pad_token_id=0, eos_token_id=1))


def _inputs(args: argparse.Namespace, vocab: int, device: Any) -> tuple[Any, Any, Any, Any, Any]:
    import torch

    g = torch.Generator().manual_seed(1)
    prompt_ids = torch.randint(3, vocab, (args.batch, args.prompt_len), generator=g)
    prompt_mask = torch.ones_like(prompt_ids)
    # a few left-padded prompts and early-ending responses, as in a real batch
    for i in range(0, args.batch, 3):
        prompt_mask[i, : args.prompt_len // 4] = 0
        prompt_ids[i, : args.prompt_len // 4] = 0
    responses = torch.randint(3, vocab, (args.batch, args.response_len), generator=g)
    mask = torch.ones_like(responses)
    for i in range(1, args.batch, 4):
        cut = args.response_len // 2
        responses[i, cut] = 1
        responses[i, cut + 1 :] = 0
        mask[i, cut + 1 :] = 0
    scores = torch.randn(args.batch, generator=g)
    return (t.to(device) for t in (prompt_ids, prompt_mask, responses, mask, scores))  # type: ignore[return-value]


def _ours(lm: Any, inputs: tuple, cfg: Any, device: Any) -> dict[str, Any]:
    from accelerate import Accelerator

    from okapi.ppo import PolicyWithValue, make_optimizer, make_rollout, ppo_update

    policy = PolicyWithValue(lm, cfg.top_layers).to(device)
    optimizer = make_optimizer(policy, cfg)
    rollout = make_rollout(policy, *inputs, cfg)
    stats = ppo_update(policy, optimizer, rollout, cfg, Accelerator(cpu=device.type == "cpu"))
    trainable = sum(p.numel() for p in policy.parameters_to_train())
    return {"policy_loss": stats["policy_loss"], "trainable_params": trainable}


def _forward(lm: Any, ids: Any, attn: Any, pos: Any, start: int) -> Any:
    out = lm.base_model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=False)
    return out.last_hidden_state[:, start - 1 : -1]


def _separate_models(lm: Any, inputs: tuple, cfg: Any, device: Any, full: bool) -> dict[str, Any]:
    import torch
    from torch import nn

    from okapi.modeling import trainable_top_layers
    from okapi.ppo import gae, logprobs_of, policy_loss, sequence_inputs, token_rewards, value_loss, whiten

    prompt_ids, prompt_mask, responses, mask, scores = inputs
    policy = lm.to(device)
    reference = copy.deepcopy(policy).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    value_model = copy.deepcopy(policy)
    head = nn.Linear(policy.config.hidden_size, 1).to(device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    if full:
        params = [*policy.parameters(), *value_model.parameters(), *head.parameters()]
        for p in params:
            p.requires_grad_(True)
    else:
        params = [
            *trainable_top_layers(policy, cfg.top_layers),
            *trainable_top_layers(value_model, cfg.top_layers),
            *head.parameters(),
        ]
    optimizer = torch.optim.AdamW(
        params, lr=cfg.learning_rate, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps, weight_decay=cfg.weight_decay
    )
    ids, attn, pos = sequence_inputs(prompt_ids, prompt_mask, responses, mask)
    start = prompt_ids.shape[1]
    maskf = mask.float()
    with torch.no_grad():
        old_logp = logprobs_of(policy.lm_head(_forward(policy, ids, attn, pos, start)), responses) * maskf
        ref_logp = logprobs_of(reference.lm_head(_forward(reference, ids, attn, pos, start)), responses) * maskf
        old_values = head(_forward(value_model, ids, attn, pos, start)).squeeze(-1) * maskf
        rewards, _ = token_rewards(scores, old_logp, ref_logp, maskf, cfg.kl_coef)
        advantages, returns = gae(rewards, old_values, maskf, cfg.gamma, cfg.lam)
        advantages = whiten(advantages, maskf)
    losses = []
    n = ids.shape[0]
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(n, device=ids.device)
        for i in range(0, n, cfg.mini_batch_size):
            idx = order[i : i + cfg.mini_batch_size]
            logits = policy.lm_head(_forward(policy, ids[idx], attn[idx], pos[idx], start))
            values = head(_forward(value_model, ids[idx], attn[idx], pos[idx], start)).squeeze(-1)
            logp = logprobs_of(logits, responses[idx])
            pg, _ = policy_loss(logp, old_logp[idx], advantages[idx], maskf[idx], cfg.cliprange)
            vf, _ = value_loss(values, old_values[idx], returns[idx], maskf[idx], cfg.cliprange_value)
            loss = pg + cfg.vf_coef * vf
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            losses.append(pg.item())
    return {"policy_loss": sum(losses) / len(losses), "trainable_params": sum(p.numel() for p in params)}


def _warm_up(device: Any) -> None:
    """Import everything and run a tiny forward/backward first, so import and kernel set-up memory is not counted."""
    import torch
    from accelerate import Accelerator  # noqa: F401
    from transformers import LlamaConfig, LlamaForCausalLM

    import okapi.ppo.loop  # noqa: F401  (the package itself imports its modules lazily)

    tiny = LlamaForCausalLM(LlamaConfig(**PRESETS["tiny"])).to(device)
    ids = torch.randint(0, 512, (2, 16), device=device)
    tiny(input_ids=ids, labels=ids).loss.backward()
    del tiny


def run_variant(variant: str, args: argparse.Namespace, queue: Any) -> None:
    import torch

    from okapi.ppo import PPOConfig

    torch.set_num_threads(args.threads or torch.get_num_threads())
    device = torch.device(args.device)
    cfg = PPOConfig(
        top_layers=args.top_layers,
        batch_size=args.batch,
        mini_batch_size=args.mini_batch,
        ppo_epochs=args.ppo_epochs,
        learning_rate=1e-6,
    )
    _warm_up(device)
    vocab = PRESETS[args.preset]["vocab_size"] if not args.model_dir else None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_cuda = torch.cuda.memory_allocated(device)
    reset_ok = _reset_peak()
    rss_before = _status_kb("VmRSS") or 0
    t0 = time.perf_counter()
    lm = _build_lm(args)
    vocab = vocab or lm.config.vocab_size
    inputs = tuple(_inputs(args, vocab, device))
    if variant == "ours":
        lm.to(device)
        result = _ours(lm, inputs, cfg, device)
    else:
        result = _separate_models(lm, inputs, cfg, device, full=variant == "separate-full")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak_mb = (torch.cuda.max_memory_allocated(device) - base_cuda) / 2**20
        how = "torch.cuda.max_memory_allocated"
    elif reset_ok and _status_kb("VmHWM") is not None:
        peak_mb = ((_status_kb("VmHWM") or 0) - rss_before) / 1024
        how = "peak RSS (VmHWM after clear_refs) minus RSS before building the models"
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
        how = "ru_maxrss minus RSS before building the models (includes import-time peak)"
    queue.put(
        {
            "variant": variant,
            "peak_mb": round(peak_mb, 1),
            "seconds": round(time.perf_counter() - t0, 2),
            "trainable_params": result["trainable_params"],
            "total_params": sum(p.numel() for p in lm.parameters()),
            "policy_loss": result["policy_loss"],
            "measured_by": how,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="smollm2-135m")
    parser.add_argument("--model-dir", help="a causal-LM folder (e.g. models/base) instead of a preset")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--mini-batch", type=int, default=4)
    parser.add_argument("--ppo-epochs", type=int, default=1)
    parser.add_argument("--prompt-len", type=int, default=96)
    parser.add_argument("--response-len", type=int, default=64)
    parser.add_argument("--top-layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--baselines", nargs="+", default=["separate", "separate-full"], choices=["separate", "separate-full"]
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    ctx = mp.get_context("spawn")
    results = []
    for variant in ["ours", *args.baselines]:
        queue = ctx.Queue()
        proc = ctx.Process(target=run_variant, args=(variant, args, queue))
        proc.start()
        result = queue.get()
        proc.join()
        if proc.exitcode != 0:
            raise SystemExit(f"variant {variant} failed with exit code {proc.exitcode}")
        results.append(result)

    ours = results[0]["peak_mb"]
    model = args.model_dir or args.preset
    print(
        f"PPO step peak memory, model {model}, device {args.device}, batch {args.batch} x "
        f"({args.prompt_len} prompt + {args.response_len} response) tokens, mini-batch {args.mini_batch}, "
        f"top_layers {args.top_layers}"
    )
    print(f"measured by: {results[0]['measured_by']}")
    print(f"{'variant':<15}{'peak MB':>10}{'ratio ours/x':>14}{'trainable':>14}{'seconds':>9}")
    for r in results:
        ratio = ours / r["peak_mb"] if r["peak_mb"] > 0 else float("nan")
        r["ratio_ours_over_this"] = round(ratio, 3)
        print(f"{r['variant']:<15}{r['peak_mb']:>10.1f}{ratio:>14.3f}{r['trainable_params']:>14,}{r['seconds']:>9.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
