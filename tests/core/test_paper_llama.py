"""The LLaMA profile (configs/paper-llama): Table 1's LLaMA languages, LLaMA-7B, otherwise the paper profile; the
report lays out its language set as the paper's Tables 6-8 (High and Medium groups, no Low group)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from okapi.languages import SOURCE_LANGUAGE, TABLE_1
from okapi.params import load_params
from okapi.report import build_report, build_table

ROOT = Path(__file__).resolve().parents[2]
MODELS = ["base", "sft", "rlhf"]
# Table 6 of the paper (ARC, LLaMA-7B; columns LLaMA, SFT, RLHF), per language, as published (Lai et al., 2023).
TABLE_6 = {
    "ru": (32.1, 32.8, 37.7),
    "de": (35.1, 37.5, 39.7),
    "fr": (37.3, 38.4, 38.8),
    "es": (36.8, 38.7, 39.3),
    "it": (35.8, 36.3, 39.4),
    "nl": (33.6, 35.2, 37.5),
    "hu": (29.8, 31.4, 33.2),
    "ro": (32.4, 33.8, 37.5),
    "da": (32.7, 35.1, 36.8),
    "sk": (29.0, 34.3, 37.2),
    "uk": (32.9, 35.7, 36.4),
    "ca": (35.1, 36.8, 36.9),
    "sr": (30.8, 33.5, 35.8),
    "hr": (33.0, 33.8, 35.9),
}


def _profile(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / name / "params.yaml").read_text(encoding="utf-8"))


def test_llama_profile_is_the_paper_profile_on_llamas_languages() -> None:
    llama, paper = _profile("paper-llama"), _profile("paper")
    assert list(llama["languages"]) == [c for c, lang in TABLE_1.items() if lang.llama and c != SOURCE_LANGUAGE]
    assert len(llama["languages"]) == 14
    assert llama["base"]["model"] == "huggyllama/llama-7b"
    # Everything but the languages, the base model and the paper tables compared with follows the paper profile:
    # one recipe, two base models.
    assert llama["report"].pop("paper_model") == "llama-7b" and paper["report"].pop("paper_model") == "bloom-7b"
    assert {k: v for k, v in llama.items() if k not in ("languages", "base")} == {
        k: v for k, v in paper.items() if k not in ("languages", "base")
    }
    params = load_params(ROOT / "configs" / "paper-llama" / "params.yaml", lang="hr")
    params.validate_all()


def test_report_lays_out_tables_6_to_8_for_the_llama_languages(tmp_path: Path) -> None:
    results = {
        lang: {m: {"arc": {"acc": v / 100, "acc_norm": v / 100}} for m, v in zip(MODELS, values, strict=True)}
        for lang, values in TABLE_6.items()
    }
    rows = build_table(results, "arc", MODELS)
    assert [r.group for r in rows if r.kind == "group"] == ["H", "M"]  # no Low-Resource group, as in Table 6
    assert [r.code for r in rows if r.kind == "language"] == list(TABLE_6)  # Table 1 order
    by_label = {(r.kind, r.group): [round(v, 1) for v in r.values] for r in rows if r.kind != "language"}
    # The paper's own Ave Group and Average rows of Table 6, recomputed from its per-language numbers.
    assert by_label[("group", "H")] == pytest.approx([35.1, 36.5, 38.7], abs=0.051)
    assert by_label[("group", "M")] == pytest.approx([32.0, 34.3, 36.2], abs=0.051)
    assert by_label[("average", "")] == pytest.approx([33.3, 35.2, 37.3], abs=0.051)
    summary = build_report(results, tmp_path / "reports", tmp_path / "summary.json", MODELS)
    assert summary["arc"]["rlhf"]["languages"] == 14
    assert "Low-Resource" not in (tmp_path / "reports" / "arc.md").read_text()
