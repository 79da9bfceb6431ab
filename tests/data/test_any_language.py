"""A language outside Table 1 (Japanese) and English, the source language, through the project's own dvc.yaml:
`dvc repro report` from generate to the report with tiny models and a loopback OpenAI-compatible teacher that
answers in Japanese. Japanese's translations go through the real checks (its three scripts, py3langid); English
passes through translate with no teacher request and skips rank's translation turn; the report places Japanese in
its own group and English apart."""

from __future__ import annotations

import itertools
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from fakes import distinct_tasks_answer
from openai_server import FakeOpenAIServer
from stagekit import ROOT, pipeline_env, run_checked, tiny_training

from okapi import schemas
from okapi.io import read_rows

_counter = itertools.count()
_CODE_RE = re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL)
# Written for this test ("This is a Japanese translation. The text was translated."): Han, Hiragana and Katakana;
# two fields of it are long enough for py3langid.
_JA = "これは日本語の翻訳です。テキストを訳しました。"


def _japanese(value: str) -> str:
    # Code must survive translation (Fig. 2): keep every code span, translate the prose around it.
    return " ".join([_JA, *(m.group(0) for m in _CODE_RE.finditer(value))]) if value.strip() else value


def responder(messages: list[dict[str, str]]) -> str:
    first, last = messages[0]["content"], messages[-1]["content"]
    if "diverse task instructions" in first:
        return distinct_tasks_answer(next(_counter))
    if "Translate the values" in first:
        assert "into Japanese" in first, first[:200]  # English is never sent for translation
        src = json.loads(first[first.index("\n\n{") + 2 :])
        return json.dumps({k: _japanese(v) for k, v in src.items()}, ensure_ascii=False)
    if "rank the responses" in last:
        t = len(re.findall(r"^Response \d+: ", first, re.MULTILINE))
        return json.dumps({"ranks": list(range(t, 0, -1))})
    return "Instruction: a translated instruction. Input: <empty>. Response 1: a. Response 2: b."


def _params(teacher_url: str) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["languages"] = {"ja": {}, "en": {}}
    params["teacher"].update(backend="openai", base_url=teacher_url, model="m", max_retries=0, timeout_s=30.0)
    params["generate"].update(num_instructions=6, max_rounds=3, request_batch_size=2)
    # The checks enforced, as for a real teacher: a Japanese answer must pass the script and py3langid checks.
    # The fake teacher answers every text with the same Japanese sentence, so every training row shares 13-grams
    # with the translated benchmarks: decontamination counts them (report) instead of dropping every row; dropping
    # is tested in tests/data/test_data_trust.py.
    params["translate"].update(limit=10, eval_limit=2, language_checks="enforce", langid=True, decontaminate="report")
    params["sample"].update(max_new_tokens=8)
    # The tiny tokenizer spells Japanese byte by byte (~3 tokens a character): room for a prompt and its response.
    return tiny_training(params, max_seq_length=512)


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_model_dir):
    """A git+DVC copy of the project with languages {ja: {}, en: {}}, reproduced up to the report."""
    tmp = tmp_path_factory.mktemp("any_language")
    repo = tmp / "repo"
    repo.mkdir()
    for name in ("okapi", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("data/seeds", "data/eval_sources", "data/released", "data/paper"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("*.json", "*.dvc"))
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copytree(tiny_model_dir, repo / "models" / "base")
    (repo / "metrics").mkdir()
    (repo / "metrics" / "base.json").write_text('{"n_layers": 6}\n')
    env = pipeline_env(tmp, OPENAI_API_KEY="sk-test-any-language")
    with FakeOpenAIServer(responder) as teacher:
        (repo / "params.yaml").write_text(yaml.safe_dump(_params(teacher.base_url), sort_keys=False))
        run_checked(repo, env, "git", "init", "-q")
        run_checked(repo, env, "dvc", "init", "-q")
        run_checked(repo, env, "dvc", "commit", "-f", "base")  # the tiny model stands in for the GGUF conversion
        run_checked(repo, env, "dvc", "repro", "report")
        yield {"repo": repo, "teacher": teacher}


def _metrics(repo: Path, rel: str) -> dict:
    return json.loads((repo / "metrics" / rel).read_text())


def test_japanese_column_runs_with_the_real_checks(project):
    repo = project["repo"]
    tr = _metrics(repo, "translate/ja.json")
    assert tr["language"] == "Japanese"
    assert tr["language_checks_run"] == {"scripts": ["Hani", "Hira", "Kana"], "langid": "ja", "not_run": {}}
    assert tr["accepted"] > 0 and tr["language_warnings"] == {}
    ok = [r for r in read_rows(repo / "data/translated/ja/all.parquet", schemas.TRANSLATIONS) if r["status"] == "ok"]
    assert ok and all(r["instruction"].startswith(_JA) and r["lang"] == "ja" for r in ok)
    arc = read_rows(repo / "data/eval/ja/arc.parquet", schemas.MULTIPLE_CHOICE)
    assert arc and all(r["instruction"] == _JA for r in arc)  # the benchmarks translated like any language's
    rank = _metrics(repo, "rank/ja.json")
    assert rank["translation_turn"] == "sent" and rank["ranked"] > 0
    assert (repo / "models/ja/ppo/config.json").is_file()
    assert sorted(_metrics(repo, "eval/ja.json")["rlhf"]) == ["arc", "hellaswag", "mmlu"]


def test_english_passes_through_and_skips_the_translation_turn(project):
    repo, teacher = project["repo"], project["teacher"]
    tr = _metrics(repo, "translate/en.json")
    assert tr["teacher"] == {"requests_sent": 0}
    assert tr["language_checks_run"]["passthrough"] == tr["rows"] and tr["rejected"] == 0
    rows = read_rows(repo / "data/translated/en/all.parquet", schemas.TRANSLATIONS)
    assert rows and all(
        r["instruction"] == r["en_instruction"] and r["reason"].startswith("source_language") for r in rows
    )
    # Evaluation uses the English benchmark sources themselves.
    arc = read_rows(repo / "data/eval/en/arc.parquet", schemas.MULTIPLE_CHOICE)
    sources = [json.loads(line) for line in (repo / "data/eval_sources/arc.jsonl").read_text().splitlines()]
    assert [r["instruction"] for r in arc] == [s["instruction"] for s in sources[: len(arc)]]
    rank = _metrics(repo, "rank/en.json")
    assert rank["translation_turn"] == "skipped" and rank["ranked"] > 0
    en_rankings = read_rows(repo / "data/rankings/en/rankings.parquet", schemas.RANKINGS)
    assert all(r["english"] is None for r in en_rankings)
    turn1 = [r for r in teacher.requests if "into English" in r["messages"][0]["content"]]
    english_ids = {r["instruction"] for r in en_rankings}
    assert not any(any(i in r["messages"][0]["content"] for i in english_ids) for r in turn1)
    assert sorted(_metrics(repo, "eval/en.json")["rlhf"]) == ["arc", "hellaswag", "mmlu"]


def test_report_places_japanese_in_its_group_and_english_apart(project):
    repo = project["repo"]
    md = (repo / "reports/arc.md").read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    labels = [ln.split("|")[2].strip() for ln in lines[1:]]  # after the header row
    assert labels == ["Japanese (ja)", "**Ave Group**", "**Average**", "English (en)"]
    assert "| Outside Table 1 |" in md and "| Source language |" in md
    summary = _metrics(repo, "summary.json")
    for bench in ("arc", "hellaswag", "mmlu"):
        entry = summary[bench]["rlhf"]
        assert entry["languages"] == 1 and {"ave_other", "average", "english"} <= set(entry)
