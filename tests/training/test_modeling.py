"""okapi.modeling on the tiny test model: loading with a pad token distinct from EOS, the top-layer freeze PPO
relies on, model-folder checks and the launch check."""

from __future__ import annotations

import json

import pytest

from okapi.config import ConfigError
from okapi.io import DataError
from okapi.modeling import (
    BaseModelConfig,
    check_launch,
    check_model_folder,
    decoder_layers,
    load_base_model,
    load_causal_lm,
    trainable_top_layers,
)


def test_load_gives_a_distinct_pad_token_and_the_right_padding_side(tiny_model_dir):
    model, tok = load_causal_lm(tiny_model_dir, for_training=False)
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    assert model.config.pad_token_id == tok.pad_token_id
    assert model.get_input_embeddings().num_embeddings >= len(tok)
    assert tok.padding_side == "left" and not model.training
    model, tok = load_causal_lm(tiny_model_dir, for_training=True)
    assert tok.padding_side == "right" and model.training


def test_only_the_top_blocks_train(tiny_model_dir):
    model, _ = load_causal_lm(tiny_model_dir, for_training=True)
    layers = decoder_layers(model)
    params = trainable_top_layers(model, 1)
    top = {id(p) for p in layers[-1].parameters()}
    assert {id(p) for p in params} == top
    assert all(p.requires_grad == (id(p) in top) for p in model.parameters())
    with pytest.raises(ValueError, match=rf"allowed: 1\.\.{len(layers)}"):
        trainable_top_layers(model, len(layers) + 1)


def test_model_folder_checks_name_the_problem(tmp_path, tiny_model_dir):
    assert "ForCausalLM" in check_model_folder(tiny_model_dir)["architectures"][0]
    with pytest.raises(DataError, match="not a model folder"):
        check_model_folder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(DataError, match=r"expected a reward model \(\*ForSequenceClassification\)"):
        check_model_folder(tmp_path, kind="reward")


def test_base_model_from_a_local_folder_and_the_offline_hub(tmp_path, tiny_model_dir, monkeypatch):
    metrics = load_base_model(str(tiny_model_dir), tmp_path / "base")
    assert (tmp_path / "base" / "config.json").is_file() and metrics
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="the hub is offline"):
        load_base_model("someone/some-model", tmp_path / "hub")
    with pytest.raises(ConfigError, match="parameter base.model"):
        BaseModelConfig(model=" ")


def test_a_multi_process_launch_that_runs_alone_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="ACCELERATE_USE_CPU"):
        check_launch(1)
    check_launch(2)


def test_last_logits_only_keeps_the_keys_and_values_and_one_position(tiny_model_dir) -> None:
    """A pass kept for its cache computes the last position's logits only, with the same keys and values."""
    import torch

    from okapi.modeling import load_causal_lm
    from okapi.sampling import last_logits_only

    lm, _tok = load_causal_lm(tiny_model_dir, for_training=False)
    assert last_logits_only(lm) == {"logits_to_keep": 1}
    assert last_logits_only(torch.nn.Linear(2, 2)) == {}
    ids = torch.tensor([[3, 5, 7, 9, 11]])
    with torch.no_grad():
        full = lm(input_ids=ids, use_cache=True)
        last = lm(input_ids=ids, use_cache=True, **last_logits_only(lm))
    assert last.logits.shape[1] == 1 and full.logits.shape[1] == 5
    torch.testing.assert_close(last.logits[:, -1], full.logits[:, -1])
    for a, b in zip(full.past_key_values.layers, last.past_key_values.layers, strict=True):
        assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)
