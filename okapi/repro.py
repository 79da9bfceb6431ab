"""`dvc repro` with the languages' columns side by side: ``python -m okapi.repro [--jobs N]`` (what `make repro` runs).

DVC runs one stage at a time. The languages' columns of stages (translate@L ... evaluate@L) depend on each other only
through the shared stages before them (base, generate) and the report after them, so this runs:

1. the shared stages that no language's stage feeds, side by side where they share nothing (base | generate);
2. one ``dvc --wait-for-lock repro --single-item <its stages in order>`` per language, ``--jobs`` at a time (DVC
   locks the repository only between stages, so the columns' commands run at the same time; its per-stage
   read/write locks keep them apart, and each writes its own entries of dvc.lock);
3. ``dvc repro`` of everything, which runs what is left (the report) and checks the rest.

The result is the pipeline `dvc repro` alone would build (the same stages, commands and params; dvc.lock is the
same apart from the order of its entries). Each column's training stages get ``cores / jobs`` threads
(OMP_NUM_THREADS), unless the environment sets them: on our 2-core machines two one-thread columns finished SFT
1.14-1.23x sooner than the same stages one after the other with two threads (README, Performance).

With one job or one language this is plain ``dvc repro``. On GPU machines (``launcher: accelerate launch``) run
``dvc repro`` itself: the columns would share the GPUs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def plan(root: str | os.PathLike[str] = ".") -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(shared stages to run first, {language: its stages}) from the pipeline's graph, each list in run order.

    A language's stages are the foreach stages addressed ``<stage>@<language>``; the shared stages first are those
    with no language stage upstream of them, grouped by what they depend on (stages in different groups share
    nothing, e.g. base and generate) and keyed by each group's first stage.
    """
    import networkx as nx
    from dvc.repo import Repo

    with Repo(os.fspath(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        columns: dict[str, list[str]] = {}
        first: list = []
        for stage in nx.topological_sort(graph.reverse(copy=False)):
            name = stage.name
            if "@" in name:
                columns.setdefault(name.rsplit("@", 1)[1], []).append(name)
            elif not any("@" in s.name for s in nx.descendants(graph, stage)):
                first.append(stage)
        part_of = {st: i for i, part in enumerate(nx.weakly_connected_components(graph.subgraph(first))) for st in part}
        groups: dict[int, list[str]] = {}
        for stage in first:  # in run order, so each group's stages and the groups come out in run order
            groups.setdefault(part_of[stage], []).append(stage.name)
    return {names[0]: names for names in groups.values()}, columns


def _dvc(
    args: Sequence[str], root: str | os.PathLike[str], *, env: dict[str, str] | None = None, prefix: str = ""
) -> int:
    """Run one dvc command; with a prefix, its output lines are relayed with it (columns run side by side)."""
    cmd = [sys.executable, "-m", "dvc", *args]
    if not prefix:
        return subprocess.run(cmd, cwd=root, env=env, check=False).returncode
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        # Progress bars redraw with carriage returns: keep the last state of each line only.
        text = line.rstrip("\n").rsplit("\r", 1)[-1]
        if text.strip():
            with _print_lock:
                print(f"[{prefix}] {text}", flush=True)
    return proc.wait()


_print_lock = threading.Lock()


def column_env(jobs: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of one column: its share of the cores for torch's threads, unless already set."""
    env = dict(os.environ if base is None else base)
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, threads)
    return env


def _side_by_side(groups: dict[str, list[str]], jobs: int, root: str | os.PathLike[str]) -> list[str]:
    """Run each group's stages in order, ``jobs`` groups at a time; return the groups that failed."""
    env = column_env(jobs)

    def one(name: str) -> tuple[str, int]:
        # --single-item: the group's stages in order and nothing upstream, which DVC would lock for writing while
        # checking it (a shared stage would then be busy for the other groups).
        args = ["--wait-for-lock", "repro", "--single-item", *groups[name]]
        return name, _dvc(args, root, env=env, prefix=name)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return [name for name, rc in pool.map(one, groups) if rc != 0]


def run(jobs: int, root: str | os.PathLike[str] = ".") -> int:
    first, columns = plan(root)
    if jobs <= 1 or len(columns) <= 1:
        return _dvc(["repro"], root)
    failed = _side_by_side(first, min(jobs, len(first)), root) if first else []
    if failed:
        print(f"okapi.repro: {', '.join(failed)} failed (output above); a rerun starts there", file=sys.stderr)
        return 1
    jobs = min(jobs, len(columns))
    print(
        f"okapi.repro: {len(columns)} language columns, {jobs} at a time ({column_env(jobs)['OMP_NUM_THREADS']} thread(s) each)"
    )
    failed = _side_by_side(columns, jobs, root)
    if failed:
        print(
            f"okapi.repro: the stages of {', '.join(failed)} failed (their output above); the other columns are "
            "done and recorded, and a rerun starts where they stopped",
            file=sys.stderr,
        )
        return 1
    return _dvc(["repro"], root)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="language columns run at the same time (default: the number of CPU cores; 1 = plain dvc repro)",
    )
    args = ap.parse_args(argv)
    if args.jobs < 1:
        print(f"okapi.repro: --jobs must be an integer >= 1, not {args.jobs}", file=sys.stderr)
        return 2
    if not Path("dvc.yaml").is_file():
        print("okapi.repro: run it in the repository root (no dvc.yaml here)", file=sys.stderr)
        return 2
    return run(args.jobs)


if __name__ == "__main__":
    sys.exit(main())
