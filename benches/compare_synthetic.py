#!/usr/bin/env python3
"""Time the baseline harness's synthetic generator (NumPy, ../shared/bench/
faiss_baseline.py: Mixture + generate_rows, stream 1) against the Rust port
(`cargo build --release --example synthetic`), alternately in one run, and
print medians and the ratio as JSON.

With --cache DIR (a folder of the harness's cached utterance files for the
same N, D, seed) the Rust side also reports how far its rows are from them.

Example:
  python3 benches/compare_synthetic.py --n 200000 --d 768 --repeats 3 \
      --cache /tmp/faiss_baseline_cache/syn_n200000_d768_s0_a2e0e02b6f
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "..", "shared", "bench"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cache", default=None)
    p.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "examples", "synthetic"))
    a = p.parse_args()
    import numpy as np
    import faiss_baseline as fb

    ours, theirs, extra = [], [], None
    load = [open("/proc/loadavg").read().split()[:3]]
    for i in range(a.repeats):
        t = time.perf_counter()
        mix = fb.Mixture(a.d, 4096, 64, 48, a.seed)
        rows = fb.generate_rows(mix, a.n, a.seed, 1)
        theirs.append(time.perf_counter() - t)
        del rows, mix
        args = [a.bin, str(a.n), str(a.d), str(a.seed), "1"]
        if a.cache and i == 0:
            args.append(a.cache)
        out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        r = json.loads(out)
        ours.append(r["generate_s"][0])
        if a.cache and i == 0:
            extra = r
    load.append(open("/proc/loadavg").read().split()[:3])
    mo, mt = statistics.median(ours), statistics.median(theirs)
    print(json.dumps({"n": a.n, "d": a.d, "seed": a.seed, "numpy_version": np.__version__,
                      "numpy_s": [round(x, 3) for x in theirs],
                      "ours_s": [round(x, 3) for x in ours],
                      "numpy_median_s": round(mt, 3), "ours_median_s": round(mo, 3),
                      "speedup": round(mt / mo, 2), "loadavg": load,
                      "nproc": os.cpu_count(), "check": extra}, indent=1))


if __name__ == "__main__":
    main()
