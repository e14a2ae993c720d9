#!/usr/bin/env python3
"""Time faiss's k-means assignment step on the sizes `benches/assign.rs` uses.

The anchor for the CPU backend: faiss at its best on this machine. The script
re-runs itself with OPENBLAS_CORETYPE=SkylakeX where the CPU has AVX-512
(benchlib.ensure_faiss_env), so

    python3 benches/faiss_assign.py --n 200000 --k 5128 --d 768

`--mode flat` (default) times `faiss.IndexFlatL2(d).add(c); index.search(x, 1)`, the
assignment step of every k-means iteration; `--mode kmeans` times one
`faiss.Kmeans(d, k, niter=1)` training run (assignment + centroid update, no
subsampling); `--mode both` does both. Each repetition prints one JSON line with
wall seconds, GFLOP/s (2·N·K·D / s) and the share of the machine that other
processes used meanwhile (`others`: the box may be shared; distrust figures
taken with others > 0.1). `--metric ip` uses IndexFlatIP instead. The data are
standard normal rows (the time does not depend on them), as in assign.rs.
"""
import argparse
import json
import os
import sys

import benchlib as bl


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--k", type=int, default=5128)
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=["flat", "kmeans", "both"], default="flat")
    p.add_argument("--metric", choices=["l2", "ip"], default="l2")
    p.add_argument("--quiet", type=float, default=None, metavar="FRAC",
                   help="before each timing, wait (up to 5 min) until other processes use <= FRAC of the CPUs")
    a = p.parse_args()
    bl.ensure_faiss_env()
    import faiss
    import numpy as np

    faiss.omp_set_num_threads(a.threads)
    rng = np.random.default_rng(a.seed)
    x = rng.standard_normal((a.n, a.d), dtype=np.float32)
    c = x[rng.choice(a.n, size=a.k, replace=a.k > a.n)].copy()
    flop = 2.0 * a.n * a.k * a.d
    info = {
        "faiss": faiss.__version__,
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "threads": a.threads,
        "n": a.n, "k": a.k, "d": a.d, "metric": a.metric,
    }
    print(json.dumps({"setup": info}), flush=True)

    modes = ["flat", "kmeans"] if a.mode == "both" else [a.mode]
    for rep in range(a.reps):
        for mode in modes:
            waited = bl.wait_quiet(a.quiet)["waited_s"] if a.quiet is not None else 0.0
            if mode == "flat":
                index = faiss.IndexFlatL2(a.d) if a.metric == "l2" else faiss.IndexFlatIP(a.d)
                index.add(c)
                with bl.Meter() as m:
                    D, I = index.search(x, 1)
                del index
            else:
                km = faiss.Kmeans(a.d, a.k, niter=1, seed=1234 + rep, verbose=False,
                                  max_points_per_centroid=1 << 30,
                                  spherical=a.metric == "ip")
                with bl.Meter() as m:
                    km.train(x)
            print(json.dumps({
                "impl": "faiss-" + mode, "rep": rep, "s": round(m.wall, 4),
                "gflops": round(flop / m.wall / 1e9, 1), "others": round(m.others, 3), "waited": waited,
            }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
