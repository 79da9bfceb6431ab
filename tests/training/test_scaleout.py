"""Scale-out checks: accelerate configs parse as accelerate reads them, training code asks accelerate (not a
hard-coded 1) for the world size and steps through a real Accelerator. Nothing here launches a second process or
needs a GPU (tests/training/test_multiprocess.py runs two)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import small_config
from torch import nn

from okapi import modeling, reward, sft
from okapi.ppo import PPOConfig, Rollout, ppo_update
from okapi.training import accumulation_steps

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "accelerate"

# file -> (distributed_type, num_processes, num_machines, mixed_precision)
EXPECTED = {
    "cpu.yaml": ("NO", 1, 1, "no"),
    "1gpu.yaml": ("NO", 1, 1, "bf16"),
    "8gpu_ddp.yaml": ("MULTI_GPU", 8, 1, "bf16"),
    "8gpu_fsdp.yaml": ("FSDP", 8, 1, "bf16"),
    "8gpu_zero3.yaml": ("DEEPSPEED", 8, 1, "bf16"),
    "multinode_zero3.yaml": ("DEEPSPEED", 16, 2, "bf16"),
    "multinode_ddp.yaml": ("MULTI_GPU", 16, 2, "bf16"),
}


def _load(name: str) -> Any:
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    cfg = load_config_from_file(str(CONFIG_DIR / name))
    assert isinstance(cfg, ClusterConfig)  # LOCAL_MACHINE configs, not SageMaker
    return cfg


def test_every_accelerate_config_has_expectations() -> None:
    assert sorted(p.name for p in CONFIG_DIR.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_parses_with_accelerates_loader(name: str) -> None:
    from accelerate.utils import DistributedType

    dist, n_proc, n_machines, precision = EXPECTED[name]
    cfg = _load(name)
    assert cfg.distributed_type == DistributedType[dist]
    assert (cfg.num_processes, cfg.num_machines, cfg.mixed_precision) == (n_proc, n_machines, precision)
    assert cfg.num_processes % cfg.num_machines == 0
    assert cfg.use_cpu is (name == "cpu.yaml")  # bf16 on every GPU config, fp32 on the CPU one
    if cfg.num_machines > 1:
        assert cfg.main_process_ip and cfg.main_process_port and cfg.machine_rank == 0
    if dist == "DEEPSPEED":
        assert cfg.deepspeed_config["zero_stage"] == 3
    if dist == "FSDP":
        assert cfg.fsdp_config["fsdp_version"] == 2


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_launch_reads_the_config_and_knows_its_keys(name: str) -> None:
    """What `accelerate launch --config_file <name>` would do with it, stopping before it starts anything."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    parser = launch_command_parser()
    known = {action.dest for action in parser._actions}
    cfg = _load(name)
    # accelerate copies these sections onto launch options without checking them: a typo would be ignored silently.
    for key in cfg.deepspeed_config:
        assert key in known, f"{name}: deepspeed_config.{key} is not an accelerate launch option"
    for key in cfg.fsdp_config:
        option = key if key.startswith("fsdp") else f"fsdp_{key}"
        assert option in known, f"{name}: fsdp_config.{key} is not an accelerate launch option"
    args, _, _ = _validate_launch_command(parser.parse_args(["--config_file", str(CONFIG_DIR / name), "train.py"]))
    dist, n_proc, _, precision = EXPECTED[name]
    assert args.use_deepspeed is (dist == "DEEPSPEED")
    assert args.use_fsdp is (dist == "FSDP")
    assert (args.num_processes, args.mixed_precision) == (n_proc, precision)


# ------------------------------------------------------------------------------------------------ world size


def test_world_size_comes_from_accelerate() -> None:
    # One process here; the two-process case runs for real under `accelerate launch` in test_multiprocess.
    from accelerate import PartialState

    assert modeling.world_size() == PartialState().num_processes == 1


def test_sft_trainer_accumulates_to_the_effective_batch(tiny_model_dir: Path, tmp_path: Path) -> None:

    rows = [{"id": "a", "instruction": "Say hi.", "input": "", "output": "Hi."}]
    cfg = small_config(sft.SFTConfig, batch_size=8, per_device_train_batch_size=2)
    trainer = sft.build_sft_trainer(tiny_model_dir, rows, tmp_path / "out", cfg)
    assert trainer.args.per_device_train_batch_size == 2
    assert trainer.args.gradient_accumulation_steps == 8 // (2 * 1)
    # With more processes the same arithmetic divides by them (8 GPUs: 128 / (4 x 8)).
    assert accumulation_steps(128, 4, 8) == 4 and accumulation_steps(64, 4, 4) == 4


def test_reward_model_reports_the_batch_it_trained_with(tiny_model_dir: Path, tmp_path: Path) -> None:
    pairs = [
        {"id": f"p{i}", "instruction": f"Tip {i}.", "input": "", "chosen": "Sleep well.", "rejected": "xq"}
        for i in range(4)
    ]
    cfg = small_config(reward.RewardConfig, batch_size=4, per_device_train_batch_size=2, eval_fraction=0.0, max_steps=1)
    metrics = reward.train_reward_model(tiny_model_dir, pairs, tmp_path / "rm", cfg)
    assert metrics["effective_batch_size"] == 4 and metrics["processes"] == 1 and metrics["steps"] == 1


# ------------------------------------------------------------------------------------------------ PPO


class _ToyPolicy(nn.Module):
    def __init__(self, vocab: int = 5) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, 8)
        self.head = nn.Linear(8, vocab)
        self.value = nn.Linear(8, 1)

    def forward(self, ids: torch.Tensor, attn: torch.Tensor, pos: torch.Tensor, start: int) -> tuple:
        hidden = self.emb(ids[:, start - 1 : -1])
        return self.head(hidden), self.value(hidden).squeeze(-1)


def test_ppo_update_steps_through_a_real_accelerator() -> None:
    torch.manual_seed(0)
    policy = _ToyPolicy()
    batch, prompt_len, resp_len = 6, 3, 4
    ids = torch.randint(0, 5, (batch, prompt_len + resp_len))
    mask = torch.ones(batch, resp_len)
    zeros = torch.zeros(batch, resp_len)
    rollout = Rollout(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        position_ids=torch.arange(ids.shape[1]).expand(batch, -1),
        response_start=prompt_len,
        responses=ids[:, prompt_len:],
        mask=mask,
        old_logp=zeros - 1.6,
        ref_logp=zeros - 1.6,
        old_values=zeros,
        scores=torch.ones(batch),
        rewards=zeros,
        kl=zeros,
        advantages=torch.randn(batch, resp_len),
        returns=torch.ones(batch, resp_len),
    )
    from accelerate import Accelerator

    before = [p.detach().clone() for p in policy.parameters()]
    accelerator = Accelerator(cpu=True)
    wrapped, optimizer = accelerator.prepare(policy, torch.optim.Adam(policy.parameters(), lr=0.1))
    cfg = small_config(PPOConfig, batch_size=6, mini_batch_size=4, ppo_epochs=3)
    stats = ppo_update(wrapped, optimizer, rollout, cfg, accelerator)
    steps = {int(state["step"]) for state in optimizer.optimizer.state.values()}
    assert steps == {3 * 2}  # ppo_epochs x ceil(6 / 4) mini-batches, each one optimizer step
    assert all(not torch.equal(b, p) for b, p in zip(before, policy.parameters(), strict=True))
    assert set(stats) >= {"policy_loss", "value_loss", "approx_kl"}


def test_train_ppo_prepares_with_accelerate_and_splits_batches_by_process(
    monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A fake second process of two: it must sample only its share of each batch and of the held-out prompts."""
    import accelerate

    calls: dict[str, int] = {"prepare": 0, "backward": 0}

    class SecondOfTwo(accelerate.Accelerator):
        @property
        def num_processes(self) -> int:
            return 2

        @property
        def process_index(self) -> int:
            return 1

        def prepare(self, *objects: Any) -> Any:
            calls["prepare"] += 1
            return super().prepare(*objects)

        def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
            calls["backward"] += 1
            super().backward(loss, **kwargs)

    monkeypatch.setattr(accelerate, "Accelerator", SecondOfTwo)
    seen: list[list[str]] = []

    def reward_fn(prompts: list[str], responses: list[str]) -> list[float]:
        seen.append(list(prompts))
        return [float(len(r)) for r in responses]

    from okapi.ppo import train_ppo

    prompts = [{"id": f"q{i}", "instruction": f"Tip number {i}.", "input": ""} for i in range(8)]
    held = [{"id": f"h{i}", "instruction": f"Say {i}.", "input": ""} for i in range(4)]
    cfg = small_config(
        PPOConfig,
        top_layers=1,
        batch_size=4,
        mini_batch_size=2,
        ppo_epochs=1,
        max_new_tokens=3,
        max_steps=2,
        eval_batch_size=8,
    )
    metrics, _ = train_ppo(tiny_model_dir, None, prompts, held, tmp_path / "ppo", cfg, reward_fn=reward_fn)
    assert calls["prepare"] == 1
    assert calls["backward"] == 2 * 1 * 1  # steps x ppo_epochs x (2 prompts on this process / mini-batch 2)
    # held-out before, two PPO steps, held-out after: always this process's half
    assert [len(s) for s in seen] == [2, 2, 2, 2]
    assert metrics["steps"] == 2


@pytest.mark.parametrize("dist", ["DEEPSPEED", "FSDP"])
def test_ppo_refuses_sharded_engines_before_loading_anything(monkeypatch, tmp_path: Path, dist: str) -> None:
    import accelerate
    from accelerate.utils import DistributedType

    from okapi.config import ConfigError
    from okapi.ppo import train_ppo

    class ShardedAccelerator:
        def __init__(self) -> None:
            self.distributed_type = DistributedType[dist]
            self.num_processes = 1

    monkeypatch.setattr(accelerate, "Accelerator", ShardedAccelerator)
    with pytest.raises(ConfigError, match=rf"PPO does not run under {dist}.*8gpu_ddp.yaml"):
        train_ppo(
            tmp_path / "missing-sft",
            None,
            [],
            None,
            tmp_path / "out",
            small_config(PPOConfig),
            reward_fn=lambda p, r: [],
        )


def test_paper_profile_launches_ppo_data_parallel() -> None:
    import yaml

    params = yaml.safe_load((CONFIG_DIR.parents[1] / "configs" / "paper" / "params.yaml").read_text())
    config = params["ppo_launcher"].split("--config_file", 1)[1].split()[0]
    assert _load(Path(config).name).distributed_type == "MULTI_GPU"
    assert "zero3" in params["launcher"]  # SFT and the reward model shard with ZeRO-3
