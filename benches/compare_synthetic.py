#!/usr/bin/env python3
"""Time the synthetic generator in NumPy (benches/rvc_synthetic.py: the
baseline harness's generator, database stream) against the Rust port
(`cargo build --release --example synthetic`), alternately in one run, and
print medians and the ratio as JSON.

The first Rust run also reports how far its rows are from NumPy's (it reads
the NumPy rows back from utterance files written into the bench cache);
--no-check skips that.

    python3 benches/compare_synthetic.py --n 200000 --d 768 --repeats 3
"""

import argparse
import json
import os
import subprocess
import time

import benchlib as bl


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-check", action="store_true", help="skip comparing the rows")
    p.add_argument("--bin", default=None, help="default: target/release/examples/synthetic")
    a = p.parse_args()
    exe = bl.binary("synthetic", example=True, path=a.bin)
    import numpy as np

    cache = None if a.no_check else bl.experiment_dir(a.n, a.d, a.seed)
    ours, theirs, check = [], [], None
    load = [bl.loadavg()]
    for i in range(a.repeats):
        t = time.perf_counter()
        rows = bl.database(a.n, a.d, a.seed)
        theirs.append(time.perf_counter() - t)
        del rows
        args = [exe, str(a.n), str(a.d), str(a.seed), "1"]
        if cache and i == 0:
            args.append(cache)
        r = json.loads(subprocess.run(args, capture_output=True, text=True, check=True,
                                      env=bl.ours_env()).stdout)
        ours.append(r["generate_s"][0])
        if cache and i == 0:
            check = {k: v for k, v in r.items() if k not in ("generate_s",)}
    load.append(bl.loadavg())
    mo, mt = bl.median(ours), bl.median(theirs)
    print(json.dumps({"n": a.n, "d": a.d, "seed": a.seed, "numpy_version": np.__version__,
                      "numpy_s": [round(x, 3) for x in theirs],
                      "ours_s": [round(x, 3) for x in ours],
                      "numpy_median_s": round(mt, 3), "ours_median_s": round(mo, 3),
                      "speedup": round(mt / mo, 2), "loadavg": load,
                      "nproc": os.cpu_count(), "check": check}, indent=1))


if __name__ == "__main__":
    main()
