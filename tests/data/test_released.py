"""Okapi's released files -> our contracts: casts, drops with reasons, limits, and one clear error per bad file."""

from __future__ import annotations

import pytest
from released_fixture import release_tree, write

from okapi import schemas
from okapi.config import ConfigError
from okapi.io import DataError, read_rows
from okapi.params import Params
from okapi.released import (
    ReleasedConfig,
    convert_instructions,
    convert_language,
    convert_ranking,
    release_files,
    release_url,
    released_config,
)


def test_instructions_cast_non_strings_and_drop_with_reasons(tmp_path):
    path = write(
        tmp_path / "vi.json",
        [
            {"instruction": "Tính 2+2.", "input": "", "output": 4},
            {"instruction": "Số nguyên tố?", "input": 7, "output": True},
            {"instruction": "Liệt kê.", "input": None, "output": ["một", "hai", 3]},
            {"instruction": "Rỗng.", "input": "", "output": "  "},
            {"instruction": "", "input": "", "output": "x"},
            {"instruction": "Tính 2+2.", "input": "", "output": "bốn"},
        ],
    )
    rows, stats = convert_instructions(path, "vi", "alpaca")
    assert rows == [
        {"id": "okapi-alpaca-vi-0", "lang": "vi", "instruction": "Tính 2+2.", "input": "", "output": "4"},
        {"id": "okapi-alpaca-vi-1", "lang": "vi", "instruction": "Số nguyên tố?", "input": "7", "output": "true"},
        {"id": "okapi-alpaca-vi-2", "lang": "vi", "instruction": "Liệt kê.", "input": "", "output": "một\nhai\n3"},
    ]
    assert stats["read"] == 6 and stats["kept"] == 3
    assert stats["dropped"] == {"empty_output": 1, "empty_instruction": 1, "duplicate": 1}
    assert stats["cast_to_text"] == {"output": 3, "input": 1}


def test_unexpected_field_names_the_file_record_and_field(tmp_path):
    path = write(tmp_path / "es.json", [{"instruction": "a", "input": "", "output": "b", "lang": "es"}])
    with pytest.raises(DataError, match=r"es\.json, record 1: unexpected field 'lang'; allowed fields: instruction"):
        convert_instructions(path, "es", "rl")
    path = write(tmp_path / "es.json", [{"instruction": "a", "input": ""}])
    with pytest.raises(DataError, match=r"es\.json, record 1: missing field 'output'"):
        convert_instructions(path, "es", "rl")
    path = write(tmp_path / "es.json", [{"instruction": "a", "input": "", "output": {"x": 1}}])
    with pytest.raises(DataError, match=r"record 1: field 'output' is a dict"):
        convert_instructions(path, "es", "rl")


def test_lfs_pointer_and_missing_file_are_named(tmp_path):
    pointer = tmp_path / "vi.json"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n")
    with pytest.raises(DataError, match="Git LFS pointer, not the data.*media.githubusercontent.com"):
        convert_instructions(pointer, "vi", "alpaca")
    with pytest.raises(DataError, match="file not found"):
        convert_instructions(tmp_path / "nope.json", "vi", "alpaca")


def test_limit_keeps_the_same_rows_whatever_else_the_file_holds(tmp_path):
    records = [{"instruction": f"câu {i}", "input": "", "output": "x"} for i in range(30)]
    rows10, _ = convert_instructions(write(tmp_path / "a.json", records), "vi", "alpaca", limit=10, seed=1)
    assert len(rows10) == 10
    assert [r["id"] for r in rows10] == sorted((r["id"] for r in rows10), key=lambda s: int(s.rsplit("-", 1)[1]))
    again, _ = convert_instructions(write(tmp_path / "b.json", records), "vi", "alpaca", limit=10, seed=1)
    assert again == rows10
    other, _ = convert_instructions(tmp_path / "a.json", "vi", "alpaca", limit=10, seed=2)
    assert other != rows10


def test_ranking_pairs_with_sic_field_names_and_reasons(tmp_path):
    path = write(
        tmp_path / "vi.json",
        [
            {"instruction": "Câu hỏi?", "input": "", "prefered_output": "Tốt.", "rejected_output": "Tệ."},
            {"instruction": "Dịch.", "input": "Hello", "preferred_output": "Xin chào", "rejected_output": "Chào"},
            {"instruction": "Câu hỏi?", "input": "", "prefered_output": "Tốt.", "rejected_output": "Tệ."},
            {"instruction": "Giống.", "input": "", "prefered_output": "a", "rejected_output": "a"},
            {"instruction": "Trống.", "input": "", "prefered_output": "", "rejected_output": "a"},
            {"instruction": "Số.", "input": "", "prefered_output": 2, "rejected_output": 3},
        ],
    )
    pairs, stats = convert_ranking(path, "vi")
    assert pairs[1] == {
        "id": "okapi-ranking-vi-1",
        "lang": "vi",
        "instruction": "Dịch.",
        "input": "Hello",
        "chosen": "Xin chào",
        "rejected": "Chào",
    }
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("Tốt.", "Tệ."), ("Xin chào", "Chào"), ("2", "3")]
    assert stats["dropped"] == {"duplicate": 1, "identical_responses": 1, "empty_response": 1}
    write(tmp_path / "bad.json", [{"instruction": "x", "prefered_output": "y"}])
    with pytest.raises(DataError, match=r"bad\.json, record 1: missing field 'rejected_output'"):
        convert_ranking(tmp_path / "bad.json", "vi")
    write(tmp_path / "bad.json", [{"instruction": "x", "prefered_output": "y", "rejected_output": "z", "rank": 1}])
    with pytest.raises(DataError, match=r"bad\.json, record 1: unexpected field 'rank'"):
        convert_ranking(tmp_path / "bad.json", "vi")


def test_convert_language_writes_every_split_and_eval_file(tmp_path):
    src = release_tree(tmp_path / "released")
    out = tmp_path / "out"
    metrics = convert_language(src, "vi", out, ReleasedConfig(use=True))
    assert metrics["splits"] == {"sft": 4, "full": 8, "ppo": 4, "pairs": 4}
    assert len(read_rows(out / "rank.parquet", schemas.PROMPTS)) == 2  # distinct prompts of the pairs
    assert read_rows(out / "ppo.parquet", schemas.PROMPTS)[0]["instruction"] == "RL Hướng dẫn 0"
    assert sorted(p.name for p in (out / "eval").iterdir()) == [
        "arc_test.parquet",
        "arc_train.parquet",
        "hellaswag_val.parquet",
        "mmlu_dev.parquet",
        "mmlu_test.parquet",
    ]
    assert read_rows(out / "eval" / "hellaswag_val.parquet", schemas.HELLASWAG)[0]["endings"][1] == "bơi."


def test_convert_language_writes_nothing_when_one_file_is_bad(tmp_path):
    src = release_tree(tmp_path / "released")
    (src / "okapi-eval" / "m_mmlu" / "vi_dev.json").unlink()
    with pytest.raises(DataError, match=r"m_mmlu/vi_dev\.json: file not found"):
        convert_language(src, "vi", tmp_path / "out", ReleasedConfig(use=True))
    assert not (tmp_path / "out").exists()


def test_urls_and_files():
    cfg = ReleasedConfig(base_url="http://127.0.0.1:1/datasets/", eval_base_url="http://127.0.0.1:1/eval")
    files = release_files("vi")
    assert files[:3] == [
        "multilingual-alpaca-52k/vi.json",
        "multilingual-rl-tuning-64k/vi.json",
        "multilingual-ranking-data-42k/vi.json",
    ]
    assert release_url(files[0], cfg) == "http://127.0.0.1:1/datasets/multilingual-alpaca-52k/vi.json"
    assert release_url("okapi-eval/m_arc/vi_test.json", cfg) == "http://127.0.0.1:1/eval/m_arc/vi_test.json"
    assert release_files("vi", ("ranking",)) == ["multilingual-ranking-data-42k/vi.json"]


def test_params_switch_is_global_and_checked():
    with pytest.raises(ConfigError, match="released.base_url"):
        ReleasedConfig(base_url="ftp://x")
    with pytest.raises(ConfigError, match="released.limit"):
        ReleasedConfig(limit=0)
    raw = {"languages": {"vi": {"released": {"limit": 5}}, "es": {"released": {"use": True}}}, "released": {}}
    assert released_config(Params(raw, "vi")).limit == 5
    with pytest.raises(ConfigError, match="languages.es.released.use is not allowed"):
        released_config(Params(raw, "es"))


def test_parts_pick_what_comes_from_the_release(tmp_path):
    with pytest.raises(ConfigError, match="released.parts.*with ranking whenever it has instructions"):
        ReleasedConfig(parts=["instructions", "eval"])
    with pytest.raises(ConfigError, match="released.parts.*distinct parts out of instructions, ranking, eval"):
        ReleasedConfig(parts=["ranking", "rankings"])
    only_ranking = ReleasedConfig(use=True, parts=["ranking"])
    assert only_ranking.provides("ranking") and not only_ranking.provides("instructions")
    assert not ReleasedConfig(use=False).provides("ranking")
    assert only_ranking.kinds() == ("ranking",)
    assert ReleasedConfig().kinds() == ("alpaca", "rl", "ranking", "eval")
    src = release_tree(tmp_path / "released")
    (src / "multilingual-alpaca-52k" / "vi.json").unlink()  # not needed for the ranking part
    metrics = convert_language(src, "vi", tmp_path / "out", only_ranking)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "pairs.parquet", "rank.parquet"]
    assert metrics["splits"] == {"pairs": 4}
    raw = {"languages": {"vi": {"released": {"parts": ["ranking"]}}}, "released": {"use": True}}
    with pytest.raises(ConfigError, match="languages.vi.released.parts is not allowed"):
        released_config(Params(raw, "vi"))
