"""The trained policy: the SFT model with a value head, whose reference shares the frozen trunk; saving it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from okapi.io import replace_dir
from okapi.modeling import decoder_layers, trainable_top_layers
from okapi.ppo.config import VALUE_HEAD_FILE
from okapi.training import tmp_dir


class PolicyWithValue(nn.Module):
    """Causal LM + scalar value head; only the top ``top_layers`` blocks and the head train.

    ``reference=True`` runs the same network with the top blocks' initial weights: the frozen trunk is shared, so
    the reference costs k blocks of memory instead of a whole model.
    """

    def __init__(self, lm: nn.Module, top_layers: int) -> None:
        super().__init__()
        self.lm = lm
        self.trainable = trainable_top_layers(lm, top_layers)
        hidden = lm.config.get_text_config().hidden_size
        self.value_head = nn.Linear(hidden, 1)
        # Zero init: a random head on un-normalised hidden states (norms of tens) predicts values of +-10 that drown
        # rewards of order 1 in noise; starting at 0, the first advantages are the rewards-to-go themselves.
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        base = lm.base_model
        layers = decoder_layers(lm)
        prefix = next(name for name, mod in base.named_modules() if mod is layers)
        n = len(layers)
        self._ref_names = [
            f"{prefix}.{i}.{pname}" for i in range(n - top_layers, n) for pname, _ in layers[i].named_parameters()
        ]
        self.ref_params: dict[str, torch.Tensor] = {}
        self.snapshot_reference()

    def snapshot_reference(self) -> None:
        """Freeze a copy of the current top blocks as the reference policy (call after moving devices)."""
        params = dict(self.lm.base_model.named_parameters())
        self.ref_params = {name: params[name].detach().clone() for name in self._ref_names}

    def parameters_to_train(self) -> list[nn.Parameter]:
        return [*self.trainable, *self.value_head.parameters()]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        response_start: int,
        reference: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, values) at the positions that predict the response tokens [B, R, V] and [B, R]."""
        base = self.lm.base_model
        kwargs = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
            "use_cache": False,
        }
        if reference:
            out = torch.func.functional_call(base, self.ref_params, args=(), kwargs=kwargs, strict=False)
        else:
            out = base(**kwargs)
        # Slice before the LM head: logits are only needed where response tokens are predicted.
        hidden = out.last_hidden_state[:, response_start - 1 : -1]
        logits = self.lm.get_output_embeddings()(hidden)
        values = self.value_head(hidden).squeeze(-1)
        return logits, values


def save_policy(policy: PolicyWithValue, tokenizer: Any, out_dir: Path) -> None:
    """Plain HF causal-LM folder (loadable by AutoModelForCausalLM) plus value_head.safetensors, atomically."""
    from safetensors.torch import save_file

    tmp = tmp_dir(out_dir)
    if tmp.exists():
        shutil.rmtree(tmp)
    policy.lm.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    head = {k: v.detach().cpu().contiguous() for k, v in policy.value_head.state_dict().items()}
    save_file(head, str(tmp / VALUE_HEAD_FILE))
    replace_dir(tmp, out_dir)
