"""`dvc push` / `dvc pull` through a real S3 server (moto) on loopback, with a pipeline that calls the teacher.

The stage runs the project's teacher client against the fake OpenAI server and keeps its response cache as a
persisted DVC output, as dvc.yaml does; after a push, a wiped cache and a pull, nothing reruns and no request is
sent again. Credentials are fake and reach DVC through the environment only, never .dvc/config.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from openai_server import FakeOpenAIServer

from okapi.cache import read_cache

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BUCKET = "okapi-test"
KEY_ID = "AKIAFAKEOKAPITEST"
SECRET = "fake-secret-never-in-config"
OUTS = ["data/instructions.parquet", "data/teacher_cache/gen.sqlite"]

STAGE = textwrap.dedent(
    """
    import argparse, os
    from okapi.config import from_dict
    from okapi.io import write_parquet
    from okapi.schemas import INSTRUCTIONS
    from okapi.teacher import ChatRequest, Teacher, TeacherConfig

    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--cache")
    args = ap.parse_args()
    url = os.environ["OKAPI_TEST_TEACHER_URL"]
    cfg = from_dict(TeacherConfig, {"backend": "openai", "base_url": url, "model": "m", "timeout_s": 5.0}, "teacher")
    teacher = Teacher(cfg, url, args.cache)
    reqs = [ChatRequest(key=f"r{i}", messages=[{"role": "user", "content": f"task {i}"}]) for i in range(4)]
    outs = teacher.run(reqs, lambda text: text)
    teacher.close()
    rows = [
        {"id": o.key, "source": "generated", "instruction": o.value, "input": "", "output": "",
         "max_similarity": None, "avg_similarity": None, "most_similar_instructions": []}
        for o in outs
    ]
    write_parquet(rows, args.out, INSTRUCTIONS)
    """
)

DVC_YAML = textwrap.dedent(
    """
    stages:
      gen:
        cmd: python stage.py --out data/instructions.parquet --cache data/teacher_cache/gen.sqlite
        deps:
          - stage.py
        outs:
          - data/instructions.parquet
          - data/teacher_cache/gen.sqlite:
              persist: true
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3 server as a subprocess, with one empty bucket."""
    port = _free_port()
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start on port {port}") from None
                time.sleep(0.1)
        import boto3

        boto3.client(
            "s3", endpoint_url=url, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name="us-east-1"
        ).create_bucket(Bucket=BUCKET)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def teacher_server():
    with FakeOpenAIServer(lambda messages: "Write about " + messages[-1]["content"]) as srv:
        yield srv


def _env(tmp: Path, teacher_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=str(ROOT),
        AWS_ACCESS_KEY_ID=KEY_ID,
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_DEFAULT_REGION="us-east-1",
        DVC_NO_ANALYTICS="1",
        DVC_SITE_CACHE_DIR=str(tmp / "site_cache"),  # keep DVC's index of this project out of /var/tmp
        OKAPI_TEST_TEACHER_URL=teacher_url,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    # Only the fake keys above: no profile or session token of whoever runs the tests.
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        env.pop(name, None)
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp / "no-aws-credentials")
    env["AWS_CONFIG_FILE"] = str(tmp / "no-aws-config")
    return env


class Project:
    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        self.env = env

    def run(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "dvc", *args[1:]] if args[0] == "dvc" else list(args)
        proc = subprocess.run(cmd, cwd=self.path, env={**self.env, **env}, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def snapshot(self) -> dict[str, bytes]:
        return {p: (self.path / p).read_bytes() for p in OUTS}


@pytest.fixture(scope="module")
def project(tmp_path_factory, s3_endpoint, teacher_server):
    """A git+DVC project whose default remote is the bucket; `dvc repro` and `dvc push` already done."""
    path = tmp_path_factory.mktemp("remote_project")
    proj = Project(path / "repo", _env(path, teacher_server.base_url))
    proj.path.mkdir()
    (proj.path / "stage.py").write_text(STAGE)
    (proj.path / "dvc.yaml").write_text(DVC_YAML)
    proj.run("git", "init", "-q")
    proj.run("dvc", "init", "-q")
    proj.run("dvc", "remote", "add", "-d", "store", f"s3://{BUCKET}/dvcstore")
    proj.run("dvc", "remote", "modify", "store", "endpointurl", s3_endpoint)
    proj.run("dvc", "repro")
    proj.run("git", "add", "-A")
    proj.run("git", "commit", "-qm", "pipeline")
    proj.run("dvc", "push")
    return proj


def test_credentials_stay_out_of_the_repository(project):
    config = (project.path / ".dvc" / "config").read_text()
    assert "endpointurl" in config
    assert KEY_ID not in config and SECRET not in config
    assert not (project.path / ".dvc" / "config.local").exists()


def test_push_uploads_every_output_to_the_bucket(project, s3_endpoint):
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=s3_endpoint, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, region_name="us-east-1"
    )
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="dvcstore/")["Contents"]]
    assert len(keys) == len(OUTS) and all(k.startswith("dvcstore/files/md5/") for k in keys)


def test_pull_after_wiping_cache_restores_identical_outputs_and_nothing_reruns(project, teacher_server):
    sent = len(teacher_server.requests)
    assert sent == 4
    before = project.snapshot()
    assert len(read_cache(project.path / "data/teacher_cache/gen.sqlite")) == 4

    shutil.rmtree(project.path / ".dvc" / "cache")
    for p in OUTS:
        (project.path / p).unlink()
    project.run("dvc", "pull")

    assert project.snapshot() == before
    status = project.run("dvc", "status", "--json")
    assert status.stdout.strip() == "{}", status.stdout
    repro = project.run("dvc", "repro")
    assert "up to date" in repro.stdout, repro.stdout
    assert len(teacher_server.requests) == sent  # no teacher call after the pull
    assert project.snapshot() == before


def test_pull_from_an_unreachable_remote_fails_and_leaves_the_workspace_alone(project):
    before = project.snapshot()
    project.run("dvc", "remote", "add", "dead", f"s3://{BUCKET}/dvcstore")
    project.run("dvc", "remote", "modify", "dead", "endpointurl", f"http://127.0.0.1:{_free_port()}")
    # With the cache gone the pull has to reach the remote; the workspace copies are the only ones left.
    shutil.rmtree(project.path / ".dvc" / "cache", ignore_errors=True)
    # botocore's retries on a refused connection only cost time here.
    proc = project.run("dvc", "pull", "-r", "dead", check=False, AWS_MAX_ATTEMPTS="1")
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "failed to pull" in proc.stderr, proc.stderr
    assert project.snapshot() == before
