"""A newcomer's first run, timed: fresh clone of HEAD, `make repro` (set-up + whole embedded pipeline), per stage.

    python benchmarks/first_run.py                 # cold: new venv, pip and uv caches off
    python benchmarks/first_run.py --reuse-venv    # pipeline only: the clone borrows this checkout's .venv
    python benchmarks/first_run.py --runs 3 --json out.json

Each run clones the repository's HEAD into a temporary folder (no DVC cache, no teacher cache, no outputs) and runs
`make repro` there with a timestamp on every line of its output. Set-up is the time until DVC starts its first
stage; each stage's time runs from its "Running stage" line to the last line okapi.repro prefixed with its name
(it runs the languages' stages side by side), or for lines prefixed with the language (okapi.repro until this
turn), to the next stage of that language; stages without a prefix run one at a time. It then
says whether the run reproduced the committed metrics (every metrics/**/*.json, numbers compared exactly) -- the
clone's own committed files are the reference, so the comparison is meaningful only when HEAD's dvc.lock and
metrics come from the same code.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE_LINE = re.compile(r"^(?:\[([^\]]+)\] )?Running stage '([^']+)'")


def _metrics(folder: Path) -> dict[str, object]:
    return {
        str(p.relative_to(folder)): json.loads(p.read_text())
        for p in sorted((folder / "metrics").rglob("*.json"))
        if "/live/" not in str(p)
    }


def _largest_difference(reference: object, produced: object, where: str = "") -> tuple[float, str]:
    """The largest relative difference between two metrics trees, and where it is (0.0 when equal)."""
    if isinstance(reference, dict) and isinstance(produced, dict):
        pairs = [(reference[k], produced.get(k), f"{where}/{k}") for k in reference]
    elif isinstance(reference, list) and isinstance(produced, list) and len(reference) == len(produced):
        pairs = [(a, b, f"{where}[{i}]") for i, (a, b) in enumerate(zip(reference, produced, strict=True))]
    elif isinstance(reference, (int, float)) and isinstance(produced, (int, float)) and reference != produced:
        return abs(reference - produced) / max(abs(reference), abs(produced)), where
    else:
        return (0.0, where) if reference == produced else (float("inf"), where)
    return max((_largest_difference(a, b, w) for a, b, w in pairs), default=(0.0, where))


def one_run(reuse_venv: bool, keep: bool) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="okapi-first-run-"))
    clone = work / "okapi"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    reference = _metrics(clone)
    # Caches off, as on a newcomer's machine: pip's, uv's and ours (the teacher's 8-bit GGUF, okapi.gguf_convert).
    env = {**os.environ, "PIP_NO_CACHE_DIR": "1", "UV_NO_CACHE": "1", "OKAPI_CACHE_DIR": str(work / "okapi-cache")}
    if reuse_venv:
        (clone / ".venv").symlink_to(ROOT / ".venv")
    t0 = time.monotonic()
    stages: list[tuple[str, str, float]] = []  # (column, stage, start): okapi.repro prefixes a column's lines
    last_line: dict[str, float] = {}
    log_lines: list[str] = []
    # Borrowing a venv skips set-up: make would rebuild it (the clone's requirements.txt is newer than the venv).
    cmd = ["sh", "-c", "make remote && .venv/bin/python -m okapi.repro"] if reuse_venv else ["make", "repro"]
    if reuse_venv:  # as the Makefile does: the stages' `python` is the venv's
        env.update(
            PATH=f"{clone / '.venv' / 'bin'}{os.pathsep}{env['PATH']}", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"
        )
    proc = subprocess.Popen(cmd, cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.monotonic() - t0
        log_lines.append(f"{now:8.1f} {line.rstrip()}")
        column = line[1 : line.index("] ")] if line.startswith("[") and "] " in line else ""
        last_line[column] = now
        m = STAGE_LINE.search(line)
        if m:
            stages.append((m.group(1) or "", m.group(2), now))
            print(f"{now:7.1f} s  {m.group(2)}", flush=True)
    rc = proc.wait()
    total = time.monotonic() - t0
    (work / "make_repro.log").write_text("\n".join(log_lines) + "\n")
    # A stage runs until the next stage of its column starts; a column's last stage until the column's last line
    # (stages outside any column run one at a time: until the next stage starts, the last one until the end).
    per_stage = {}
    for i, (column, name, start) in enumerate(stages):
        later = [s for c, _, s in stages[i + 1 :] if c == column or not column]
        end = later[0] if later else (last_line[column] if column else total)
        per_stage[name] = round(end - start, 1)

    # okapi.repro prefixes a stage's lines with the stage (`[sft@vi] ...`; earlier with its language): a language's
    # column runs from its first stage's start to the last line of any of its stages.
    def lang(prefix: str) -> str:
        return prefix.rsplit("@", 1)[-1]

    columns = sorted({lang(c) for c, _, _ in stages if c})
    column_s = {
        c: round(
            max(t for p, t in last_line.items() if p and lang(p) == c)
            - min(s for cc, _, s in stages if cc and lang(cc) == c),
            1,
        )
        for c in columns
    }
    produced = _metrics(clone) if rc == 0 else {}
    differing = sorted(k for k in set(reference) | set(produced) if reference.get(k) != produced.get(k))
    result = {
        "returncode": rc,
        "total_s": round(total, 1),
        "setup_s": round(stages[0][2], 1) if stages else None,
        "pipeline_s": round(total - stages[0][2], 1) if stages else None,
        "stages_s": per_stage,
        "columns_s": column_s,  # wall time of each language's column (they run side by side)
        "metrics_files": len(produced),
        "metrics_differing": differing,
        # How far apart: float noise of multi-threaded training kernels shows as ~1e-7 relative on losses.
        "largest_relative_difference": _largest_difference({k: reference.get(k) for k in differing}, produced),
        # Equal digests across runs: the runs reproduced each other (whatever HEAD's committed metrics are).
        "metrics_digest": hashlib.sha256(json.dumps(produced, sort_keys=True).encode()).hexdigest()[:16],
        "log": str(work / "make_repro.log"),
    }
    if not keep:
        shutil.rmtree(clone, ignore_errors=True)
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--reuse-venv", action="store_true", help="borrow this checkout's .venv (pipeline time only)")
    ap.add_argument("--keep", action="store_true", help="keep the clone (its outputs) after the run")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args()
    results = []
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs}", flush=True)
        res = one_run(args.reuse_venv, args.keep)
        results.append(res)
        print(json.dumps(res, indent=1), flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0 if all(r["returncode"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
