"""DVC's own overhead with the paper profile's 26 languages: `dvc status`, a no-op `dvc repro`, `dvc push`.

In a temporary copy of the project (git-tracked files only) with params.yaml's ``languages`` set to the paper
profile's 26, every stage output is replaced by a small placeholder and committed (``dvc commit -f``), so the
pipeline is up to date without running it; the teacher caches are real SQLite caches of ``--answers`` answers
each. Then it times ``dvc status``, a no-op ``dvc repro`` (each ``--runs`` times) and a ``dvc push`` of every
output, the 53 teacher caches included, to a local remote. Placeholders keep the hashing cheap, as DVC's state
database does for a real, unchanged workspace (it rehashes only files whose size or mtime changed).

    python benchmarks/dvc_languages.py [--runs 3] [--answers 200] [--keep DIR]

Each time is printed with the command's CPU seconds beside it: on a shared machine the wall time moves with the
other users' load, the CPU time much less. `benchmarks/dvc_profile.py` splits one command's CPU into DVC's parts.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent


def sh(cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-3000:]}")
    return proc


def timed(cwd: Path, *cmd: str) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system of the command; DVC's detached analytics daemon not included), stdout."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = sh(cwd, *cmd)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), out.stdout


def make_project(work: Path, answers: int) -> int:
    files = sh(ROOT, "git", "ls-files").stdout.splitlines()
    for f in files:
        src = ROOT / f
        if src.is_file():
            (work / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, work / f)
    paper = yaml.safe_load((ROOT / "configs/paper/params.yaml").read_text())
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["languages"] = paper["languages"]
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (work / "dvc.lock").unlink(missing_ok=True)
    sh(work, "git", "init", "-q")
    sh(work, "git", "config", "user.email", "bench@example.invalid")
    sh(work, "git", "config", "user.name", "bench")
    remote = work.parent / "remote"
    sh(work, "dvc", "remote", "add", "-f", "-d", "local", str(remote))

    from dvc.repo import Repo

    from okapi.cache import Reply, ResponseCache

    caches = 0
    from dvc.dependency.param import ParamsDependency

    with Repo(str(work)) as repo:
        outs = [out for stage in repo.index.stages for out in stage.outs]
        # Deps inside another stage's output folder (e.g. data/translated/<lang>/sft.parquet) need placeholders too.
        outs += [d for stage in repo.index.stages for d in stage.deps if not isinstance(d, ParamsDependency)]
    for out in outs:
        path = Path(out.fs_path)
        if path.exists():
            continue
        if path.parent.is_dir() and (path.parent / "placeholder.txt").exists():
            (path.parent / "placeholder.txt").unlink()
        if "teacher_cache" in path.parts:
            cache = ResponseCache(path)
            for i in range(answers):
                cache.put(f"{path.name}-{i}", Reply(f"answer {i} " * 40, 300, 400))
            cache.close()
            caches += 1
        elif path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"placeholder {path.name}\n")
        else:
            path.mkdir(parents=True, exist_ok=True)
            (path / "placeholder.txt").write_text(f"placeholder {path}\n")
    sh(work, "dvc", "commit", "-f", "-q")
    sh(work, "git", "add", "-A")
    sh(work, "git", "commit", "-qm", "26 languages, placeholders committed")
    return caches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--answers", type=int, default=200, help="answers per teacher cache")
    ap.add_argument("--keep", type=Path, help="build the project here and keep it (for profiling)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="okapi-dvc26-") as tmp:
        work = (args.keep or Path(tmp)) / "project"
        work.mkdir(parents=True)
        t0 = time.perf_counter()
        caches = make_project(work, args.answers)
        setup = time.perf_counter() - t0
        stages = len(sh(work, "dvc", "stage", "list").stdout.splitlines())
        status, repro, status_cpu, repro_cpu = [], [], [], []
        for _ in range(args.runs):
            s, c, out = timed(work, "dvc", "status")
            assert "up to date" in out, out
            status.append(s)
            status_cpu.append(c)
            r, c, out = timed(work, "dvc", "repro")
            assert "up to date" in out or "didn't change" in out, out
            repro.append(r)
            repro_cpu.append(c)
        push, _, out = timed(work, "dvc", "push")
        pushed = out.strip().splitlines()[-1] if out.strip() else ""
        cache_mb = sum(p.stat().st_size for p in (work / "data/teacher_cache").glob("*.sqlite")) / 2**20
    print(
        f"stages={stages} teacher caches={caches} ({cache_mb:.1f} MB) setup={setup:.1f} s cpus={os.cpu_count()} "
        f"load={os.getloadavg()[0]:.2f}"
    )

    def secs(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    print(f"dvc status      : {secs(status)} s (CPU {secs(status_cpu)} s)")
    print(f"dvc repro (no-op): {secs(repro)} s (CPU {secs(repro_cpu)} s)")
    print(f"dvc push        : {push:.2f} s ({pushed})")
    ok = max(min(status), min(repro)) <= 5.0
    print("goal (status and no-op repro <= 5 s, best of runs):", "met" if ok else "NOT met")


if __name__ == "__main__":
    main()
