"""dvc.yaml wiring: one independent column of stages per language, all chained by deps/outs."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PER_LANG = ["released", "translate", "sft", "sft_full", "sample", "rank", "rm", "ppo", "evaluate"]


@pytest.fixture(scope="module")
def repo():
    from dvc.repo import Repo

    with Repo(str(ROOT)) as r:
        yield r


def _langs() -> list[str]:
    return list(yaml.safe_load((ROOT / "params.yaml").read_text())["languages"])


def test_every_language_has_its_column(repo):
    names = {s.addressing for s in repo.index.stages}
    for lang in _langs():
        for stage in PER_LANG:
            assert f"{stage}@{lang}" in names
    assert {"base", "generate", "report"} <= names


def test_languages_are_independent_and_report_gathers_them(repo):
    graph = repo.index.graph  # edges point from a stage to the stages it depends on
    by_name = {s.addressing: s for s in repo.index.stages}
    langs = _langs()
    for lang in langs:
        for stage in PER_LANG:
            upstream = {s.addressing for s in nx.descendants(graph, by_name[f"{stage}@{lang}"])}
            others = [u for u in upstream if "@" in u and not u.endswith(f"@{lang}")]
            assert not others, f"{stage}@{lang} depends on another language's stages: {others}"
    report_up = {s.addressing for s in nx.descendants(graph, by_name["report"])}
    assert {f"evaluate@{lang}" for lang in langs} <= report_up
    # The RLHF chain in order, as in the paper.
    lang = langs[0]
    chain = ["translate", "sft", "sample", "rank", "rm", "ppo", "evaluate"]
    for later, earlier in zip(chain[1:], chain[:-1], strict=True):
        up = {s.addressing for s in nx.descendants(graph, by_name[f"{later}@{lang}"])}
        assert f"{earlier}@{lang}" in up
    assert "generate" in {s.addressing for s in nx.descendants(graph, by_name[f"translate@{lang}"])}
    assert f"sft_full@{lang}" in {s.addressing for s in nx.descendants(graph, by_name[f"evaluate@{lang}"])}
    for stage in ("translate", "rank"):  # with released.use they pass the released files on
        assert f"released@{lang}" in {s.addressing for s in nx.descendants(graph, by_name[f"{stage}@{lang}"])}


def test_the_released_switch_reruns_every_stage_it_changes(repo):
    for stage in repo.index.stages:
        keys = {k for dep in stage.deps if getattr(dep, "params", None) for k in dep.params}
        name = stage.addressing.split("@")[0]
        if name in ("generate", "translate", "sample", "rank"):
            assert {"released.use", "released.parts"} <= keys, stage.addressing
        elif name == "released":
            assert "released" in keys
        else:
            assert not any(k.startswith("released") for k in keys), stage.addressing


def test_language_overrides_are_params_of_that_column_only(repo):
    for stage in repo.index.stages:
        keys = {k for dep in stage.deps if getattr(dep, "params", None) for k in dep.params}
        if "@" in stage.addressing:
            lang = stage.addressing.split("@")[1]
            assert f"languages.{lang}" in keys, stage.addressing
            assert not any(k.startswith("languages.") and k != f"languages.{lang}" for k in keys)
        else:
            assert not any(k.startswith("languages.") for k in keys), stage.addressing


def test_every_okapi_module_a_stage_imports_is_a_dep(repo):
    import re

    for stage in repo.index.stages:
        cmd = stage.cmd
        m = re.search(r"-m stages\.(\w+)", cmd)
        assert m, cmd
        script = ROOT / "stages" / f"{m.group(1)}.py"
        deps = {str(Path(d.def_path)) for d in stage.deps}
        assert f"stages/{m.group(1)}.py" in deps, stage.addressing
        imported = set(re.findall(r"from okapi\.(\w+) import", script.read_text()))
        for mod in imported - {"cli", "config", "io", "params", "schemas", "languages", "teacher"}:
            # a module (okapi/x.py) or a package folder (okapi/x)
            assert deps & {f"okapi/{mod}.py", f"okapi/{mod}"}, (
                f"{stage.addressing} imports okapi.{mod} but not as a dep"
            )


def test_paper_profile_validates_and_lists_table_1(monkeypatch):
    from okapi.languages import TARGET_LANGUAGES
    from okapi.params import load_params

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    params = load_params(ROOT / "configs/paper/params.yaml")
    params.validate_all()
    assert sorted(params.languages) == sorted(TARGET_LANGUAGES)
    assert params.section("ppo").learning_rate == 1e-6 and params.section("ppo").top_layers == 4
    assert params.section("sft").batch_size == 128 and params.section("rm").batch_size == 64
