"""Sampling T responses per prompt from the SFT model (Okapi §2.3: the responses the teacher then ranks)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from okapi.config import check
from okapi.io import DataError
from okapi.modeling import default_device, load_causal_lm
from okapi.prompting import format_prompt

log = logging.getLogger(__name__)


@dataclass
class SampleConfig:
    """The ``sample`` section: the SFT model's T responses per ranking prompt."""

    num_responses: int = 4
    """Responses per prompt, the paper's T (ranking needs at least 2)."""
    temperature: float = 1.0
    """Sampling temperature."""
    top_p: float = 0.95
    """Nucleus sampling threshold."""
    max_new_tokens: int = 48
    """Longest response in tokens."""
    batch_size: int = 4
    """Prompts per generate() call (each expands to num_responses sequences)."""
    seed: int = 0
    """Seeds sampling, so a rerun gives the same responses."""

    def __post_init__(self) -> None:
        check(self.num_responses >= 2, "sample.num_responses", self.num_responses, ">= 2 (ranking needs T > 1)")
        check(0 < self.temperature <= 5, "sample.temperature", self.temperature, "0 < t <= 5")
        check(0 < self.top_p <= 1, "sample.top_p", self.top_p, "0 < p <= 1")
        check(self.max_new_tokens >= 1, "sample.max_new_tokens", self.max_new_tokens, ">= 1")
        check(self.batch_size >= 1, "sample.batch_size", self.batch_size, ">= 1")


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every token id that ends a response: the tokenizer's EOS plus any the generation config lists."""
    ids = {int(tokenizer.eos_token_id)}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif isinstance(gen_eos, Iterable):
        ids.update(int(i) for i in gen_eos)
    ids.discard(int(tokenizer.pad_token_id))
    return sorted(ids)


def encode_prompts(tokenizer: Any, prompts: list[str], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and attention mask, so every prompt ends where generation starts."""
    enc = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    num_return_sequences: int = 1,
    do_sample: bool = True,
    share_prompts: bool = True,
) -> torch.Tensor:
    """Response ids [B * num_return_sequences, R], padded with pad after EOS (prompt rows repeat per sample).

    ``share_prompts``: a prompt that starts several sequences is computed once (_shared_prefill); off where a
    hook must see generate()'s own prefill of every row (PPO's captured trunk)."""
    from transformers import GenerationConfig

    # A fresh config so nothing in the checkpoint's generation_config.json (top_k, repetition penalty...) changes
    # the sampling distribution; top_k=0 keeps it the plain temperature/top-p distribution PPO's math assumes.
    gen_cfg = GenerationConfig(
        do_sample=do_sample,
        temperature=temperature if do_sample else None,
        top_p=top_p if do_sample else None,
        top_k=0 if do_sample else None,
        max_new_tokens=max_new_tokens,
        num_return_sequences=num_return_sequences,
        eos_token_id=eos_ids(model, tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        # The added pad token must never be produced: it would be masked out as padding downstream.
        suppress_tokens=[tokenizer.pad_token_id],
        use_cache=True,
    )
    was_training = model.training
    model.eval()
    try:
        shared = _shared_prefill(model, prompt_ids, prompt_mask, num_return_sequences) if share_prompts else None
        if shared is None:
            out = model.generate(input_ids=prompt_ids, attention_mask=prompt_mask, generation_config=gen_cfg)
        else:
            ids, mask, cache = shared
            gen_cfg.num_return_sequences = 1
            out = model.generate(input_ids=ids, attention_mask=mask, past_key_values=cache, generation_config=gen_cfg)
    finally:
        model.train(was_training)
    return out[:, prompt_ids.shape[1] :]


def last_logits_only(model: Any) -> dict[str, Any]:
    """Keyword arguments for a causal LM's forward that compute the logits of the last position only
    (``logits_to_keep=1``, as generate() passes for its prefill), where the forward takes them: a pass kept for its
    keys and values then skips the vocabulary projection of every other position (for BLOOM's 250K vocabulary and
    16 x 300 prompt tokens, 2.4 GB of bf16 logits)."""
    import inspect

    forward = getattr(model, "forward", None)
    try:
        takes = forward is not None and "logits_to_keep" in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        takes = False
    return {"logits_to_keep": 1} if takes else {}


def forward_after_prefix(module: Any, cache: Any, n: int, rows: list[list[int]], pad_id: int) -> Any:
    """``module``'s output for token rows that all follow the same ``n`` tokens whose keys and values are ``cache``
    (a batch of one): the rows right-padded with ``pad_id`` into one batch, the cache copied to every row (the
    caller's stays as it was), positions counted from ``n``. Row j's own tokens are positions
    ``[:len(rows[j])]`` of the output."""
    import copy

    device = next(module.parameters()).device
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), n + width), dtype=torch.long)
    mask[:, :n] = 1
    for j, row in enumerate(rows):
        ids[j, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[j, n : n + len(row)] = 1
    past = copy.deepcopy(cache)
    past.batch_repeat_interleave(len(rows))
    return module(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=torch.arange(n, n + width, device=device).unsqueeze(0).expand(len(rows), -1),
        past_key_values=past,
        use_cache=True,
    )


def _shared_prefill(
    model: Any, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, num_return_sequences: int
) -> tuple[torch.Tensor, torch.Tensor, Any] | None:
    """Each distinct prompt's keys and values computed once, then copied to every sequence that starts with it
    (the T samples of a prompt, a held-out prompt's repeats): (ids, mask, cache) to pass to generate(), which
    then runs only each sequence's last prompt token and what follows. generate() on its own computes every copy
    of a prompt again (a batch of 4 prompts x 4 samples: 16 prefills, not 4). The sampling draws are the same
    calls in the same order; the logits agree with computing every copy to float rounding. None when no prompt
    repeats (or the prompt is one token), for generate() as usual."""
    rows = prompt_ids.shape[0] * num_return_sequences
    if prompt_ids.shape[1] < 2:
        return None
    _, inverse = torch.unique(torch.cat([prompt_ids, prompt_mask], dim=1), dim=0, return_inverse=True)
    # The distinct prompts in order of first appearance, and for each output row the distinct prompt it starts with.
    first: dict[int, int] = {}
    for row, key in enumerate(inverse.tolist()):
        first.setdefault(key, row)
    if len(first) == rows:
        return None
    distinct = torch.tensor(list(first.values()), device=prompt_ids.device)
    slot = {key: i for i, key in enumerate(first)}
    of_row = torch.tensor([slot[k] for k in inverse.tolist()], device=prompt_ids.device)
    of_row = of_row.repeat_interleave(num_return_sequences)
    ids, mask = prompt_ids[distinct], prompt_mask[distinct]
    # generate()'s own position ids for left-padded prompts: count the real tokens, 0 on padding.
    pos = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    out = model(
        input_ids=ids[:, :-1],
        attention_mask=mask[:, :-1],
        position_ids=pos[:, :-1],
        use_cache=True,
        **last_logits_only(model),  # only the keys and values are kept
    )
    cache = out.past_key_values
    cache.reorder_cache(of_row)
    expand = num_return_sequences
    return prompt_ids.repeat_interleave(expand, 0), prompt_mask.repeat_interleave(expand, 0), cache


def response_mask(response_ids: torch.Tensor, eos: list[int], pad_id: int) -> torch.Tensor:
    """1 for response tokens up to and including the first EOS, 0 after it and on padding."""
    is_eos = torch.isin(response_ids, torch.tensor(eos, device=response_ids.device))
    # Count EOS seen strictly before each position: a token is inside the response if none came before it.
    eos_before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    mask = (eos_before == 0) & (response_ids != pad_id)
    return mask.long()


def decode_responses(tokenizer: Any, response_ids: torch.Tensor, mask: torch.Tensor) -> list[str]:
    """Text of each response without EOS / special tokens, cut at the first EOS."""
    texts = []
    for ids, m in zip(response_ids.tolist(), mask.tolist(), strict=True):
        kept = [t for t, keep in zip(ids, m, strict=True) if keep]
        texts.append(tokenizer.decode(kept, skip_special_tokens=True).strip())
    return texts


def _check_rows(rows: list[dict[str, Any]]) -> None:
    seen: set[str] = set()
    for i, row in enumerate(rows):
        rid = row.get("id")
        if not isinstance(rid, str) or not rid:
            raise DataError(f"sampling row {i}: field 'id' is missing or empty")
        if rid in seen:
            raise DataError(f"sampling row {i}: duplicate id {rid!r}; ids must be unique")
        seen.add(rid)
        if not isinstance(row.get("instruction"), str) or not row["instruction"].strip():
            raise DataError(f"sampling row {i} (id {rid!r}): field 'instruction' is missing or empty")


def sample_responses(model_dir: Path, rows: list[dict[str, Any]], lang: str, cfg: SampleConfig) -> list[dict[str, Any]]:
    """T sampled responses per (id, instruction, input) row, as SAMPLES rows in input order.

    Input columns: schemas.PROMPTS: id, instruction, input (the rank split).
    Output columns: schemas.SAMPLES: id, lang, instruction, input, responses (T of them).
    """
    _check_rows(rows)
    model, tokenizer = load_causal_lm(model_dir, for_training=False)
    device = default_device()
    model.to(device)
    eos = eos_ids(model, tokenizer)
    out: list[dict[str, Any]] = []
    batches = [rows[i : i + cfg.batch_size] for i in range(0, len(rows), cfg.batch_size)]
    for b, batch in enumerate(tqdm(batches, desc=f"sample {lang}", unit="batch")):
        prompts = [format_prompt(r["instruction"], r.get("input")) for r in batch]
        ids, mask = encode_prompts(tokenizer, prompts, device)
        # Seeded per batch: a rerun reproduces every batch, whatever ran before it in this process.
        torch.manual_seed(cfg.seed * 1_000_003 + b)
        resp = generate(
            model,
            tokenizer,
            ids,
            mask,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            num_return_sequences=cfg.num_responses,
        )
        texts = decode_responses(tokenizer, resp, response_mask(resp, eos, tokenizer.pad_token_id))
        for j, row in enumerate(batch):
            out.append(
                {
                    "id": row["id"],
                    "lang": lang,
                    "instruction": row["instruction"],
                    "input": row.get("input"),
                    "responses": texts[j * cfg.num_responses : (j + 1) * cfg.num_responses],
                }
            )
    log.info("sampled %d responses for %d prompts (%s)", len(out) * cfg.num_responses, len(out), lang)
    return out
