#!/usr/bin/env python3
"""Compression to K centres: ours against scikit-learn's MiniBatchKMeans as RVC
calls it and faiss.Kmeans (K centres, 10 iterations, all rows), in one run,
with the inertia-versus-time curve of each and the final inertia over all
rows measured the same way for every method (exact faiss search).

Methods (--methods, comma-separated):
  ours     the rvc-index binary: `compress --json` (CPU backend by default);
           its curve is the inertia per row of every mini-batch step, scored
           before the batch moves the centres (smoothed over ~8 batches).
  mirror   the same algorithm in numpy with faiss doing the assignment GEMM
           (what `ours` costs once the CPU backend's assignment runs at GEMM
           speed); its curve is the same per-step measure.
  sklearn  MiniBatchKMeans(K, init="random", batch_size=256*n_cpu,
           compute_labels=False), seeds from --sklearn-seeds; its curve is the
           ewa batch inertia sklearn prints, at step times interpolated
           between its fit start and end.
  faiss    faiss.Kmeans(d, K, niter=10, seed=1234) on all rows (no
           subsampling); its curve is the objective of each iteration.

Data (--data):
  rvc      the synthetic RVC-like mixture of benches/rvc_synthetic.py (the
           baseline harness's generator and seed).
  blobs    isotropic Gaussian blobs of equal size and spread (a different
           structure: no hierarchy, no heavy tails, no Zipf weights).
  PATH     a .npy file.

For faiss at its best the script re-runs itself with OPENBLAS_CORETYPE=SkylakeX
where the CPU has AVX-512 (benchlib.ensure_faiss_env); the variable is removed
from the environment of the rvc-index child process.

Example:
  python3 benches/compare_mbk.py --n 1000000 --d 256 \
      --k 10000 --methods mirror,sklearn,faiss --json /tmp/mbk_1m.json --png /tmp/mbk_1m.png
"""

import argparse
import contextlib
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

import benchlib as bl

HERE = os.path.dirname(os.path.abspath(__file__))


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def make_data(a):
    if a.data == "rvc":
        return bl.database(a.n, a.d, a.seed)
    if a.data == "blobs":
        rng = np.random.default_rng(a.seed)
        c = rng.standard_normal((a.blobs, a.d)).astype(np.float32) * 4.0
        lab = rng.integers(0, a.blobs, a.n)
        return (c[lab] + rng.standard_normal((a.n, a.d), dtype=np.float32)).astype(np.float32)
    return np.ascontiguousarray(np.load(a.data), dtype=np.float32)


def inertia(x, c, chunk=262144):
    import faiss
    ix = faiss.IndexFlatL2(x.shape[1])
    ix.add(np.ascontiguousarray(c, dtype=np.float32))
    tot = 0.0
    for lo in range(0, len(x), chunk):
        D, _ = ix.search(x[lo:lo + chunk], 1)
        tot += float(D[:, 0].astype(np.float64).clip(min=0).sum())
    return tot


# --------------------------------------------------------------------------
# the algorithm of src/train/minibatch.rs, in numpy + faiss
# --------------------------------------------------------------------------

def _assign(xb, c):
    import faiss
    ix = faiss.IndexFlatL2(xb.shape[1])
    ix.add(c)
    D, I = ix.search(xb, 1)
    return I[:, 0], D[:, 0].astype(np.float64).clip(min=0)


def _segsum(xb, lab, k):
    o = np.argsort(lab, kind="stable")
    sl = lab[o]
    starts = np.flatnonzero(np.r_[True, sl[1:] != sl[:-1]])
    out = np.zeros((k, xb.shape[1]))
    out[sl[starts]] = np.add.reduceat(xb[o].astype(np.float64), starts, axis=0)
    return out, np.bincount(lab, minlength=k).astype(np.float64)


def mirror(x, k, seed=0, batch=16384, epochs=None, pool_per_centre=32, iters=3, carry=0.5):
    """Pool-Lloyd seeding, then 1/count mini-batch passes. Dead centres in the
    mini-batch phase are not re-seeded here (they are rare at these sizes)."""
    t0 = time.perf_counter()
    n, d = x.shape
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    pool = min(n, k * pool_per_centre)
    c = x[perm[:k]].astype(np.float32)
    curve = []
    rows = 0

    def step(b, dist):
        nonlocal rows
        rows += b
        # Unsmoothed, as for `ours`: each batch is scored before it moves the centres.
        curve.append((time.perf_counter() - t0, rows, float(dist.sum()) / b))

    counts = np.zeros(k)
    for _ in range(iters):
        sums = np.zeros((k, d))
        counts = np.zeros(k)
        far = []
        for lo in range(0, pool, batch):
            xb = x[perm[lo:min(pool, lo + batch)]]
            lab, dist = _assign(xb, c)
            s, cnt = _segsum(xb, lab, k)
            sums += s
            counts += cnt
            far.append((perm[lo:min(pool, lo + batch)], dist))
            step(len(xb), dist)
        nz = counts > 0
        c[nz] = (sums[nz] / counts[nz, None]).astype(np.float32)
        dead = np.flatnonzero(~nz)
        if len(dead):
            idx = np.concatenate([f[0] for f in far])
            w = np.concatenate([f[1] for f in far])
            keys = np.log(rng.random(len(w))) / np.maximum(w, 1e-30)
            pick = idx[np.argsort(-keys)[:len(dead)]]
            c[dead[:len(pick)]] = x[pick]
    counts *= carry
    if epochs is None:
        epochs = min(10.0, max(1.0, 500_000 / n))  # minibatch::auto_epochs
    cd = c.astype(np.float64)
    total = int(round(epochs * n))
    seen = 0
    while seen < total:
        b = min(batch, total - seen)
        ids = perm[(pool + seen + np.arange(b)) % n]
        xb = x[ids]
        lab, dist = _assign(xb, cd.astype(np.float32))
        s, cnt = _segsum(xb, lab, k)
        counts += cnt
        nz = cnt > 0
        cd[nz] += (s[nz] - cnt[nz, None] * cd[nz]) / counts[nz, None]
        seen += b
        step(b, dist)
    return cd.astype(np.float32), time.perf_counter() - t0, curve, rows


# --------------------------------------------------------------------------

def run_ours(a, x, path):
    out = path + ".centres.npy"
    cmd = [a.binary, "compress", path, "-k", str(a.k), "-o", out, "--device", a.device,
           "--json", "--quiet", "--no-eval", "--seed", str(a.ours_seed)] + a.ours_args.split()
    env = bl.ours_env()
    log(" ".join(cmd))
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"rvc-index failed: {r.stderr}")
    j = json.loads(r.stdout)
    c = np.load(out)
    # Only mini-batch steps: their rows were not seen before, so each batch's
    # inertia estimates the centres' inertia over all rows. (Seeding scores
    # the pool it fits and reads low.) Smoothed over ~8 batches for the chart.
    curve, ewa = [], None
    for h in j["history"]:
        if h["phase"] != "minibatch":
            continue
        v = h["batch_inertia_per_row"]
        ewa = v if ewa is None else 0.875 * ewa + 0.125 * v
        curve.append((h["seconds"], h["rows_assigned"], ewa))
    return c, j["fit"]["fit_seconds"], curve, {"wall_s": wall, "rows_assigned": j["fit"]["rows_assigned"],
                                               "reseeded": j["fit"]["reseeded"], "backend": j["backend"]}


def run_sklearn(a, x, seed):
    from sklearn.cluster import MiniBatchKMeans
    n_cpu = os.cpu_count()
    m = MiniBatchKMeans(n_clusters=a.k, init="random", batch_size=256 * n_cpu,
                        compute_labels=False, random_state=seed, verbose=True)
    buf = io.StringIO()
    t = time.perf_counter()
    with contextlib.redirect_stdout(buf):
        m.fit(x)
    fit = time.perf_counter() - t
    steps = [(int(s), float(e)) for s, e in
             re.findall(r"Minibatch step (\d+)/\d+: mean batch inertia: [^,]+, ewa inertia: ([0-9.eE+-]+)",
                        buf.getvalue())]
    nsteps = max(1, int(m.n_steps_))
    bs = 256 * n_cpu
    # sklearn's printed ewa is per row already (batch inertia / batch size).
    curve = [(fit * s / nsteps, s * bs, e) for s, e in steps]
    return m.cluster_centers_.astype(np.float32), fit, curve, {"steps": int(m.n_steps_), "batch_size": bs}


def run_faiss(a, x):
    import faiss
    km = faiss.Kmeans(x.shape[1], a.k, niter=a.faiss_niter, seed=1234,
                      max_points_per_centroid=1 << 30)
    t = time.perf_counter()
    km.train(x)
    fit = time.perf_counter() - t
    st = km.iteration_stats
    curve, acc = [], 0.0
    for i, s in enumerate(st):
        acc = s["time"] if isinstance(s, dict) else s.time
        obj = s["obj"] if isinstance(s, dict) else s.obj
        curve.append((acc, (i + 1) * len(x), obj / len(x)))
    return km.centroids.copy(), fit, curve, {"niter": a.faiss_niter}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="rvc")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--k", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0, help="data seed")
    p.add_argument("--blobs", type=int, default=20_000, help="components of --data blobs")
    p.add_argument("--methods", default="ours,mirror,sklearn,faiss")
    p.add_argument("--sklearn-seeds", default="0,1,2")
    p.add_argument("--faiss-niter", type=int, default=10)
    p.add_argument("--ours-seed", type=int, default=0)
    p.add_argument("--mirror-seeds", default="0")
    p.add_argument("--ours-args", default="", help="extra flags for rvc-index compress")
    p.add_argument("--device", default="cpu")
    p.add_argument("--binary", default=os.path.join(HERE, "..", "target", "release", "rvc-index"))
    p.add_argument("--json", default=None)
    p.add_argument("--png", default=None, help="inertia-versus-time chart (needs matplotlib)")
    p.add_argument("--plot-only", default=None, metavar="JSON",
                   help="draw --png from an earlier --json result and exit")
    a = p.parse_args()
    bl.ensure_faiss_env()
    if a.plot_only:
        with open(a.plot_only) as f:
            plot(json.load(f), a.png or a.plot_only.replace(".json", ".png"))
        return

    t = time.perf_counter()
    x = make_data(a)
    log(f"data {a.data} {x.shape} in {time.perf_counter() - t:.1f} s")
    res = {"data": a.data, "n": int(x.shape[0]), "d": int(x.shape[1]), "k": a.k,
           "env": {"OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"), "nproc": os.cpu_count()},
           "flop_per_pass": 2.0 * x.shape[0] * a.k * x.shape[1], "runs": []}
    # Random rows: the floor every method must beat.
    pick = np.random.default_rng(7).choice(len(x), a.k, replace=False)
    res["random_rows_inertia_per_row"] = inertia(x, x[pick]) / len(x)
    log(f"random rows: {res['random_rows_inertia_per_row']:.3f}/row")

    tmp = tempfile.mkdtemp(prefix="compare_mbk_")
    for meth in a.methods.split(","):
        jobs = []
        if meth == "ours":
            path = os.path.join(tmp, "x.npy")
            np.save(path, x)
            jobs = [("ours", lambda: run_ours(a, x, path))]
        elif meth == "mirror":
            for s in a.mirror_seeds.split(","):
                jobs.append((f"mirror seed {s}", lambda s=int(s): (lambda r: (r[0], r[1], r[2], {"rows_assigned": r[3]}))(mirror(x, a.k, seed=s))))
        elif meth == "sklearn":
            for s in a.sklearn_seeds.split(","):
                jobs.append((f"sklearn seed {s}", lambda s=int(s): run_sklearn(a, x, s)))
        elif meth == "faiss":
            jobs = [(f"faiss niter {a.faiss_niter}", lambda: run_faiss(a, x))]
        for name, fn in jobs:
            log(f"{name} ...")
            c, fit, curve, extra = fn()
            t = time.perf_counter()
            inert = inertia(x, c)
            ev = time.perf_counter() - t
            r = {"method": name, "fit_s": round(fit, 3), "inertia": inert,
                 "loadavg_1m_after": os.getloadavg()[0],
                 "inertia_per_row": inert / len(x), "eval_s": round(ev, 3),
                 "nan_centres": int(np.isnan(c).any(axis=1).sum()), **extra,
                 "curve": [(round(t_, 3), int(r_), round(v, 4)) for t_, r_, v in curve]}
            res["runs"].append(r)
            log(f"{name}: fit {fit:.1f} s, inertia/row {inert / len(x):.3f} (eval {ev:.1f} s)")
            # Written after every run, so a long comparison cut short keeps what it measured.
            if a.json:
                with open(a.json, "w") as f:
                    json.dump(res, f, indent=1)
    best = {}
    for r in res["runs"]:
        m = r["method"].split()[0]
        best[m] = min(best.get(m, math.inf), r["inertia_per_row"])
    res["best_inertia_per_row"] = best
    if "faiss" in best:
        res["relative_to_faiss"] = {m: v / best["faiss"] - 1 for m, v in best.items()}
    s = json.dumps(res, indent=1)
    if a.json:
        with open(a.json, "w") as f:
            f.write(s)
    # Summary table on stderr, curves thinned to ~12 points each.
    print(f"\n{a.data} {x.shape[0]}x{x.shape[1]} -> K={a.k}; random rows {res['random_rows_inertia_per_row']:.3f}/row",
          file=sys.stderr)
    for r in res["runs"]:
        cv = r["curve"]
        step = max(1, len(cv) // 12)
        pts = " ".join(f"{t_:.1f}s:{v:.1f}" for t_, _, v in cv[::step] + cv[-1:])
        print(f"  {r['method']:<16} fit {r['fit_s']:8.2f} s  inertia/row {r['inertia_per_row']:9.3f}   curve {pts}",
              file=sys.stderr)
    if not a.json:
        print(s)
    if a.png:
        plot(res, a.png)


def plot(res, path):
    """Each method's curve (per-batch or per-iteration inertia per row against
    fit time) and, as a dot at its fit time, the final inertia over all rows."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for i, r in enumerate(res["runs"]):
        colour = f"C{i}"
        cv = r["curve"]
        if cv:
            ax.plot([max(t, 1e-2) for t, _, _ in cv], [v for _, _, v in cv], color=colour,
                    lw=1, alpha=0.6)
        ax.plot([max(r["fit_s"], 1e-2)], [r["inertia_per_row"]], "o", color=colour,
                label=f"{r['method']}: {r['inertia_per_row']:.1f}/row in {r['fit_s']:.1f} s")
    ax.axhline(res["random_rows_inertia_per_row"], color="grey", ls=":",
               label=f"random rows {res['random_rows_inertia_per_row']:.1f}")
    finals = [r["inertia_per_row"] for r in res["runs"]]
    lo, hi = min(finals + [res["random_rows_inertia_per_row"]]), max(finals + [res["random_rows_inertia_per_row"]])
    ax.set_ylim(lo * 0.9, hi * 1.15)
    ax.set_xscale("log")
    ax.set_xlabel("fit time [s] (log)")
    ax.set_ylabel("inertia per row (line: running estimate; dot: final, all rows)")
    ax.set_title(f"{res['data']} {res['n']}x{res['d']} -> K={res['k']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"chart: {path}")


if __name__ == "__main__":
    main()
