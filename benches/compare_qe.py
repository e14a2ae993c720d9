#!/usr/bin/env python3
"""α-query expansion: `rvc-index expand` against faiss IndexFlatIP kNN + NumPy
einsum (the qe stage of benches/faiss_rvc.py, RVC's faiss tips) on
benches/rvc_synthetic.py's matrix (the baseline harness's data), in the same run.

    cargo build --release
    python3 benches/compare_qe.py [--n 200000] [--d 768] [--num-expand 16] [--faiss-rows 20000]

faiss (child process, OPENBLAS_CORETYPE=SkylakeX where the CPU has AVX-512)
normalises all rows, adds them to an IndexFlatIP and expands the first
--faiss-rows rows (batches of 4096: search, w = D**alpha, einsum, normalise);
the kNN over all n rows is linear in the rows searched, so the time for all
rows is extrapolated as prep + (knn + combine) · n / faiss-rows (--faiss-rows
0: all rows, about 6 minutes here). Ours: `rvc-index expand --device cpu
--json` on all n rows, its own total (normalise + kNN + weighted sum; no file
I/O). faiss runs before and after ours (the machine may be shared: a busy
spell then hits both) and its faster run is reported. CPU seconds (all
threads) are reported beside wall time: on a shared machine they depend less
on what else runs. Also reports how close our rows are to faiss's on the rows
both expanded.
"""
import argparse
import json
import os
import resource
import subprocess
import tempfile

import numpy as np

import benchlib as bl

# The expansion as RVC's faiss tips write it, on the first `rows` rows.
FAISS = r"""
import sys, time, json, numpy as np, faiss
db = np.load(sys.argv[1]); rows = int(sys.argv[2]); qe_expand = int(sys.argv[3])
qe_alpha = float(sys.argv[4]); qe_batch = 4096; n, d = db.shape
rows = min(rows or n, n)
t0 = time.perf_counter()
c0 = time.process_time()
t = time.perf_counter()
norm = np.linalg.norm(db, ord=2, axis=1, keepdims=True)
xn = (db / np.maximum(norm, 1e-9)).astype(np.float32)
ip = faiss.IndexFlatIP(d)
ip.add(xn)
t_prep = time.perf_counter() - t
c_prep = time.process_time() - c0
t_knn = t_comb = 0.0
out = np.empty((rows, d), dtype=np.float32)
for s in range(0, rows, qe_batch):
    e = min(rows, s + qe_batch)
    t = time.perf_counter()
    Dm, Im = ip.search(xn[s:e], qe_expand)
    t_knn += time.perf_counter() - t
    t = time.perf_counter()
    w = np.power(Dm, qe_alpha)
    y = np.einsum("nm,nmd->nd", w, xn[Im])
    y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-9)
    out[s:e] = y
    t_comb += time.perf_counter() - t
t_tot = time.perf_counter() - t0
c_loop = time.process_time() - c0 - c_prep
np.save(sys.argv[5], out)
print(json.dumps({"rows": rows, "n": n, "prep_s": t_prep, "knn_s": t_knn, "combine_s": t_comb,
                  "total_s": t_tot, "cpu_prep_s": c_prep, "cpu_loop_s": c_loop,
                  "threads": faiss.omp_get_max_threads()}))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-expand", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=3.0)
    ap.add_argument("--faiss-rows", type=int, default=20000,
                    help="rows faiss expands (0: all); its time is extrapolated to n")
    ap.add_argument("--data", help="use this .npy instead of generating the synthetic matrix")
    a = ap.parse_args()
    binary = bl.binary()
    with tempfile.TemporaryDirectory() as tmp:
        data = a.data or bl.database_npy(a.n, a.d, a.seed)
        n = np.load(data, mmap_mode="r").shape[0]
        fout, oout = os.path.join(tmp, "faiss.npy"), os.path.join(tmp, "ours.npy")

        def run_faiss():
            return bl.faiss_python(FAISS, data, a.faiss_rows, a.num_expand, a.alpha, fout)

        load0 = os.getloadavg()
        f1 = run_faiss()
        load1 = os.getloadavg()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        o = json.loads(subprocess.run(
            [binary, "expand", data, "-o", oout, "--num-expand", str(a.num_expand), "--alpha", str(a.alpha),
             "--device", "cpu", "--json", "-q"], check=True, capture_output=True, text=True,
            env=bl.ours_env()).stdout)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        ours_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        load2 = os.getloadavg()
        f2 = run_faiss()
        load3 = os.getloadavg()
        f = min(f1, f2, key=lambda r: r["total_s"])
        fy = np.load(fout)
        oy = np.load(oout, mmap_mode="r")[:len(fy)]
        cos = np.einsum("nd,nd->n", fy.astype(np.float64), oy.astype(np.float64))
        maxdiff = float(np.abs(fy - oy).max())
    scale = n / f["rows"]
    faiss_all = f["prep_s"] + (f["knn_s"] + f["combine_s"]) * scale
    ours = o["seconds"]["total"]
    faiss_cpu = f["cpu_prep_s"] + f["cpu_loop_s"] * scale
    print(json.dumps({
        "n": n, "d": a.d, "num_expand": a.num_expand, "alpha": a.alpha,
        "faiss_rows": f["rows"], "faiss_extrapolated": f["rows"] < n,
        "faiss_s": round(faiss_all, 2), "faiss_knn_s": round(f["knn_s"] * scale, 2),
        "faiss_combine_s": round(f["combine_s"] * scale, 2),
        "ours_s": round(ours, 2), "ours_knn_s": round(o["seconds"]["knn"], 2),
        "ours_weighted_sum_s": round(o["seconds"]["weighted_sum"], 2),
        "speedup": round(faiss_all / ours, 2),
        # CPU seconds (all threads): less sensitive to other processes on a
        # shared machine than wall time. Ours is the whole process (load and
        # write included), faiss's the expansion alone.
        "faiss_cpu_s": round(faiss_cpu, 1), "ours_cpu_s": round(ours_cpu, 1),
        "cpu_speedup": round(faiss_cpu / ours_cpu, 2),
        "rows_compared": len(fy), "min_cos_ours_vs_faiss": round(float(cos.min()), 6),
        "max_abs_diff": maxdiff, "backend": o["backend"]["name"],
        "faiss_threads": f["threads"], "faiss_total_s_runs": [round(f1["total_s"], 2), round(f2["total_s"], 2)],
        "loadavg_1min": {"start": load0[0], "after_faiss_1": load1[0], "after_ours": load2[0],
                         "after_faiss_2": load3[0]},
    }))


if __name__ == "__main__":
    main()
