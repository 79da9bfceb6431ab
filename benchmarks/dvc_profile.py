"""Where a DVC command's CPU goes: runs ``dvc ARGS`` in this process and charges CPU seconds to DVC's parts.

Build a 26-language workspace first (``python benchmarks/dvc_languages.py --runs 1 --keep /tmp/dvc26``), then

    python benchmarks/dvc_profile.py --project /tmp/dvc26/project repro
    python benchmarks/dvc_profile.py --project /tmp/dvc26/project status

It wraps a few DVC functions (outermost call only) and counts the opens of DVC's own files, then prints CPU seconds
per part. The parts nest (the YAML parse of dvc.yaml/dvc.lock happens inside the index build and inside
collect_stages), so the rows do not add up to the total. CPU time, not wall time, so that the other users of a
shared machine do not move the numbers much. DVC is not changed: this only measures.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import contextlib
import functools
import os
import sys
import time

PARTS = [
    # (module, attribute path, label, is a context manager)
    ("dvc.dependency.param", "read_param_file", "params.yaml parsed per stage (ParamsDependency)", False),
    ("dvc.repo.index", "Index.from_repo", "index: walk + dvc.yaml + dvc.lock + stage objects", False),
    ("dvc.repo.reproduce", "collect_stages", "repro's collect_stages (loads dvc.yaml/dvc.lock again)", False),
    ("dvc.utils.strictyaml", "load", "  of which dvc.yaml/dvc.lock YAML parse + schema", False),
    ("dvc.rwlock", "_edit_rwlock", ".dvc/tmp/rwlock read-modify-write", True),
    ("dvc.output", "Output._get_hash_meta", "deps/outs hash check (state db)", False),
    ("dvc.analytics", "collect_and_send_report", "analytics report (the daemon's CPU is not counted)", False),
]
WATCHED = ("params.yaml", "dvc.yaml", "dvc.lock", "rwlock")

cpu: dict[str, float] = collections.defaultdict(float)
calls: collections.Counter = collections.Counter()
opens: collections.Counter = collections.Counter()
active: set[str] = set()


def _wrap(module: str, attr: str, label: str, is_cm: bool) -> None:
    import importlib

    owner = importlib.import_module(module)
    *path, name = attr.split(".")
    for part in path:
        owner = getattr(owner, part)
    orig = getattr(owner, name)

    if is_cm:

        @contextlib.contextmanager
        def wrapped(*args, **kwargs):
            t = time.process_time()
            with orig(*args, **kwargs) as value:
                cpu[label] += time.process_time() - t
                calls[label] += 1
                yield value
                t = time.process_time()
            cpu[label] += time.process_time() - t

    else:

        @functools.wraps(orig)
        def wrapped(*args, **kwargs):
            if label in active:
                return orig(*args, **kwargs)
            active.add(label)
            t = time.process_time()
            try:
                return orig(*args, **kwargs)
            finally:
                cpu[label] += time.process_time() - t
                calls[label] += 1
                active.discard(label)

    setattr(owner, name, wrapped)


def _audit(event: str, args: tuple) -> None:
    if event == "open" and isinstance(args[0], str):
        base = os.path.basename(args[0])
        if base in WATCHED:
            mode = str(args[1] or "r")
            opens[(base, "write" if any(c in mode for c in "wa+") else "read")] += 1


def _report(start: float) -> None:
    total = time.process_time() - start
    print(f"\ndvc {' '.join(sys.argv[1:])}: {total:.2f} s CPU in all", file=sys.stderr)
    for label in [p[2] for p in PARTS]:
        if calls[label]:
            print(f"  {cpu[label]:5.2f} s {cpu[label] / total:4.0%}  {calls[label]:5d} calls  {label}", file=sys.stderr)
    print("  opens: " + ", ".join(f"{f} {m} {n}" for (f, m), n in sorted(opens.items())), file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--project", required=True, help="a DVC workspace (e.g. one kept by dvc_languages.py)")
    ap.add_argument("dvc_args", nargs=argparse.REMAINDER, help="the dvc command, e.g. repro or status")
    args = ap.parse_args()
    start = time.process_time()
    os.chdir(args.project)
    os.environ["PATH"] = f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}"
    for part in PARTS:
        _wrap(*part)
    sys.addaudithook(_audit)
    sys.argv = ["dvc", *args.dvc_args]
    atexit.register(_report, start)
    from dvc.cli import main as dvc_main

    sys.exit(dvc_main())


if __name__ == "__main__":
    main()
