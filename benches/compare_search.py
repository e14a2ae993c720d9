#!/usr/bin/env python3
"""`rvc-index search` against faiss on the same index files, and the build of
IVF1024,PQ384x4fs,RFlat by both.

Data: benches/rvc_synthetic.py (the baseline harness's generator): --n
database rows and --queries query rows (another stream), cached as .npy in the
bench cache; indexes in --work. Every index is built by faiss (faiss at its
best: OPENBLAS_CORETYPE=SkylakeX where the CPU has AVX-512, set for its
commands only), then searched by faiss
and by `rvc-index search --device cpu --json` with k = 8 at each nprobe. The
IVF-Flat and IVF-PQ indexes with the same nlist share one trained coarse
quantizer (trained once by faiss). Prints seconds (best of --repeat), the ratio
faiss / ours (> 1: we are faster) and how many of our ids equal faiss's.

    python3 benches/compare_search.py                      # 200k x 768, 10 000 queries
    python3 benches/compare_search.py --n 50000 --factories IVF1024,Flat --no-build

Needs numpy, faiss-cpu and a release build (`cargo build --release`).
"""
import argparse
import json
import os
import subprocess

import benchlib as bl
FACTORIES = "IVF5128,Flat;IVF5128,PQ384x4fs,RFlat;IVF1024,Flat;IVF1024,PQ384x4fs,RFlat"

# Runs in a child python with OPENBLAS_CORETYPE set (it must be set before faiss loads).
FAISS_CHILD = r"""
import json, sys, time, numpy as np, faiss
cmd = sys.argv[1]
if cmd == "build":
    db, factory, out, qpath = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    x = np.load(db)
    t0 = time.perf_counter()
    ix = faiss.index_factory(x.shape[1], factory)
    ivf = faiss.extract_index_ivf(ix)
    if qpath != "-":  # reuse a trained coarse quantizer
        ivf.quantizer.add(np.load(qpath))
    ix.train(x); ix.add(x)
    t = time.perf_counter() - t0
    faiss.write_index(ix, out)
    if qpath == "-":
        c = ivf.quantizer.reconstruct_n(0, ivf.nlist)
        np.save(out + ".centroids.npy", c)
    print(json.dumps({"build_s": t}))
else:
    index, q, k, nprobe, out, repeat = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7])
    ix = faiss.read_index(index); xq = np.load(q)
    faiss.extract_index_ivf(ix).nprobe = nprobe
    best = 1e30
    for _ in range(repeat):
        t0 = time.perf_counter(); D, I = ix.search(xq, k); best = min(best, time.perf_counter() - t0)
    np.save(out, I)
    print(json.dumps({"search_s": best}))
"""


log = bl.log
BIN = None


def faiss_child(*args):
    return bl.faiss_python(FAISS_CHILD, *args)


def ours(*args):
    r = subprocess.run([BIN, *map(str, args), "--json", "-q"], check=True,
                       capture_output=True, text=True, env=bl.ours_env())
    return json.loads(r.stdout)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-k", type=int, default=8)
    p.add_argument("--nprobe", default="1,16")
    p.add_argument("--factories", default=FACTORIES, help="';'-separated factory strings")
    p.add_argument("--repeat", type=int, default=2, help="searches per side, best kept")
    p.add_argument("--work", default="/tmp/rvc_compare_search")
    p.add_argument("--no-build", action="store_true", help="skip the build comparison")
    p.add_argument("--build-factory", default="IVF1024,PQ384x4fs,RFlat")
    p.add_argument("--bin", default=None, help="default: target/release/rvc-index")
    a = p.parse_args()
    import numpy as np

    global BIN
    BIN = bl.binary(path=a.bin)
    os.makedirs(a.work, exist_ok=True)
    db, q = bl.database_npy(a.n, a.d, a.seed), bl.queries_npy(a.queries, a.d, a.seed)
    rows = []
    centroids = {}
    for fac in [f for f in a.factories.split(";") if f]:
        nlist = fac.split(",")[0]
        path = os.path.join(a.work, fac.replace(",", "_") + f"_n{a.n}_d{a.d}_s{a.seed}.index")
        if not os.path.exists(path):
            log(f"faiss builds {fac}")
            faiss_child("build", db, fac, path, centroids.get(nlist, "-"))
        if os.path.exists(path + ".centroids.npy"):
            centroids.setdefault(nlist, path + ".centroids.npy")
        for nprobe in [int(v) for v in a.nprobe.split(",")]:
            fi = os.path.join(a.work, "faiss_ids.npy")
            load = bl.loadavg()
            f = faiss_child("search", path, q, a.k, nprobe, fi, a.repeat)
            best, stages = 1e30, None
            for _ in range(a.repeat):
                o = ours("search", path, q, "-k", a.k, "--nprobe", nprobe,
                         "-o", os.path.join(a.work, "ours"), "--device", "cpu")
                if o["search_seconds"] < best:
                    best, stages = o["search_seconds"], o.get("stage_seconds")
            same = float((np.load(os.path.join(a.work, "ours_ids.npy")) == np.load(fi)).mean())
            row = {"factory": fac, "nprobe": nprobe, "faiss_s": f["search_s"], "ours_s": best,
                   "ratio": f["search_s"] / best, "faiss_qps": a.queries / f["search_s"],
                   "ours_qps": a.queries / best, "ours_stages": stages, "ids_equal": same,
                   "load1": load}
            rows.append(row)
            log(json.dumps(row))
    print(f"\nsearch, {a.queries} queries, k={a.k}, {a.n} x {a.d} (ratio = faiss s / ours s)")
    print(f"{'factory':28} {'nprobe':>6} {'faiss s':>9} {'ours s':>9} {'ratio':>7} "
          f"{'coarse':>7} {'scan':>7} {'refine':>7} {'ids=':>6} {'load':>5}")
    for r in rows:
        st = r["ours_stages"] or {}
        print(f"{r['factory']:28} {r['nprobe']:>6} {r['faiss_s']:>9.3f} {r['ours_s']:>9.3f} "
              f"{r['ratio']:>7.2f} {st.get('coarse', 0):>7.3f} {st.get('scan', 0):>7.3f} "
              f"{st.get('refine', 0):>7.3f} {r['ids_equal']:>6.3f} {r['load1']:>5.2f}")

    if not a.no_build:
        fac = a.build_factory
        log(f"build {fac}: faiss")
        load_f = bl.loadavg()
        f = faiss_child("build", db, fac, os.path.join(a.work, "build_faiss.index"), "-")
        log(f"build {fac}: ours")
        load_o = bl.loadavg()
        o = ours("build", db, "--factory", fac, "-o", os.path.join(a.work, "build_ours.index"),
                 "--device", "cpu")
        print(f"\nbuild {fac} on {a.n} x {a.d}: faiss {f['build_s']:.2f} s (load {load_f:.2f}), "
              f"ours {o['build_seconds']:.2f} s (load {load_o:.2f}), "
              f"ratio {f['build_s'] / o['build_seconds']:.2f}")
        print("ours by stage:", json.dumps(o.get("stage_seconds")))


if __name__ == "__main__":
    main()
