#!/usr/bin/env python3
"""Compression to K centres: ours against scikit-learn's MiniBatchKMeans as RVC
calls it and faiss.Kmeans (K centres, 10 iterations, all rows), in one run,
with the inertia-versus-time curve of each and the final inertia over all
rows measured the same way for every method (exact faiss search).

Methods (--methods, comma-separated):
  ours     the rvc-index binary: `compress --json` (CPU backend by default),
           the two-level k-means; its curve is the inertia per row of the
           fine level (all rows, each to its group's centres) and of every
           refinement iteration (all rows, before the iteration's update).
  sklearn  MiniBatchKMeans(K, init="random", batch_size=256*n_cpu,
           compute_labels=False), seeds from --sklearn-seeds; its curve is the
           ewa batch inertia sklearn prints, at step times interpolated
           between its fit start and end.
  faiss    faiss.Kmeans(d, K, niter=10, seed=1234) on all rows (no
           subsampling); its curve is the objective of each iteration.

Goals (printed per data set and stored under "goals" when ours, sklearn and
faiss all ran): ours' fit time <= 0.5 x sklearn's median fit time, ours'
inertia <= 0.97 x sklearn's best seed and <= 1.03 x faiss's.

Data (--data):
  rvc      the synthetic RVC-like mixture of benches/rvc_synthetic.py (the
           baseline harness's generator and seed).
  blobs    isotropic Gaussian blobs of equal size and spread (a different
           structure: no hierarchy, no heavy tails, no Zipf weights).
  PATH     a .npy file (ours reads it in place).

--sizes NxD[,NxD...] runs the whole comparison once per size (synthetic data
only) and writes one JSON holding every set.

For faiss at its best the script re-runs itself with OPENBLAS_CORETYPE=SkylakeX
where the CPU has AVX-512 (benchlib.ensure_faiss_env); the variable is removed
from the environment of the rvc-index child process.

Example:
  python3 benches/compare_mbk.py --n 1000000 --d 256 \
      --k 10000 --json /tmp/mbk_1m.json --png /tmp/mbk_1m.png
  python3 benches/compare_mbk.py \
      --sizes 210000x768,210000x256,1000000x256,1000000x768 --json /tmp/mbk_all.json
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


def run_ours(a, x, path):
    out = os.path.join(tempfile.mkdtemp(prefix="compare_mbk_out_"), "centres.npy")
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
    f = j["fit"]
    # Whole-data figures only: the fine level's total (at the end of its
    # last group) and each refinement iteration. Work in rows assigned
    # against all K centres.
    curve = []
    fine = [h for h in j["history"] if h["phase"] == "fine"]
    if fine and f["fine_inertia_per_row"]:
        h = fine[-1]
        curve.append((h["seconds"], h["distance_evaluations"] // a.k, f["fine_inertia_per_row"][-1]))
    for h in j["history"]:
        if h["phase"] == "refine":
            curve.append((h["seconds"], h["distance_evaluations"] // a.k, h["inertia_per_row"]))
    return c, f["fit_seconds"], curve, {
        "wall_s": wall, "passes": f["passes"], "groups": f["groups"],
        "stage_seconds": f["stage_seconds"], "stage_evaluations": f["stage_evaluations"],
        "stage_inertia_per_row": j["stage_inertia_per_row"], "reseeded": f["reseeded"],
        "backend": j["backend"]}


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


def goals(res):
    """The targets of the comparison: time against scikit-learn's median,
    inertia against its best seed and against faiss."""
    runs = {r["method"]: r for r in res["runs"]}
    ours = runs.get("ours")
    sk = [r for r in res["runs"] if r["method"].startswith("sklearn")]
    fa = [r for r in res["runs"] if r["method"].startswith("faiss")]
    if not (ours and sk and fa):
        return None
    g = {"time_vs_sklearn_median": ours["fit_s"] / float(np.median([r["fit_s"] for r in sk])),
         "inertia_vs_sklearn_best": ours["inertia_per_row"] / min(r["inertia_per_row"] for r in sk),
         "inertia_vs_faiss": ours["inertia_per_row"] / fa[0]["inertia_per_row"]}
    g["met"] = (g["time_vs_sklearn_median"] <= 0.5 and g["inertia_vs_sklearn_best"] <= 0.97
                and g["inertia_vs_faiss"] <= 1.03)
    return g


def compare(a, x, tmp):
    res = {"data": a.data, "n": int(x.shape[0]), "d": int(x.shape[1]), "k": a.k,
           "env": {"OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"), "nproc": os.cpu_count()},
           "flop_per_pass": 2.0 * x.shape[0] * a.k * x.shape[1], "runs": []}
    # Random rows: the floor every method must beat.
    pick = np.random.default_rng(7).choice(len(x), a.k, replace=False)
    res["random_rows_inertia_per_row"] = inertia(x, x[pick]) / len(x)
    log(f"random rows: {res['random_rows_inertia_per_row']:.3f}/row")

    saved = None
    for meth in a.methods.split(","):
        jobs = []
        if meth == "ours":
            if os.path.isfile(a.data):
                path = a.data
            else:
                path = saved = os.path.join(tmp, f"x_{x.shape[0]}x{x.shape[1]}.npy")
                np.save(path, x)
            jobs = [("ours", lambda: run_ours(a, x, path))]
        elif meth == "sklearn":
            for s in a.sklearn_seeds.split(","):
                jobs.append((f"sklearn seed {s}", lambda s=int(s): run_sklearn(a, x, s)))
        elif meth == "faiss":
            jobs = [(f"faiss niter {a.faiss_niter}", lambda: run_faiss(a, x))]
        else:
            raise SystemExit(f"unknown method {meth!r} (ours, sklearn, faiss)")
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
            yield res
    if saved:
        os.remove(saved)
    best = {}
    for r in res["runs"]:
        m = r["method"].split()[0]
        best[m] = min(best.get(m, math.inf), r["inertia_per_row"])
    res["best_inertia_per_row"] = best
    if "faiss" in best:
        res["relative_to_faiss"] = {m: v / best["faiss"] - 1 for m, v in best.items()}
    res["goals"] = goals(res)
    yield res


def summary(res):
    """Summary table on stderr, curves thinned to ~12 points each."""
    print(f"\n{res['data']} {res['n']}x{res['d']} -> K={res['k']}; random rows "
          f"{res['random_rows_inertia_per_row']:.3f}/row", file=sys.stderr)
    for r in res["runs"]:
        cv = r["curve"]
        step = max(1, len(cv) // 12)
        pts = " ".join(f"{t_:.1f}s:{v:.1f}" for t_, _, v in cv[::step] + cv[-1:])
        print(f"  {r['method']:<16} fit {r['fit_s']:8.2f} s  inertia/row {r['inertia_per_row']:9.3f}   curve {pts}",
              file=sys.stderr)
    g = res.get("goals")
    if g:
        print(f"  goals: time {g['time_vs_sklearn_median']:.3f} x sklearn median (<= 0.5), inertia "
              f"{g['inertia_vs_sklearn_best']:.4f} x sklearn best (<= 0.97), "
              f"{g['inertia_vs_faiss']:.4f} x faiss (<= 1.03): {'met' if g['met'] else 'NOT met'}",
              file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="rvc")
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--sizes", default=None, metavar="NxD[,NxD...]",
                   help="run every size in turn (synthetic --data only); one JSON with every set")
    p.add_argument("--k", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0, help="data seed")
    p.add_argument("--blobs", type=int, default=20_000, help="components of --data blobs")
    p.add_argument("--methods", default="ours,sklearn,faiss")
    p.add_argument("--sklearn-seeds", default="0,1,2")
    p.add_argument("--faiss-niter", type=int, default=10)
    p.add_argument("--ours-seed", type=int, default=0)
    p.add_argument("--ours-args", default="", help="extra flags for rvc-index compress")
    p.add_argument("--device", default="cpu")
    p.add_argument("--binary", default=os.path.join(HERE, "..", "target", "release", "rvc-index"))
    p.add_argument("--json", default=None)
    p.add_argument("--png", default=None, help="inertia-versus-time chart (needs matplotlib); "
                   "with --sizes, one per set, the size appended to the name")
    p.add_argument("--plot-only", default=None, metavar="JSON",
                   help="draw --png from an earlier --json result and exit")
    a = p.parse_args()
    bl.ensure_faiss_env()
    if a.plot_only:
        with open(a.plot_only) as f:
            plot(json.load(f), a.png or a.plot_only.replace(".json", ".png"))
        return

    sizes = [(a.n, a.d)]
    if a.sizes:
        if os.path.isfile(a.data):
            raise SystemExit("--sizes needs synthetic data (--data rvc or blobs), not a file")
        sizes = [tuple(int(v) for v in s.lower().split("x")) for s in a.sizes.split(",")]
    tmp = tempfile.mkdtemp(prefix="compare_mbk_")
    done = []
    for n, d in sizes:
        a.n, a.d = n, d
        t = time.perf_counter()
        x = make_data(a)
        log(f"data {a.data} {x.shape} in {time.perf_counter() - t:.1f} s")
        for res in compare(a, x, tmp):
            # Written after every run, so a long comparison cut short keeps what it measured.
            if a.json:
                out = res if not a.sizes else {"sets": done + [res]}
                with open(a.json, "w") as f:
                    json.dump(out, f, indent=1)
        done.append(res)
        summary(res)
        if a.png:
            path = a.png if not a.sizes else a.png.replace(".png", f"_{n}x{d}.png")
            plot(res, path)
        del x
    if not a.json:
        print(json.dumps(done[0] if not a.sizes else {"sets": done}, indent=1))
    if a.sizes:
        for res in done:
            summary(res)


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
