#!/usr/bin/env python3
"""k-means and `train` against faiss, in the same run, on the same rows.

For every data set: our k-means (the CPU backend, faiss's IVF parameters:
10 iterations, seed 1234, 256 points per centroid; timed by the
`kmeans_time` example, which prints the k-means seconds and each
iteration's rows searched and full distances computed), `faiss.Kmeans`
(faiss `Clustering`) and `faiss.SuperKmeans` (ADSampling + PDX pruning),
each timed around its own `train`, and the objective of each centroid set
measured the same way for all three: an exact faiss search of every row
against the centroids (sum of squared distances to the nearest one).

Data sets (`--cases`, comma-separated):
  rvc200k   the harness's RVC-like synthetic rows, 200 000 × 768 → 5 128
  rvc60k    the same generator, 60 000 × 768 → 1 538
  wide1m    the same generator, 1 000 000 × 256 → 10 000 (compress's shape;
            faiss subsamples to 256 points per centroid, as we do)
  blobs     isotropic Gaussian blobs, 100 000 × 384 → 2 048 (a different
            structure: 500 well-separated blobs, full-rank noise)
  train     `rvc-index train` end to end on rvc200k's rows against faiss's
            RVC recipe with SuperKmeans as the coarse clustering (train,
            IndexIVFFlat, add in 8 192-row batches, write_index)

    cargo build --release --bin rvc-index --example kmeans_time
    python3 benches/compare_kmeans.py --cases rvc200k,rvc60k,wide1m,blobs,train
    python3 benches/compare_kmeans.py --cases rvc60k --scale 0.05   # smoke test

`--scale` multiplies every n and k (for quick checks). `--brute` also runs
our k-means with pruning off. `--json FILE` writes every figure. Ratios
are ours / theirs: below 1 means faster. On AVX-512 machines faiss runs
with OPENBLAS_CORETYPE=SkylakeX unless that variable is already set (or
COMPARE_KMEANS_NO_SKYLAKEX is). Needs numpy and faiss-cpu ≥ 1.14.2.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLE = os.path.join(ROOT, "target", "release", "examples", "kmeans_time")
BINARY = os.path.join(ROOT, "target", "release", "rvc-index")

CASES = {
    "rvc200k": ("rvc", 200_000, 768, 5128),
    "rvc60k": ("rvc", 60_000, 768, 1538),
    "wide1m": ("rvc", 1_000_000, 256, 10_000),
    "blobs": ("blobs", 100_000, 384, 2048),
}


def make_data(kind, n, d, path, seed=0):
    if kind == "rvc":
        subprocess.run([EXAMPLE, str(n), str(d), "1", "--seed", str(seed), "--write-npy", path],
                       check=True, stdout=subprocess.DEVNULL)
    else:
        rng = np.random.default_rng(seed)
        centres = rng.standard_normal((500, d), dtype=np.float32) * 4.0
        labels = rng.integers(0, len(centres), n)
        x = centres[labels] + rng.standard_normal((n, d), dtype=np.float32)
        np.save(path, x.astype(np.float32))
    return np.load(path, mmap_mode="r")


def objective(x, centroids):
    import faiss
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    total = 0.0
    for i in range(0, len(x), 65536):
        dist, _ = index.search(np.ascontiguousarray(x[i:i + 65536]), 1)
        total += float(dist.astype(np.float64).sum())
    return total


def ours(path, k, prune, tmp):
    cent = os.path.join(tmp, f"ours_{prune}.npy")
    out = subprocess.run([EXAMPLE, "--npy", path, str(k), "--niter", "10", "--prune", prune,
                          "--centroids", cent], check=True, stdout=subprocess.PIPE, text=True).stdout
    j = json.loads(out)
    return j["kmeans_s"], np.load(cent), j["iterations"]


def theirs(cls, x, k):
    import faiss
    km = getattr(faiss, cls)(x.shape[1], k, niter=10, seed=1234, max_points_per_centroid=256)
    xs = np.ascontiguousarray(x)
    t = time.perf_counter()
    km.train(xs)
    return time.perf_counter() - t, km.centroids


def kmeans_case(name, scale, brute, tmp):
    kind, n, d, k = CASES[name]
    n, k = max(int(n * scale), 2), max(int(k * scale), 1)
    path = os.path.join(tmp, f"{name}.npy")
    x = make_data(kind, n, d, path)
    rows = {}
    s, c, iters = ours(path, k, "auto", tmp)
    rows["ours"] = {"seconds": s, "objective": objective(x, c),
                    "recomputed": [it["recomputed"] for it in iters],
                    "exact_scores": [it["exact_scores"] for it in iters],
                    "pruned_dims": [it["pruned_dims"] for it in iters]}
    if brute:
        s, c, _ = ours(path, k, "off", tmp)
        rows["ours_brute"] = {"seconds": s, "objective": objective(x, c)}
    for cls in ("Kmeans", "SuperKmeans"):
        s, c = theirs(cls, x, k)
        rows[f"faiss.{cls}"] = {"seconds": s, "objective": objective(x, c)}
    base = rows["faiss.Kmeans"]["objective"]
    print(f"\n{name}: {n} x {d} -> {k}")
    print(f"  {'':18} {'k-means s':>10} {'objective/Clustering':>21}")
    for who, r in rows.items():
        print(f"  {who:18} {r['seconds']:10.2f} {r['objective'] / base:21.5f}")
    sk = rows["faiss.SuperKmeans"]["seconds"]
    print(f"  ours / SuperKmeans time: {rows['ours']['seconds'] / sk:.3f}; "
          f"ours / Kmeans time: {rows['ours']['seconds'] / rows['faiss.Kmeans']['seconds']:.3f}")
    return {"n": n, "d": d, "k": k, "results": rows}


def rvc_nlist(n):
    return min(int(16 * np.sqrt(n)), n // 39)


def train_case(scale, tmp):
    import faiss
    n, d = max(int(200_000 * scale), 1000), 768
    feat = os.path.join(tmp, "features")
    os.makedirs(feat, exist_ok=True)
    path = os.path.join(feat, "0.npy")
    make_data("rvc", n, d, path)
    exp = os.path.join(tmp, "exp")
    os.makedirs(exp, exist_ok=True)
    t = time.perf_counter()
    out = subprocess.run([BINARY, "train", exp, "--feature-dir", feat, "--device", "cpu", "--json",
                          "--quiet"], check=True, stdout=subprocess.PIPE, text=True).stdout
    ours_wall = time.perf_counter() - t
    j = json.loads(out)
    ours_s = j["seconds"]
    # faiss's RVC recipe (infer/modules/train/train_index), SuperKmeans as the coarse clustering.
    t = time.perf_counter()
    x = np.load(path)
    np.random.default_rng(0).shuffle(x)
    nlist = rvc_nlist(len(x))
    sk = faiss.SuperKmeans(d, nlist, niter=10, seed=1234, max_points_per_centroid=256)
    t1 = time.perf_counter()
    sk.train(x)
    km_s = time.perf_counter() - t1
    quantizer = faiss.IndexFlatL2(d)
    quantizer.add(sk.centroids)
    index = faiss.IndexIVFFlat(quantizer, d, nlist)
    index.is_trained = True
    for i in range(0, len(x), 8192):
        index.add(x[i:i + 8192])
    index.nprobe = 1
    faiss.write_index(index, os.path.join(tmp, "faiss_added.index"))
    theirs_s = time.perf_counter() - t
    print(f"\ntrain end to end: {len(x)} x {d}, nlist {nlist}")
    print(f"  rvc-index train: {ours_s['total']:.2f} s (k-means {ours_s['kmeans']:.2f} s, wall {ours_wall:.2f} s)")
    print(f"  faiss + SuperKmeans recipe: {theirs_s:.2f} s (SuperKmeans {km_s:.2f} s)")
    print(f"  ours / theirs: {ours_s['total'] / theirs_s:.3f} (k-means {ours_s['kmeans'] / km_s:.3f})")
    return {"n": len(x), "d": d, "nlist": nlist, "ours_seconds": ours_s, "ours_wall_s": ours_wall,
            "faiss_superkmeans_recipe_s": theirs_s, "faiss_superkmeans_s": km_s}


def main():
    try:
        with open("/proc/cpuinfo") as f:
            avx512 = " avx512f" in f.read()
    except OSError:
        avx512 = False
    if avx512 and os.environ.get("OPENBLAS_CORETYPE") is None \
            and os.environ.get("COMPARE_KMEANS_NO_SKYLAKEX") is None:
        # faiss at its best: OpenBLAS's SkylakeX kernels on AVX-512 machines
        # (it must be set before numpy loads OpenBLAS, hence the re-exec).
        os.execve(sys.executable, [sys.executable] + sys.argv, dict(os.environ, OPENBLAS_CORETYPE="SkylakeX"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="rvc200k,rvc60k,wide1m,blobs,train")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--brute", action="store_true")
    p.add_argument("--json")
    a = p.parse_args()
    for f in (EXAMPLE, BINARY):
        if not os.path.exists(f):
            sys.exit(f"{f} is missing: cargo build --release --bin rvc-index --example kmeans_time")
    import faiss
    if not hasattr(faiss, "SuperKmeans"):
        sys.exit(f"faiss {faiss.__version__} has no SuperKmeans (needs faiss-cpu >= 1.14.2)")
    report = {"faiss": faiss.__version__, "threads": os.cpu_count(), "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in a.cases.split(","):
            if name == "train":
                report["cases"][name] = train_case(a.scale, tmp)
            elif name in CASES:
                report["cases"][name] = kmeans_case(name, a.scale, a.brute, tmp)
            else:
                sys.exit(f"unknown case {name!r}; known: {', '.join(CASES)}, train")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
