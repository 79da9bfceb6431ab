"""The trained policy: the SFT model with a value head, whose reference shares the frozen trunk; saving it."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from okapi.io import replace_dir
from okapi.modeling import decoder_layers, trainable_top_layers
from okapi.ppo.config import VALUE_HEAD_FILE
from okapi.training import tmp_dir

log = logging.getLogger(__name__)


class _TrunkDone(Exception):
    """Raised by the capture hook once the frozen trunk's output is in hand: the top blocks need not run."""


class _Skip(nn.Module):
    """Stands in for a frozen trunk block while its output is replayed: returns the hidden states it is given."""

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return args[0] if args else kwargs["hidden_states"]


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
        self._layers = layers
        self._first_top = n - top_layers
        # Whether replaying the trunk's output gives the full forward's logits for this architecture: checked once
        # on real inputs (check_trunk_replay); None until then, and the full forward is used.
        self.trunk_replay: bool | None = None

    def snapshot_reference(self) -> None:
        """Freeze a copy of the current top blocks as the reference policy (call after moving devices)."""
        params = dict(self.lm.base_model.named_parameters())
        self.ref_params = {name: params[name].detach().clone() for name in self._ref_names}

    def parameters_to_train(self) -> list[nn.Parameter]:
        return [*self.trainable, *self.value_head.parameters()]

    # -- the frozen trunk, computed once per batch --------------------------------------------------------------
    # Only the top blocks train, so the hidden states entering them are the same for the rollout's policy pass, its
    # reference pass and every PPO epoch's update. trunk() computes them once; forward(..., trunk=h) feeds them to
    # the top blocks with the trunk blocks skipped (inputs_embeds = h). That holds for architectures whose blocks
    # take the embeddings as they are (Llama, Mistral, Qwen, ...); check_trunk_replay() compares both paths on
    # real inputs once and turns the replay off where they differ (e.g. BLOOM's embedding norm).
    @torch.no_grad()
    def trunk(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor | None:
        """The hidden states entering the first trained block [B, T, H], or None when replay is off."""
        if not self.trunk_replay:
            return None
        return self._run_trunk(input_ids, attention_mask, position_ids)

    def _run_trunk(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor
    ) -> torch.Tensor:
        with self.capturing_trunk(stop=True) as chunks:
            try:
                with torch.no_grad():
                    self.lm.base_model(
                        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
                    )
            except _TrunkDone:
                pass
        return chunks[0]

    @contextmanager
    def capturing_trunk(self, stop: bool = False) -> Iterator[list[torch.Tensor]]:
        """Collect the hidden states entering the first trained block on every forward of the LM in this block
        (e.g. generate(): the prompt's prefill, then one position per decoded token); see :meth:`captured_trunk`.
        ``stop``: raise _TrunkDone once they are in hand, so the top blocks do not run (:meth:`_run_trunk`)."""
        chunks: list[torch.Tensor] = []

        def grab(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            chunks.append((args[0] if args else kwargs["hidden_states"]).detach())
            if stop:
                raise _TrunkDone

        handle = self._layers[self._first_top].register_forward_pre_hook(grab, with_kwargs=True)
        try:
            yield chunks
        finally:
            handle.remove()

    @staticmethod
    def captured_trunk(chunks: list[torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor | None:
        """The trunk [B, P + R, H] of prompt + response from what :meth:`capturing_trunk` saw during generate(),
        or None if that does not add up to these sequences.

        generate() runs the trunk over the prompt and over each response token but the last (it is sampled, never
        fed), so the last position is missing: it is only ever the input to a position after the last prediction
        (forward() slices it off) and is filled with zeros. Positions the mask hides (left padding, what follows a
        finished response) are zeroed: they are masked keys in the top blocks and their own outputs are unused."""
        if not chunks or any(c.dim() != 3 or c.shape[0] != attention_mask.shape[0] for c in chunks):
            return None
        h = torch.cat(chunks, dim=1)
        if h.shape[1] == attention_mask.shape[1] - 1:
            h = torch.cat([h, h.new_zeros(h.shape[0], 1, h.shape[2])], dim=1)
        if h.shape[1] != attention_mask.shape[1]:
            return None
        return torch.where(attention_mask.bool().unsqueeze(-1), h, h.new_zeros(()))

    @torch.no_grad()
    def check_trunk_replay(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        response_start: int,
        trunk: torch.Tensor | None = None,
    ) -> bool:
        """Compare the replayed and the full forward on these inputs (once); replay only where they agree.

        ``trunk``: the trunk captured while sampling these sequences (:meth:`captured_trunk`), checked instead of
        a recomputed one."""
        if self.trunk_replay is None:
            full, full_v = self(input_ids, attention_mask, position_ids, response_start)
            try:
                h = trunk if trunk is not None else self._run_trunk(input_ids, attention_mask, position_ids)
                fast, fast_v = self(input_ids, attention_mask, position_ids, response_start, trunk=h)
                # Where a response token is predicted (the losses' mask); past a response's end nothing is used.
                used = attention_mask[:, response_start:].bool()
                tol = 1e-3 * max(1.0, float(full[used].abs().max()))
                same = fast.shape == full.shape and bool(
                    (fast[used].float() - full[used].float()).abs().max() <= tol
                    and (fast_v[used] - full_v[used]).abs().max() <= tol
                )
            except Exception as err:  # noqa: BLE001 -- any failure of the shortcut means: do not use it
                log.info("PPO trunk replay unavailable for %s (%s)", type(self.lm).__name__, err)
                same = False
            self.trunk_replay = same
            log.info(
                "PPO: %s",
                "the frozen trunk runs once per batch (replay checked against the full forward)"
                if same
                else f"full forward for every pass ({type(self.lm).__name__}: trunk replay differs)",
            )
        return bool(self.trunk_replay)

    @contextmanager
    def _trunk_skipped(self) -> Iterator[None]:
        saved = list(self._layers[: self._first_top])
        skip = _Skip()
        for i in range(self._first_top):
            self._layers[i] = skip
        try:
            yield
        finally:
            for i, layer in enumerate(saved):
                self._layers[i] = layer

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        response_start: int,
        reference: bool = False,
        trunk: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, values) at the positions that predict the response tokens [B, R, V] and [B, R].

        ``trunk``: the hidden states entering the first trained block (from :meth:`trunk`); the frozen blocks are
        then skipped."""
        base = self.lm.base_model
        kwargs: dict[str, Any] = {"attention_mask": attention_mask, "position_ids": position_ids, "use_cache": False}
        if trunk is None:
            kwargs["input_ids"] = input_ids
        else:
            kwargs["inputs_embeds"] = trunk
        with self._trunk_skipped() if trunk is not None else _nothing():
            if reference:
                out = torch.func.functional_call(base, self.ref_params, args=(), kwargs=kwargs, strict=False)
            else:
                out = base(**kwargs)
        # Slice before the LM head: logits are only needed where response tokens are predicted.
        hidden = out.last_hidden_state[:, response_start - 1 : -1]
        logits = self.lm.get_output_embeddings()(hidden)
        values = self.value_head(hidden).squeeze(-1)
        return logits, values


@contextmanager
def _nothing() -> Iterator[None]:
    yield


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
