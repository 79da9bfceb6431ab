"""glibc's allocator settings for a training stage, side by side in one run: default vs freed memory kept for reuse.

A stage allocates and frees tensors above glibc's mmap threshold (logits over SmolLM2's 49K vocabulary, gradients of
its embedding) many times a step; each such allocation is a fresh mmap whose pages the kernel faults in and zeroes.
``GLIBC_TUNABLES`` (read at process start) can keep freed memory in the heap instead. Each round runs the same stage
command twice at once, one thread each (as ``okapi.repro`` runs two columns): once as is, once with the tunables.
Reported per run: wall, user and system CPU seconds, peak RSS, minor page faults (from ``wait4``), and whether the
two saved models are byte-identical (an allocator cannot change the arithmetic).

    python benchmarks/malloc_reuse.py [--rounds 2] [--lang vi] [--section sft]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REUSE = "glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184:glibc.malloc.top_pad=268435456"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--lang", default="vi")
    ap.add_argument("--section", default="sft", choices=["sft", "sft_full"])
    ap.add_argument("--tunables", default=REUSE, help="GLIBC_TUNABLES of the second run of each round")
    args = ap.parse_args()
    data = ROOT / "data" / "translated" / args.lang / ("sft.parquet" if args.section == "sft" else "full.parquet")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("GLIBC_TUNABLES", None)
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(1, args.rounds + 1):
            procs = {}
            for name, extra in (("default", {}), ("reuse", {"GLIBC_TUNABLES": args.tunables})):
                out = Path(tmp) / f"{name}{rnd}"
                cmd = [sys.executable, "-m", "stages.sft", "--lang", args.lang, "--section", args.section]
                cmd += ["--model", str(ROOT / "models" / "base"), "--data", str(data), "--out", str(out)]
                cmd += ["--metrics", str(out) + ".json"]
                log = open(Path(tmp) / f"{name}{rnd}.log", "w+")  # noqa: SIM115 -- closed below
                proc = subprocess.Popen(cmd, cwd=ROOT, env={**env, **extra}, stdout=log, stderr=log)
                procs[name] = (proc, out, log, time.perf_counter())
            results = {}
            for name, (proc, out, log, t0) in procs.items():
                _, status, usage = os.wait4(proc.pid, 0)
                wall = time.perf_counter() - t0
                log.seek(0)
                tail = log.read()[-2000:]
                log.close()
                if os.waitstatus_to_exitcode(status) != 0:  # the temporary folder goes with the return: show the log
                    print(f"{name}: the stage failed; the end of its log:\n{tail}", file=sys.stderr)
                    return 1
                results[name] = (wall, usage, _sha(out / "model.safetensors"))
            for name, (wall, usage, digest) in results.items():
                print(
                    f"round {rnd} {name:8s} wall {wall:6.1f} s  user {usage.ru_utime:5.1f} s  sys {usage.ru_stime:5.1f} s"
                    f"  peak RSS {usage.ru_maxrss / 1024:5.0f} MB  minor faults {usage.ru_minflt / 1e6:4.2f} M  model {digest}",
                    flush=True,
                )
            same = results["default"][2] == results["reuse"][2]
            print(
                f"round {rnd}: reuse/default wall x{results['default'][0] / results['reuse'][0]:.2f}, "
                f"models {'identical' if same else 'DIFFERENT'}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
