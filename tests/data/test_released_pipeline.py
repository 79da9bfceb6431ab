"""Starting the pipeline from Okapi's released data: `dvc import-url` from a loopback HTTP server serving fixture
files written by us, then `dvc repro` with released.use: true on the project's own dvc.yaml and stage scripts,
tiny models, and a teacher that must receive no request at all."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from openai_server import FakeOpenAIServer
from released_fixture import release_tree, serve, write
from stagekit import ROOT, pipeline_env, run_checked, tiny_training

from okapi import schemas
from okapi.io import read_rows
from okapi.released import release_files


def _params(base_url: str, teacher_url: str) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["languages"] = {"vi": {}}
    params["released"].update(use=True, base_url=f"{base_url}/datasets", eval_base_url=f"{base_url}/okapi-eval")
    params["teacher"].update(backend="openai", base_url=teacher_url, model="m", max_retries=0, timeout_s=5.0)
    return tiny_training(params)


@pytest.fixture(scope="module")
def released_project(tmp_path_factory, tiny_model_dir):
    """A git+DVC copy of the project with the fixture release fetched by `python -m okapi.released fetch`."""
    tmp = tmp_path_factory.mktemp("released_project")
    srv_root = tmp / "srv"
    release_tree(srv_root / "datasets")
    shutil.move(srv_root / "datasets" / "okapi-eval", srv_root / "okapi-eval")
    repo = tmp / "repo"
    repo.mkdir()
    for name in ("okapi", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("data/seeds", "data/eval_sources"):
        shutil.copytree(ROOT / name, repo / name)
    (repo / "data" / "released").mkdir(parents=True)
    shutil.copy(ROOT / "data" / "released" / "README.md", repo / "data" / "released" / "README.md")
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copytree(tiny_model_dir, repo / "models" / "base")
    (repo / "metrics").mkdir()
    (repo / "metrics" / "base.json").write_text('{"n_layers": 6}\n')
    env = pipeline_env(tmp)
    with serve(srv_root) as server, FakeOpenAIServer(lambda messages: "unused") as teacher:
        params = _params(server.base_url, teacher.base_url)
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run_checked(repo, env, "git", "init", "-q")
        run_checked(repo, env, "dvc", "init", "-q")
        run_checked(repo, env, "dvc", "commit", "-f", "base")  # the tiny model stands in for the GGUF conversion
        fetched = run_checked(repo, env, sys.executable, "-m", "okapi.released", "fetch", "--lang", "vi")
        run_checked(repo, env, "git", "add", "-A")
        run_checked(repo, env, "git", "commit", "-qm", "released data for vi")
        yield {
            "repo": repo,
            "env": env,
            "srv": srv_root,
            "server": server,
            "teacher": teacher,
            "fetch_stdout": fetched.stdout,
        }


def test_fetch_imports_every_file_with_its_url_recorded(released_project):
    repo, srv = released_project["repo"], released_project["srv"]
    assert "imported 8 file(s)" in released_project["fetch_stdout"]
    for rel in release_files("vi"):
        served = srv / ("datasets/" + rel if not rel.startswith("okapi-eval/") else rel)
        assert (repo / "data" / "released" / rel).read_bytes() == served.read_bytes()
        stage = yaml.safe_load((repo / "data" / "released" / f"{rel}.dvc").read_text())
        assert stage["deps"][0]["path"].endswith(served.relative_to(srv).as_posix())
        assert stage["deps"][0]["path"].startswith("http://127.0.0.1:")
    # A second fetch finds the .dvc files and imports nothing twice.
    again = run_checked(repo, released_project["env"], sys.executable, "-m", "okapi.released", "fetch", "--lang", "vi")
    assert "imported 0 file(s), 8 already present" in again.stdout


def test_repro_from_released_data_sends_no_teacher_request(released_project):
    repo, env = released_project["repo"], released_project["env"]
    run_checked(repo, env, "dvc", "repro", "ppo@vi", "evaluate@vi")
    assert released_project["teacher"].requests == []

    pairs = read_rows(repo / "data" / "rankings" / "vi" / "pairs.parquet", schemas.PAIRS)
    assert [p["id"] for p in pairs] == [f"okapi-ranking-vi-{i}" for i in range(4)]
    sft = read_rows(repo / "data" / "translated" / "vi" / "sft.parquet", schemas.PROMPTS)
    assert sft[-1]["output"] == "4"  # the number in the release, cast to text
    ppo = read_rows(repo / "data" / "translated" / "vi" / "ppo.parquet", schemas.PROMPTS)
    assert all(r["instruction"].startswith("RL ") for r in ppo)
    assert sorted(p.name for p in (repo / "data" / "eval" / "vi").iterdir()) == [
        "arc_test.parquet",
        "arc_train.parquet",
        "hellaswag_val.parquet",
        "mmlu_dev.parquet",
        "mmlu_test.parquet",
    ]
    assert read_rows(repo / "data" / "generated" / "instructions.parquet", schemas.INSTRUCTIONS) == []
    assert (repo / "models" / "vi" / "ppo" / "config.json").is_file()
    results = json.loads((repo / "metrics" / "eval" / "vi.json").read_text())
    for model in ("base", "sft", "rlhf"):  # scored on the released ARC / HellaSwag / MMLU files
        assert sorted(results[model]) == ["arc", "hellaswag", "mmlu"]
    status = run_checked(repo, env, "dvc", "status", "ppo@vi", "evaluate@vi")
    assert "up to date" in status.stdout


def test_fetch_from_an_unreachable_server_fails_with_one_message_and_keeps_what_is_there(released_project, tmp_path):
    repo, env = released_project["repo"], released_project["env"]
    before = sorted(p.relative_to(repo).as_posix() for p in (repo / "data" / "released").rglob("*"))
    proc = run_checked(
        repo,
        env,
        sys.executable,
        "-m",
        "okapi.released",
        "fetch",
        "--lang",
        "es",
        "--what",
        "alpaca",
        "--base-url",
        "http://127.0.0.1:9/datasets",
        check=False,
    )
    assert proc.returncode == 2
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "could not import 1 release file(s)" in errors[0]
    assert "http://127.0.0.1:9/datasets/multilingual-alpaca-52k/es.json" in errors[0]
    after = sorted(p.relative_to(repo).as_posix() for p in (repo / "data" / "released").rglob("*"))
    assert [p for p in after if "es.json" in p] == []
    assert [p for p in after if p not in before and "multilingual-alpaca-52k" not in p] == []


def test_fetch_undoes_the_import_of_a_git_lfs_pointer(released_project):
    repo, env, srv = released_project["repo"], released_project["env"], released_project["srv"]
    pointer = srv / "datasets" / "multilingual-ranking-data-42k" / "es.json"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:6b7d\nsize 151259802\n")
    base = released_project["server"].base_url
    args = ["-m", "okapi.released", "fetch", "--lang", "es", "--what", "ranking", "--base-url", f"{base}/datasets"]
    proc = run_checked(repo, env, sys.executable, *args, check=False)
    assert proc.returncode == 2
    assert "served a Git LFS pointer, not the data" in proc.stderr
    target = repo / "data" / "released" / "multilingual-ranking-data-42k" / "es.json"
    assert not target.exists() and not Path(f"{target}.dvc").exists()


def test_released_stage_names_the_file_and_field_of_a_bad_record(released_project, tmp_path):
    src = release_tree(tmp_path / "released")
    write(src / "multilingual-rl-tuning-64k" / "vi.json", [{"instruction": "a", "output": "b", "score": 3}])
    params = tmp_path / "params.yaml"
    params.write_text((released_project["repo"] / "params.yaml").read_text())
    out = tmp_path / "out"
    proc = run_checked(
        tmp_path,
        released_project["env"],
        sys.executable,
        "-m",
        "stages.released",
        "--params",
        str(params),
        "--lang",
        "vi",
        "--src",
        str(src),
        "--out",
        str(out),
        "--metrics",
        str(tmp_path / "m.json"),
        check=False,
    )
    assert proc.returncode == 2
    assert "multilingual-rl-tuning-64k/vi.json, record 1: unexpected field 'score'" in proc.stderr
    assert not out.exists() and not (tmp_path / "m.json").exists()


def test_push_and_pull_bring_the_released_files_back_without_their_source(released_project, tmp_path):
    """The remote keeps a copy of every imported file: a pull works when the release's server is gone."""
    repo, env = released_project["repo"], released_project["env"]
    files = [repo / "data" / "released" / rel for rel in release_files("vi")]
    before = {f: f.read_bytes() for f in files}
    run_checked(repo, env, "dvc", "remote", "add", "-f", "-d", "store", str(tmp_path / "remote"))
    run_checked(repo, env, "dvc", "push")
    released_project["server"].shutdown()  # the release's URLs are unreachable from here on
    shutil.rmtree(repo / ".dvc" / "cache")
    for f in files:
        f.unlink()
    run_checked(repo, env, "dvc", "pull", *[str(f.relative_to(repo)) + ".dvc" for f in files])
    assert {f: f.read_bytes() for f in files} == before
