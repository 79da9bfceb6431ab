"""`dvc repro` with the languages' columns side by side: ``python -m okapi.repro [--jobs N]`` (what `make repro` runs).

DVC runs one stage at a time. The languages' columns of stages (translate@L ... evaluate@L) depend on each other only
through the shared stages before them (base, generate) and the report after them, so this runs:

1. the shared stages that no language's stage feeds, side by side where they share nothing (base | generate);
2. the languages' stages, ``--jobs`` at a time, each as ``dvc --wait-for-lock repro --single-item <stage>`` once
   the stages of its column it depends on are done (DVC locks the repository only between stages, so these
   commands run at the same time; its per-stage read/write locks keep them apart, and each writes its own entry
   of dvc.lock). Of the stages ready to run, the one after which all of them are expected to end soonest goes
   first: each candidate is tried with the rest following the longest chain of expected work (each stage's
   measured time, STAGE_SECONDS, scaled by its column's size), so a column's `sft_full` starts where it keeps the
   cores busy to the end rather than after its PPO, with its evaluation waiting for it on one core;
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
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def plan(root: str | os.PathLike[str] = ".") -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(shared stages to run first, {language: its stages}) from the pipeline's graph, each list in run order.

    A language's stages are the foreach stages addressed ``<stage>@<language>``; the shared stages first are those
    with no language stage upstream of them, grouped by what they depend on (stages in different groups share
    nothing, e.g. base and generate) and keyed by each group's first stage.
    """
    first, columns, _ = _plan(root)
    return first, columns


def _plan(
    root: str | os.PathLike[str],
) -> tuple[dict[str, list[str]], dict[str, list[str]], dict[str, set[str]]]:
    """plan() and, for each language stage, the stages of its column it depends on."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(os.fspath(root)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        columns: dict[str, list[str]] = {}
        needs: dict[str, set[str]] = {}
        first: list = []
        for stage in nx.topological_sort(graph.reverse(copy=False)):
            name = stage.name
            if "@" in name:
                lang = name.rsplit("@", 1)[1]
                columns.setdefault(lang, []).append(name)
                needs[name] = {s.name for s in graph.successors(stage) if s.name.endswith(f"@{lang}")}
            elif not any("@" in s.name for s in nx.descendants(graph, stage)):
                first.append(stage)
        part_of = {st: i for i, part in enumerate(nx.weakly_connected_components(graph.subgraph(first))) for st in part}
        groups: dict[int, list[str]] = {}
        for stage in first:  # in run order, so each group's stages and the groups come out in run order
            groups.setdefault(part_of[stage], []).append(stage.name)
    return {names[0]: names for names in groups.values()}, columns, needs


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


# What each language stage takes on the embedded default: the mean of both languages in first runs 18-21, one
# thread, two stages side by side (README, Performance). A stage not listed counts 60 s. The training stages and the
# teacher's scale with the column's translated tokens (column_sizes); evaluate and released do not (every language
# has the same benchmark records). The values only guide the order of ready stages.
STAGE_SECONDS = {
    "released": 2,
    "translate": 127,
    "sft": 63,
    "sft_full": 114,
    "sample": 38,
    "rank": 28,
    "rm": 115,
    "ppo": 150,
    "evaluate": 56,
}
UNSCALED = frozenset({"released", "evaluate"})


def _critical_paths(needs: dict[str, set[str]], seconds: dict[str, float] | None = None) -> dict[str, float]:
    """For each stage, its expected seconds plus those of the longest chain of stages waiting for it (transitively):
    how long its column takes at least from its start (``seconds`` by stage name before the ``@``)."""
    table = STAGE_SECONDS if seconds is None else seconds
    return _paths(needs, {s: table.get(s.rsplit("@", 1)[0], 60) for s in needs})


def _paths(needs: dict[str, set[str]], expected: dict[str, float]) -> dict[str, float]:
    """_critical_paths with each stage's own expected seconds."""
    after: dict[str, set[str]] = {s: set() for s in needs}
    for stage, deps in needs.items():
        for dep in deps:
            after[dep].add(stage)
    memo: dict[str, float] = {}

    def path(stage: str) -> float:
        if stage not in memo:
            memo[stage] = expected[stage] + max((path(n) for n in after[stage]), default=0)
        return memo[stage]

    return {s: path(s) for s in needs}


def expected_seconds(needs: dict[str, set[str]], size: dict[str, float]) -> dict[str, float]:
    """Each stage's expected seconds: STAGE_SECONDS, times its column's size (column_sizes) unless UNSCALED."""
    out = {}
    for stage in needs:
        name, lang = stage.rsplit("@", 1)
        own = STAGE_SECONDS.get(name, 60)
        out[stage] = own if name in UNSCALED else own * size.get(lang, 1.0)
    return out


def _finish(
    needs: dict[str, set[str]],
    expected: dict[str, float],
    ahead: dict[str, float],
    now: float,
    running: dict[str, float],
    done: set[str],
    pending: set[str],
    jobs: int,
) -> float:
    """When everything would be done, by the expected seconds, if from ``now`` (with ``running``: stage -> its
    expected end) each free worker took the ready stage with the longest chain ahead (``ahead``)."""
    running, done, pending = dict(running), set(done), set(pending)
    while pending or running:
        ready = sorted((s for s in pending if needs[s] <= done), key=lambda s: (-ahead[s], s))
        for stage in ready[: max(0, jobs - len(running))]:
            pending.discard(stage)
            running[stage] = now + expected[stage]
        if not running:  # nothing can start: stages waiting on a stage outside this plan
            return float("inf")
        stage = min(running, key=running.__getitem__)
        now = running.pop(stage)
        done.add(stage)
    return now


def pick(
    ready: Sequence[str],
    needs: dict[str, set[str]],
    expected: dict[str, float],
    now: float,
    running: dict[str, float],
    done: set[str],
    pending: set[str],
    jobs: int,
    place: dict[str, tuple[int, int]] | None = None,
) -> str:
    """The ready stage to start now: the one after which the expected end of all is earliest, when the rest
    follows the longest chain first (one step of look-ahead); on a tie the one with the longest chain ahead of it,
    then its place (``place``: column, position). The longest chain alone leaves a core idle at the end when a
    column's last stage waits for a side stage started late (first runs 18-21: 25-35 s; README, Performance)."""
    ahead = _paths(needs, expected)
    order = place or {}

    def cost(stage: str) -> tuple[float, float, tuple[int, int]]:
        start = {**running, stage: now + expected[stage]}
        end = _finish(needs, expected, ahead, now, start, done, pending - {stage}, jobs)
        return round(end, 6), -ahead[stage], order.get(stage, (0, 0))

    return min(ready, key=cost)


def column_sizes(langs: Sequence[str], root: str | os.PathLike[str] = ".") -> dict[str, float]:
    """Each column's expected work relative to the others': its translated tokens (the teacher's completion tokens
    in ``metrics/translate/<L>.json``, cached answers included) over the mean of the columns that have them; 1.0
    for a column without them yet. The committed metrics give it before ``translate@L`` runs, its own afterwards.
    The columns' training stages take time in proportion (runs 15-17: es had 1.34x vi's tokens, and its SFT, RM
    and PPO took 1.2-1.3x as long)."""
    import json

    tokens: dict[str, float] = {}
    for lang in langs:
        try:
            teacher = json.loads((Path(root) / "metrics" / "translate" / f"{lang}.json").read_text())["teacher"]
            n = float(teacher.get("completion_tokens", 0)) + float(teacher.get("cached_completion_tokens", 0))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if n > 0:
            tokens[lang] = n
    mean = sum(tokens.values()) / len(tokens) if tokens else 0.0
    return {lang: tokens[lang] / mean if lang in tokens else 1.0 for lang in langs}


def _stage_by_stage(
    columns: dict[str, list[str]], needs: dict[str, set[str]], jobs: int, root: str | os.PathLike[str]
) -> list[str]:
    """Run the columns' stages, ``jobs`` at a time, each once the stages it needs are done; of those ready, the one
    after which everything is expected to end soonest (``pick``, from expected_seconds with each column's size,
    column_sizes, read again whenever a stage is taken, and how long the running stages have run). A failed stage
    stops what is left of its column, the others go on. Returns the columns that failed."""
    env = column_env(jobs)
    lang_of = {stage: lang for lang, stages in columns.items() for stage in stages}
    place = {stage: (c, i) for c, stages in enumerate(columns.values()) for i, stage in enumerate(stages)}
    pending = set(lang_of)
    done: set[str] = set()
    failed: list[str] = []
    started: dict[str, float] = {}  # running stage -> when it started (time.monotonic)
    cond = threading.Condition()

    def take() -> str | None:
        with cond:
            while True:
                ready = [s for s in pending if needs[s] <= done and lang_of[s] not in failed]
                if ready:
                    expected = expected_seconds(needs, column_sizes(list(columns), root))
                    now = time.monotonic()
                    running = {s: max(now, t + expected[s]) for s, t in started.items()}
                    live = {s for s in pending if lang_of[s] not in failed}
                    stage = pick(ready, needs, expected, now, running, done, live, jobs, place)
                    pending.discard(stage)
                    started[stage] = now
                    return stage
                if not started:
                    return None
                cond.wait()

    def worker() -> None:
        while (stage := take()) is not None:
            rc = _dvc(["--wait-for-lock", "repro", "--single-item", stage], root, env=env, prefix=stage)
            with cond:
                started.pop(stage)
                if rc == 0:
                    done.add(stage)
                elif lang_of[stage] not in failed:
                    failed.append(lang_of[stage])
                cond.notify_all()

    threads = [threading.Thread(target=worker) for _ in range(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failed


def run(jobs: int, root: str | os.PathLike[str] = ".") -> int:
    first, columns, needs = _plan(root)
    if jobs <= 1 or len(columns) <= 1:
        return _dvc(["repro"], root)
    failed = _side_by_side(first, min(jobs, len(first)), root) if first else []
    if failed:
        print(f"okapi.repro: {', '.join(failed)} failed (output above); a rerun starts there", file=sys.stderr)
        return 1
    jobs = min(jobs, len(columns))
    print(
        f"okapi.repro: {len(columns)} language columns, {jobs} stages at a time "
        f"({column_env(jobs)['OMP_NUM_THREADS']} thread(s) each)"
    )
    failed = _stage_by_stage(columns, needs, jobs, root)
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
        help="language stages run at the same time (default: the number of CPU cores; 1 = plain dvc repro)",
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
