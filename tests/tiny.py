"""Tiny random models built from a config, the models of every test (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

_CORPUS = [
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "### Instruction: ### Input: ### Response:",
    "Give three tips for staying healthy. Eat well, sleep, exercise.",
    "Dịch câu sau sang tiếng Anh. Xin chào thế giới.",
    "Traduce la siguiente frase. ¿Dónde está la biblioteca?",
    "Question: Which gas do plants absorb? Answer: carbon dioxide oxygen nitrogen helium",
    "Response 1: overall rank: 1 Response 2: overall rank: 2",
    "Пример текста на русском языке. 中文文本示例。 हिंदी पाठ का उदाहरण।",
]


def build_tokenizer(out_dir: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    # Like SmolLM2: pad == eos, so the code under test must add its own pad token.
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_model(out_dir: Path, num_layers: int = 6, seed: int = 0) -> Path:
    """A LlamaForCausalLM (SmolLM2's architecture) with hidden size 64 and ``num_layers`` layers."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out_dir)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out_dir)
    return out_dir


def build_untrained_rm(model_dir: Path, out: Path) -> Path:
    """A reward model (sequence classification, 1 label) with a random head on ``model_dir``'s trunk."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from okapi.modeling import ensure_pad_token

    torch.manual_seed(0)
    rm = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    tok = AutoTokenizer.from_pretrained(model_dir)
    ensure_pad_token(rm, tok)
    rm.save_pretrained(out)
    tok.save_pretrained(out)
    return out


# The dataclass defaults are the embedded pipeline's values (params.yaml). Tests build their configs on smaller,
# faster settings instead: these, overridden by what each test says it needs.
SMALL_CONFIGS: dict[str, dict] = {
    "PPOConfig": dict(
        epochs=1,
        learning_rate=1e-5,
        batch_size=8,
        mini_batch_size=4,
        ppo_epochs=4,
        max_new_tokens=48,
        max_prompt_length=512,
        heldout_fraction=0.0,
        heldout_samples=1,
        checkpoint_every=1,
    ),
    "SFTConfig": dict(num_train_epochs=1.0, learning_rate=2e-5, max_seq_length=512),
    "RewardConfig": dict(num_train_epochs=1.0, max_length=512, eval_fraction=0.1),
    "SampleConfig": dict(max_new_tokens=64, batch_size=8),
    "TranslateConfig": dict(
        limit=None, eval_limit=None, max_attempts=3, pool_fraction=None, language_checks="enforce", max_tokens=None
    ),
    "RankConfig": dict(max_attempts=None, max_tokens=None),
    "GenerateConfig": dict(num_instructions=20, num_tasks=20, request_batch_size=2, max_rounds=10, max_tokens=2048),
}


# A PPO run on the tiny model that moves its weights in a step or two: two trained blocks, 4-prompt batches.
TINY_PPO: dict = dict(top_layers=2, batch_size=4, mini_batch_size=2, ppo_epochs=2, max_new_tokens=5, learning_rate=1e-3)


def small_config(cls, **overrides):
    """``cls`` (a config dataclass) with the test settings above, then ``overrides``."""
    return cls(**{**SMALL_CONFIGS.get(cls.__name__, {}), **overrides})
