"""Dataset cards (okapi.cards) parse with huggingface_hub's DatasetCard; okapi.publish makes exactly the expected
HfApi calls, only when hub access is on, and never shows the token."""

from __future__ import annotations

import pytest
from huggingface_hub import DatasetCard

from okapi import publish
from okapi.cards import generated_card, pairs_card, section_params, size_category, translation_card
from okapi.io import write_parquet
from okapi.schemas import PROMPTS
from okapi.teacher import TeacherConfig
from okapi.translate import TranslateConfig

CANARY = "hf_canary_token_5b4a"


def _translation_metrics() -> dict:
    return {
        "rejected_by_reason": {"not_json": 2, "code_changed": 1},
        "back_translation": {"rejected": 3, "min_back_score": 40.0},
        "decontamination": {"mode": "drop", "ngram": 13, "dropped_rows": 1, "by_benchmark": {"arc": 1, "mmlu": 0}},
    }


def _params() -> dict:
    tcfg = TeacherConfig(backend="openai", base_url="https://secret-host.example/v1", model="gpt-x")
    return section_params(teacher=tcfg, translate=TranslateConfig(limit=20))


def test_translation_card_parses_and_says_where_rows_came_from():
    splits = {"sft": 5, "full": 14, "rank": 4, "ppo": 5}
    card = translation_card("vi", "Vietnamese", splits, 20, _translation_metrics(), _params(), released=False)
    parsed = DatasetCard(card.render())
    assert parsed.data.language == ["vi"]
    assert parsed.data.license == "cc-by-nc-4.0"
    assert parsed.data.size_categories == ["n<1K"]
    assert parsed.data.task_categories == ["text-generation"]
    configs = {c["config_name"]: c["data_files"] for c in parsed.data.configs}
    assert configs["default"] == [{"split": s, "path": f"{s}.parquet"} for s in splits]
    assert configs["all"] == [{"split": "train", "path": "all.parquet"}]
    text = parsed.text
    assert "| translation check: not_json | 2 |" in text and "| translation check: code_changed | 1 |" in text
    assert "| back-translation score | 3 |" in text and "| decontamination | 1 |" in text
    assert "| sft | `sft.parquet` | 5 |" in text
    assert "prompt_version: `okapi-v1`" in text and "model: `gpt-x`" in text
    assert "limit: 20" in text  # the params block
    assert "secret-host" not in card.render()  # the endpoint is not recorded


def test_generated_and_pairs_cards_parse(tmp_path):
    rows = [{"source": "seed"}] * 3 + [{"source": "generated"}] * 2000
    gen = generated_card(rows, {"rejected_by_reason": {"rouge_similar": 8, "too_long": 0}}, _params())
    gen.write(tmp_path / "README.md")
    parsed = DatasetCard.load(tmp_path / "README.md")
    assert parsed.data.language == ["en"] and parsed.data.size_categories == ["1K<n<10K"]
    assert "| self-instruct filter: rouge_similar | 8 |" in parsed.text and "too_long" not in parsed.text
    pairs = pairs_card("es", "Spanish", 30, 5, {"rejected_by_reason": {"bad_ranks": 1}}, _params())
    parsed = DatasetCard(pairs.render())
    assert parsed.data.language == ["es"] and "preference" in parsed.data.tags
    assert "| ranking answer: bad_ranks | 1 |" in parsed.text
    released = pairs_card("es", "Spanish", 30, 0, {"source": "released"}, {})
    assert "released ranking data" in DatasetCard(released.render()).text


def test_size_categories():
    assert [size_category(n) for n in (0, 999, 1000, 158_000, 2_000_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "100K<n<1M",
        "1M<n<10M",
    ]


class FakeHfApi:
    """Records the calls okapi.publish makes (the real HfApi's signatures)."""

    instances: list[FakeHfApi] = []

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.calls: list[tuple[str, dict]] = []
        FakeHfApi.instances.append(self)

    def create_repo(self, repo_id: str, *, private: bool | None = None, repo_type: str | None = None, exist_ok=False):
        self.calls.append(
            ("create_repo", {"repo_id": repo_id, "private": private, "repo_type": repo_type, "exist_ok": exist_ok})
        )
        return f"https://hub.example/datasets/{repo_id}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        return "commit-info"


@pytest.fixture
def dataset_root(tmp_path):
    folder = tmp_path / "data/translated/vi"
    for split in ("sft", "full", "rank", "ppo", "all"):
        write_parquet(
            [{"id": "1", "lang": "vi", "instruction": "a", "input": "", "output": "b"}],
            folder / f"{split}.parquet",
            PROMPTS,
        )
    card = translation_card("vi", "Vietnamese", {"sft": 1}, 1, {}, {}, released=False)
    card.write(folder / "README.md")
    (folder / "notes.tmp").write_text("not for upload")
    return tmp_path


@pytest.fixture
def fake_api(monkeypatch):
    import huggingface_hub

    FakeHfApi.instances.clear()
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHfApi)
    return FakeHfApi


def test_publish_makes_exactly_the_upload_calls(dataset_root, fake_api, monkeypatch, caplog):
    monkeypatch.setenv("OKAPI_ALLOW_HUB", "1")
    monkeypatch.setenv("HF_TOKEN", CANARY)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    caplog.set_level("DEBUG")
    code = publish.main(["--repo-id", "okapi-org/okapi-vi", "--lang", "vi", "--root", str(dataset_root)])
    assert code == 0
    (api,) = fake_api.instances
    assert api.token == CANARY
    folder = str(dataset_root / "data/translated/vi")
    assert api.calls == [
        ("create_repo", {"repo_id": "okapi-org/okapi-vi", "private": False, "repo_type": "dataset", "exist_ok": True}),
        (
            "upload_folder",
            {
                "repo_id": "okapi-org/okapi-vi",
                "repo_type": "dataset",
                "folder_path": folder,
                "allow_patterns": [
                    "README.md",
                    "all.parquet",
                    "full.parquet",
                    "ppo.parquet",
                    "rank.parquet",
                    "sft.parquet",
                ],
                "commit_message": "Okapi pipeline: translated (vi) dataset and card",
            },
        ),
    ]
    assert CANARY not in caplog.text


@pytest.mark.parametrize(
    ("env", "args", "words"),
    [
        ({}, [], "hub access is off"),
        ({"OKAPI_ALLOW_HUB": "1"}, [], "HF_TOKEN is not set"),
        ({"OKAPI_ALLOW_HUB": "1", "HF_TOKEN": CANARY}, ["--lang", "xx"], "unknown language code 'xx'"),
        ({"OKAPI_ALLOW_HUB": "1", "HF_TOKEN": CANARY}, ["--repo-id", "no-slash"], "--repo-id 'no-slash' is invalid"),
        ({"OKAPI_ALLOW_HUB": "1", "HF_TOKEN": CANARY}, ["--dataset", "pairs"], "no dataset card"),
    ],
)
def test_publish_refuses_with_one_clear_line(dataset_root, fake_api, monkeypatch, capsys, env, args, words):
    for key in ("OKAPI_ALLOW_HUB", "HF_TOKEN", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    base = {"--repo-id": "org/name", "--lang": "vi", "--root": str(dataset_root)}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    code = publish.main([x for kv in base.items() for x in kv])
    err = capsys.readouterr().err
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1
    assert CANARY not in err
    assert not any(api.calls for api in fake_api.instances)


def test_dry_run_lists_without_a_client(dataset_root, fake_api, monkeypatch, caplog):
    monkeypatch.delenv("OKAPI_ALLOW_HUB", raising=False)
    caplog.set_level("INFO")
    assert publish.main(["--repo-id", "org/name", "--lang", "vi", "--root", str(dataset_root), "--dry-run"]) == 0
    assert not fake_api.instances
    assert "README.md, all.parquet" in caplog.text and "notes.tmp" not in caplog.text
