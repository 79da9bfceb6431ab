"""okapi.sampling on the tiny test model: T responses per prompt, reproducible from the seed, cut at EOS."""

from __future__ import annotations

import pytest
import torch
from tiny import small_config

from okapi.io import DataError
from okapi.sampling import SampleConfig, response_mask, sample_responses

ROWS = [{"id": f"r{i}", "instruction": f"Give tip {i}.", "input": ""} for i in range(3)]


def test_t_responses_per_prompt_reproducible_from_the_seed(tiny_model_dir):
    cfg = small_config(SampleConfig, num_responses=3, max_new_tokens=6, batch_size=2, seed=5)
    out = sample_responses(tiny_model_dir, ROWS, "vi", cfg)
    assert [r["id"] for r in out] == ["r0", "r1", "r2"]  # input order, ids kept
    assert all(len(r["responses"]) == 3 and r["lang"] == "vi" for r in out)
    assert sample_responses(tiny_model_dir, ROWS, "vi", cfg) == out
    other = sample_responses(tiny_model_dir, ROWS, "vi", small_config(SampleConfig, **{**vars(cfg), "seed": 6}))
    assert other != out


def test_response_mask_stops_after_the_first_eos():
    eos, pad = [9], 0
    ids = torch.tensor([[4, 9, 5, 9], [4, 5, 6, 7], [9, 0, 0, 0]])
    assert response_mask(ids, eos, pad).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]


def test_bad_rows_are_named_before_the_model_loads(tmp_path):
    with pytest.raises(DataError, match="sampling row 1: duplicate id 'r0'"):
        sample_responses(tmp_path / "no-model", [ROWS[0], ROWS[0]], "vi", small_config(SampleConfig))
    with pytest.raises(DataError, match=r"sampling row 0 \(id 'x'\): field 'instruction'"):
        sample_responses(tmp_path / "no-model", [{"id": "x", "instruction": " "}], "vi", small_config(SampleConfig))


def test_a_prompt_that_starts_several_sequences_is_computed_once(tiny_model_dir):
    """generate(): the T samples of a prompt and a prompt's repeats share one prefill of it (the model's first
    forward sees each distinct prompt once, all but its last token), and the responses are the ones generate()
    gives computing every copy (the same draws; left padding included)."""
    from okapi.modeling import load_causal_lm
    from okapi.sampling import encode_prompts, generate

    lm, tok = load_causal_lm(tiny_model_dir, for_training=False)
    prompts = ["Give three tips for a long and healthy life.", "Say hi.", "Say hi."]
    ids, mask = encode_prompts(tok, prompts, torch.device("cpu"))
    assert bool((mask == 0).any())  # the short prompts are left-padded
    seen: list[tuple[int, ...]] = []
    hook = lm.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        for n, sample in ((3, True), (1, False)):
            runs = {}
            for share in (False, True):
                seen.clear()
                torch.manual_seed(3)
                runs[share] = generate(
                    lm, tok, ids, mask, max_new_tokens=5, temperature=1.0, top_p=1.0,
                    num_return_sequences=n, do_sample=sample, share_prompts=share,
                )  # fmt: skip
                first = seen[0]
                if share:
                    assert first == (2, ids.shape[1] - 1)  # two distinct prompts, the last token left to generate()
                else:
                    assert first == (3 * n, ids.shape[1])
            assert runs[True].shape == (3 * n, 5)
            assert torch.equal(runs[True], runs[False])
    finally:
        hook.remove()
