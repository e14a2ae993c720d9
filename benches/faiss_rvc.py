#!/usr/bin/env python3
"""RVC's index build with faiss, timed stage by stage: the faiss side of
benches/compare_faiss.py and benches/compare_train.py.

    python3 benches/faiss_rvc.py --data DIR_OR_NPY [--stages load,train,add,search]
                                 [--nprobe 1,4,16] [--json OUT]

Stages (what RVC's train_index does, plus the alternatives it mentions):
  load    np.load every .npy (sorted names), concatenate, RVC's shuffle; the
          first min(--queries, N/10) shuffled rows are held out as queries
  mbk     sklearn MiniBatchKMeans(10 000, batch_size=256·cores, init="random",
          compute_labels=False) when N > 200 000 (RVC then indexes the centres)
  exact   IndexFlatL2 search of the queries: the ground truth for recall
  train   index_factory(d, "IVF{nlist},Flat").train, nlist = min(16·√N, N/39)
  add     add in batches of 8192, then serialize (file size)
  search  search the queries at every --nprobe, recall against exact search
  pq      the same for "IVF{nlist},PQ{d/2}x4fs,RFlat"
  qe      α-query expansion: normalise, IndexFlatIP kNN (num_expand), weights =
          similarity**alpha, weighted sum, normalise; batches of 4096
search and pq need exact; add needs train. Prints one JSON object (stdout or
--json). Runs faiss in this process: start it through benchlib.faiss_script
(or ensure_faiss_env here) for OPENBLAS_CORETYPE=SkylakeX.
"""
import argparse
import json
import os
import resource
import sys
import time

import benchlib as bl

STAGES = ["load", "mbk", "exact", "train", "add", "search", "pq", "qe"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="folder of .npy files or one .npy")
    p.add_argument("--stages", default="load,mbk,exact,train,add,search,pq,qe")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--nprobe", default="1")
    p.add_argument("-k", "--k", type=int, default=8)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--qe-expand", type=int, default=16)
    p.add_argument("--qe-alpha", type=float, default=3.0)
    p.add_argument("--qe-rows", type=int, default=None,
                   help="expand only the first M rows (kNN still over all) and extrapolate")
    p.add_argument("--no-objective", action="store_true", help="skip the k-means objectives")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    s = {x for x in a.stages.split(",") if x}
    bad = s - set(STAGES)
    if bad:
        p.error(f"unknown stages {sorted(bad)}; choose from {STAGES}")
    if {"search", "pq"} & s:
        s.add("exact")
    if "search" in s or "add" in s:
        s |= {"train", "add"}
    a.stage_set = s
    a.nprobes = [int(v) for v in a.nprobe.split(",")]
    return a


def build(faiss, db, factory, nprobes, xq, gt, k, objective):
    """Train, add, serialize and search one index kind."""
    n, d = db.shape
    index = faiss.index_factory(d, factory)
    ivf = faiss.extract_index_ivf(index)
    with bl.Meter() as mt:
        index.train(db)
    with bl.Meter() as ma:
        for lo in range(0, n, bl.RVC_ADD_BATCH):
            index.add(db[lo:lo + bl.RVC_ADD_BATCH])
    out = {"factory": factory, "train_s": round(mt.wall, 3), "train": mt.info(),
           "add_s": round(ma.wall, 3), "add": ma.info(), "ntotal": int(index.ntotal),
           "index_bytes": int(faiss.serialize_index(index).nbytes)}
    if objective:
        cent = ivf.quantizer.reconstruct_n(0, ivf.nlist)
        out["objective_mean_per_row"] = bl.exact_objective(db, cent) / n
    if xq is not None:
        rows = []
        for p in nprobes:
            ivf.nprobe = p
            with bl.Meter() as ms:
                _, I = index.search(xq, k)
            rows.append({"nprobe": p, "search_s": round(ms.wall, 4), **ms.info(),
                         **bl.recall_stats(I, gt, k)})
        out["searches"] = rows
        out.update({key: v for key, v in rows[0].items() if key != "nprobe"})
    del index
    return out


def expand(faiss, db, a):
    import numpy as np
    n, d = db.shape
    rows = min(a.qe_rows or n, n)
    m = bl.Meter().__enter__()
    t = time.perf_counter()
    xn = (db / np.maximum(np.linalg.norm(db, axis=1, keepdims=True), 1e-9)).astype(np.float32)
    ip = faiss.IndexFlatIP(d)
    ip.add(xn)
    prep = time.perf_counter() - t
    knn = comb = 0.0
    for lo in range(0, rows, 4096):
        hi = min(rows, lo + 4096)
        t = time.perf_counter()
        D, I = ip.search(xn[lo:hi], a.qe_expand)
        knn += time.perf_counter() - t
        t = time.perf_counter()
        y = np.einsum("nm,nmd->nd", np.power(D, a.qe_alpha), xn[I])
        y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-9)
        comb += time.perf_counter() - t
    m.__exit__(None, None, None)
    q = {"rows_expanded": rows, "num_expand": a.qe_expand, "alpha": a.qe_alpha,
         "prep_s": round(prep, 3), "knn_s": round(knn, 3), "combine_s": round(comb, 3),
         "total_s": round(m.wall, 3), **m.info()}
    if rows < n:
        q["extrapolated_total_s"] = round(prep + (knn + comb) * n / rows, 2)
    return q


def main(argv=None):
    a = parse_args(argv)
    import faiss
    import numpy as np
    if a.threads:
        faiss.omp_set_num_threads(a.threads)
    S = a.stage_set
    res = {"tool": "benches/faiss_rvc.py", "versions": {"faiss": faiss.__version__,
                                                        "numpy": np.__version__},
           "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
           "threads": faiss.omp_get_max_threads(), "machine": bl.machine(), "stages": {}}
    st = res["stages"]
    files = bl.list_npy(a.data)
    if not files:
        sys.exit(f"{a.data}: no .npy files")
    with bl.Meter() as ml:
        x = bl.load_concat(files)
        x = bl.rvc_shuffle(x, a.seed)
    st["load"] = {"total_s": round(ml.wall, 4), "files": len(files), **ml.info()}
    nq = min(a.queries, x.shape[0] // 10)
    xq, db = x[:nq].copy(), np.ascontiguousarray(x[nq:])
    del x
    n_raw, d = db.shape
    res["data"] = {"source": os.path.abspath(a.data), "n_raw": n_raw, "d": d, "n_queries": nq}
    bl.log(f"{n_raw} x {d} loaded in {ml.wall:.2f} s, {nq} queries")

    if "mbk" in S and n_raw > bl.RVC_REDUCE_THRESHOLD:
        from sklearn.cluster import MiniBatchKMeans
        bs = 256 * (os.cpu_count() or 1)
        mbk = MiniBatchKMeans(n_clusters=bl.RVC_MBK_CLUSTERS, batch_size=bs, init="random",
                              compute_labels=False, random_state=a.seed, verbose=False)
        bl.log(f"MiniBatchKMeans {n_raw} -> {bl.RVC_MBK_CLUSTERS} (batch {bs})")
        with bl.Meter() as mm:
            mbk.fit(db)
        c = np.ascontiguousarray(mbk.cluster_centers_, dtype=np.float32)
        st["mbk"] = {"applied": True, "fit_s": round(mm.wall, 3), **mm.info(), "batch_size": bs,
                     "n_steps": int(mbk.n_steps_)}
        if not a.no_objective:
            st["mbk"]["objective_mean_per_row"] = bl.exact_objective(db, c) / n_raw
        db = c
    else:
        st["mbk"] = {"applied": False}
    n = db.shape[0]
    nlist = bl.rvc_nlist(n)
    res["data"]["n_db"] = n
    res["nlist"] = nlist

    gt = None
    if "exact" in S:
        flat = faiss.IndexFlatL2(d)
        flat.add(db)
        with bl.Meter() as me:
            _, gt = flat.search(xq, a.k)
        st["exact_search"] = {"search_s": round(me.wall, 3), **me.info()}
        del flat
    use_q = xq if gt is not None else None
    if "train" in S:
        bl.log(f"IVF{nlist},Flat")
        tr = build(faiss, db, f"IVF{nlist},Flat", a.nprobes, use_q if "search" in S else None,
                      gt, a.k, not a.no_objective)
        st["train"] = {k: tr[k] for k in ("factory", "train_s", "train") if k in tr}
        if "objective_mean_per_row" in tr:
            st["train"]["objective_mean_per_row"] = tr["objective_mean_per_row"]
        st["add"] = {k: tr[k] for k in ("add_s", "add", "ntotal", "index_bytes")}
        if "searches" in tr:
            st["search"] = {k: v for k, v in tr.items() if k.startswith(("search", "recall"))
                            or k in ("cpu_s", "others_cpu_frac")}
    if "pq" in S:
        fac = f"IVF{nlist},PQ{d // 2}x4fs,RFlat"
        bl.log(fac)
        st["pq"] = build(faiss, db, fac, a.nprobes, use_q, gt, a.k, False)
    if "qe" in S:
        bl.log("alpha-QE")
        st["qe"] = expand(faiss, db, a)
    res["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    if a.json:
        bl.write_json(a.json, res)
    print(json.dumps(res, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
