#!/usr/bin/env python3
"""faiss side of the rvc-index interop tests (tests/faiss_interop.rs).

    faiss_helper.py check
        exit 0 and print the faiss version if faiss and numpy import.
    faiss_helper.py gen OUTDIR
        build indexes with faiss, write them to OUTDIR/<name>.index, and write
        OUTDIR/manifest.json describing what each file must contain
        (including <name>.recon.npy: reconstruct_n(0, ntotal) of the index in
        memory, before it was written).
    faiss_helper.py time-read FILE [REPS]
        time faiss.read_index(FILE) (benches/faiss_read.rs times ours).
    faiss_helper.py verify FILE...
        load each file with faiss and check its structure through the faiss
        API (header, quantizer, inverted lists, ids, PQ and fast-scan
        parameters; see `verify_index`), then that faiss writes the loaded
        index back to the very same bytes. Prints "FILE: OK" or the problems
        (one per line, indented); exit status 1 if any file has a problem.
    faiss_helper.py rewrite JOBS.json
        JOBS.json: [{"in": path, "out": path, "recon": npy path or null}, ...].
        For each job: faiss.read_index(in), faiss.write_index(out), then check
        faiss' view of the index against "recon" (the vectors rvc-index says
        the file holds) and run a small search. Prints a JSON list of results.

Apart from `verify`, nothing here is timed or asserted; the Rust tests compare.
"""

import json
import os
import sys

import faiss
import numpy as np


def metric_name(mt):
    return {faiss.METRIC_L2: "L2", faiss.METRIC_INNER_PRODUCT: "InnerProduct"}.get(mt, str(mt))


def ivf_of(idx):
    idx = faiss.downcast_index(idx)
    if isinstance(idx, faiss.IndexRefine):
        return faiss.downcast_index(idx.base_index)
    return idx


def describe(idx):
    """Fields rvc-index must read back from the file."""
    idx = faiss.downcast_index(idx)
    e = {"d": idx.d, "ntotal": idx.ntotal, "metric": metric_name(idx.metric_type),
         "is_trained": bool(idx.is_trained)}
    chain = []
    node = idx
    if isinstance(node, faiss.IndexRefine):
        chain.append("IxRF")
        e["k_factor"] = float(node.k_factor)
        node = faiss.downcast_index(node.base_index)
    if isinstance(node, faiss.IndexIVF):
        chain.append("IwPf" if isinstance(node, faiss.IndexIVFPQFastScan) else "IwFl")
        chain.append("IxF2" if node.metric_type == faiss.METRIC_L2 else "IxFI")
        e["nlist"] = node.nlist
        e["nprobe"] = node.nprobe
        e["list_sizes"] = [int(node.invlists.list_size(i)) for i in range(node.nlist)]
        e["direct_map"] = {0: "NoMap", 1: "Array", 2: "Hashtable"}[node.direct_map.type]
        if isinstance(node, faiss.IndexIVFPQFastScan):
            e["M"] = node.pq.M
            e["nbits"] = node.pq.nbits
            e["bbs"] = node.bbs
            e["by_residual"] = bool(node.by_residual)
    else:
        chain.append("IxF2" if node.metric_type == faiss.METRIC_L2 else "IxFI")
    e["type_chain"] = chain
    return e


def gen(outdir):
    faiss.omp_set_num_threads(1)  # tiny data: threads only add overhead
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.default_rng(1234)
    cases = []

    def emit(name, idx, recon=True, unsupported=None, note=""):
        path = os.path.join(outdir, name + ".index")
        faiss.write_index(idx, path)
        case = {"name": name, "file": path, "note": note}
        if unsupported:
            if unsupported == "fourcc":   # the file's own fourcc must be named
                with open(path, "rb") as f:
                    unsupported = f.read(4).decode("latin-1")
            case["unsupported"] = unsupported
        else:
            case["expect"] = describe(idx)
            if recon:
                rp = os.path.join(outdir, name + ".recon.npy")
                np.save(rp, np.ascontiguousarray(idx.reconstruct_n(0, idx.ntotal), dtype="float32"))
                case["recon"] = rp
        cases.append(case)

    d = 8
    xt = rng.standard_normal((1200, d)).astype("float32")
    xb = xt[:100]
    for mt in (faiss.METRIC_L2, faiss.METRIC_INNER_PRODUCT):
        m = metric_name(mt)
        idx = faiss.index_factory(d, "Flat", mt)
        emit("flat_%s_empty" % m, idx)
        idx.add(xb[:5])
        emit("flat_%s" % m, idx)

        idx = faiss.index_factory(d, "IVF4,Flat", mt)
        emit("ivfflat_%s_untrained" % m, idx)
        idx.train(xt)
        emit("ivfflat_%s_trained" % m, idx)
        for i in range(0, len(xb), 32):       # several add() calls, like RVC's batches
            idx.add(xb[i:i + 32])
        emit("ivfflat_%s_added" % m, idx)
        idx.nprobe = 3
        emit("ivfflat_%s_nprobe3" % m, idx)
        idx.make_direct_map(True)
        emit("ivfflat_%s_dmap_array" % m, idx)

        for key in ("IVF3,PQ4x4fs", "IVF3,PQ4x4fsr", "IVF3,PQ4x4fs,RFlat", "IVF3,PQ4x4fs_64,RFlat"):
            idx = faiss.index_factory(d, key, mt)
            ivf_of(idx).nprobe = 1
            idx.train(xt)
            tag = key.replace("IVF3,", "").replace(",", "_").lower()
            emit("%s_%s_trained" % (tag, m), idx)
            for i in range(0, len(xb), 32):
                idx.add(xb[i:i + 32])
            emit("%s_%s_added" % (tag, m), idx)
        idx = faiss.index_factory(d, "IVF3,PQ4x4fs,RFlat", mt)
        idx.train(xt)
        idx.add(xb)
        idx.k_factor = 4.0
        ivf_of(idx).nprobe = 2
        emit("pq4x4fs_rflat_%s_k4" % m, idx)

    # odd M (M2 = M + 1), several blocks per list, IVF-Flat with many lists
    x10 = rng.standard_normal((2000, 10)).astype("float32")
    idx = faiss.index_factory(10, "IVF4,PQ5x4fs")
    idx.train(x10)
    idx.add(x10[:300])
    emit("pq5x4fs_oddM_L2", idx)
    idx = faiss.index_factory(10, "IVF4,PQ5x4fsr,RFlat", faiss.METRIC_INNER_PRODUCT)
    idx.train(x10)
    idx.add(x10[:300])
    emit("pq5x4fsr_oddM_rflat_InnerProduct", idx)
    x32 = rng.standard_normal((3000, 32)).astype("float32")
    idx = faiss.index_factory(32, "IVF40,Flat")
    idx.train(x32)
    for i in range(0, 3000, 1000):
        idx.add(x32[i:i + 1000])
    emit("ivfflat_L2_nlist40_d32", idx)
    idx = faiss.index_factory(32, "IVF16,PQ16x4fs,RFlat")
    idx.train(x32)
    idx.add(x32)
    emit("pq16x4fs_rflat_L2_d32", idx)

    # the full/sparse size-table rule at its boundary, and a mostly empty index
    for nlist, n_non0 in ((8, 1), (4, 2), (4, 3), (8, 5)):
        idx = faiss.index_factory(d, "IVF%d,Flat" % nlist)
        idx.train(xt)
        _, a = idx.quantizer.search(xb, 1)
        for c in range(n_non0):
            idx.add(xb[a[:, 0] == c][:3])
        emit("ivfflat_L2_nlist%d_nonempty%d" % (nlist, n_non0), idx)

    # things rvc-index must refuse with "unsupported: <fourcc>"
    idx = faiss.index_factory(d, "IVF2,Flat")
    idx.train(xt)
    idx.set_direct_map_type(faiss.DirectMap.Hashtable)
    idx.add_with_ids(xb[:4], np.array([100, 7, 55, 3], dtype="int64"))
    emit("ivfflat_dmap_hashtable", idx, unsupported="Hashtable")
    idx = faiss.index_factory(d, "IVF2,PQ4x4")
    idx.train(xt)
    emit("ivfpq_plain", idx, unsupported="fourcc")
    idx = faiss.index_factory(d, "PQ4x4")
    idx.train(xt)
    emit("pq_plain", idx, unsupported="fourcc")
    idx = faiss.index_factory(d, "SQ8")
    idx.train(xt)
    emit("sq8", idx, unsupported="fourcc")
    idx = faiss.index_factory(d, "HNSW8")
    idx.add(xb[:20])
    emit("hnsw", idx, unsupported="fourcc")
    idx = faiss.IndexFlat(d, faiss.METRIC_L1)
    idx.add(xb[:3])
    emit("flat_L1", idx, unsupported="fourcc")
    idx = faiss.index_factory(d, "IVF2,Flat,RFlat")
    idx.train(xt)
    idx.add(xb[:10])
    # IxRF(IwFl) is supported too
    emit("ivfflat_rflat_L2", idx)
    idx = faiss.index_factory(d, "PCA4,IVF2,Flat")
    idx.train(xt)
    emit("pca_ivfflat", idx, unsupported="fourcc")

    manifest = {"faiss_version": faiss.__version__, "cases": cases}
    with open(os.path.join(outdir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


def fastscan_decode(base):
    """faiss' decode of a loaded IwPf's lists. faiss >= 1.10 cannot reconstruct
    an IwPf read from a file (fine quantizer not re-attached), so graft its
    lists onto a freshly built index."""
    d, nlist, M = base.d, base.nlist, base.pq.M
    quant = faiss.IndexFlat(d, base.metric_type)
    quant.add(base.quantizer.reconstruct_n(0, nlist))
    fresh = faiss.IndexIVFPQFastScan(quant, d, nlist, M, 4, base.metric_type, base.bbs)
    fresh.by_residual = base.by_residual
    fresh.pq = base.pq
    fresh.is_trained = True
    fresh.replace_invlists(base.invlists, False)
    fresh.ntotal = base.ntotal
    return fresh.reconstruct_n(0, fresh.ntotal)


def decodable_ids(ivf):
    """Ids faiss' per-entry fast-scan accessor decodes correctly: it ignores
    the 32-entry group inside a block, so with bbs > 32 only entries whose
    position in the block is < 32 come out right: entries are interleaved
    in groups of 32 inside a block)."""
    keep = np.zeros(ivf.ntotal, dtype=bool)
    for l in range(ivf.nlist):
        n = ivf.invlists.list_size(l)
        if n:
            ids = faiss.rev_swig_ptr(ivf.invlists.get_ids(l), n).copy()
            keep[ids[(np.arange(n) % ivf.bbs) < 32]] = True
    return keep


def rewrite(jobs_path):
    faiss.omp_set_num_threads(1)
    with open(jobs_path) as f:
        jobs = json.load(f)
    results = []
    for job in jobs:
        r = {"in": job["in"], "problems": []}
        P = r["problems"]
        try:
            owner = faiss.read_index(job["in"])   # keep: it owns the C++ object
            faiss.write_index(owner, job["out"])
            r["describe"] = describe(owner)
            idx = faiss.downcast_index(owner)
            ivf = ivf_of(idx)
            if job.get("recon"):
                want = np.load(job["recon"])
                if isinstance(idx, faiss.IndexIVFPQFastScan):
                    got = fastscan_decode(idx)
                else:
                    got = idx.reconstruct_n(0, idx.ntotal)
                if got.shape != want.shape:
                    P.append("reconstruct shape %s != %s" % (got.shape, want.shape))
                elif isinstance(idx, faiss.IndexIVFPQFastScan):
                    keep = decodable_ids(idx)
                    got, want = got[keep], want[keep]
                    if not np.allclose(got, want, atol=1e-5, rtol=1e-5):
                        P.append("faiss decode of the packed codes != rvc-index decode (max diff %g)"
                                 % float(np.abs(got - want).max()))
                elif not np.array_equal(got, want):
                    P.append("reconstruct_n differs from the vectors rvc-index wrote")
                if isinstance(idx, faiss.IndexRefine):
                    # the PQ codes inside, decoded by faiss, must be the PQ encodings
                    # rvc-index computed (compared through the base decode file)
                    if job.get("base_recon"):
                        bw = np.load(job["base_recon"])
                        if isinstance(ivf, faiss.IndexIVFPQFastScan):
                            keep = decodable_ids(ivf)
                            bg, bw = fastscan_decode(ivf)[keep], bw[keep]
                        else:
                            bg = ivf.reconstruct_n(0, ivf.ntotal)
                        if not np.allclose(bg, bw, atol=1e-5, rtol=1e-5):
                            P.append("base index decode differs")
            # search must work; for L2 with every list probed and exact distances
            # a stored vector finds itself first
            n = min(10, idx.ntotal)
            if n:
                q = want[:n] if job.get("recon") else None
                if q is not None:
                    if isinstance(ivf, faiss.IndexIVF):
                        ivf.nprobe = ivf.nlist
                    if isinstance(idx, faiss.IndexRefine):
                        idx.k_factor = float(max(1, idx.ntotal))
                    D, I = idx.search(np.ascontiguousarray(q), 1)
                    exact = not isinstance(idx, faiss.IndexIVFPQFastScan)
                    if exact and idx.metric_type == faiss.METRIC_L2:
                        if not np.array_equal(I[:, 0], np.arange(n)) and not np.allclose(D[:, 0], 0):
                            P.append("self-search top-1 ids %s" % I[:, 0].tolist())
                    if (I[:, 0] < 0).any() or (I[:, 0] >= idx.ntotal).any():
                        P.append("search returned ids out of range: %s" % I[:, 0].tolist())
        except Exception as e:  # noqa: BLE001 - reported to the Rust side
            P.append("faiss failed: %s: %s" % (type(e).__name__, e))
        results.append(r)
    json.dump(results, sys.stdout)


def verify_ivf(ivf, path, P):
    """Structure of an IndexIVF that a faithful writer must produce."""
    d, ntotal = ivf.d, ivf.ntotal
    q = faiss.downcast_index(ivf.quantizer)
    if not isinstance(q, faiss.IndexFlat):
        P.append("%s: quantizer is %s, not a flat index" % (path, type(q).__name__))
    if q.ntotal != ivf.nlist:
        P.append("%s: quantizer holds %d centroids, nlist is %d" % (path, q.ntotal, ivf.nlist))
    if q.d != d:
        P.append("%s: quantizer d %d != %d" % (path, q.d, d))
    if q.metric_type != ivf.metric_type:
        P.append("%s: quantizer metric differs from the index's" % path)
    if ivf.nprobe < 1:
        P.append("%s: nprobe %d < 1" % (path, ivf.nprobe))
    dm = ivf.direct_map.type
    if dm not in (faiss.DirectMap.NoMap, faiss.DirectMap.Array):
        P.append("%s: direct map type %d (only NoMap and Array keep ids = row numbers)" % (path, dm))
    if dm == faiss.DirectMap.Array and ivf.direct_map.array.size() != ntotal:
        P.append("%s: direct map has %d entries, ntotal %d" % (path, ivf.direct_map.array.size(), ntotal))
    inv = faiss.downcast_InvertedLists(ivf.invlists)
    if inv.nlist != ivf.nlist:
        P.append("%s: %d inverted lists, nlist %d" % (path, inv.nlist, ivf.nlist))
        return
    ids, unsorted = [], 0
    for l in range(inv.nlist):
        n = inv.list_size(l)
        if n:
            a = faiss.rev_swig_ptr(inv.get_ids(l), n).copy()
            unsorted += bool(np.any(np.diff(a) <= 0))
            ids.append(a)
    ids = np.concatenate(ids) if ids else np.empty(0, dtype=np.int64)
    if len(ids) != ntotal:
        P.append("%s: lists hold %d entries, ntotal %d" % (path, len(ids), ntotal))
    elif not np.array_equal(np.sort(ids), np.arange(ntotal)):
        P.append("%s: ids are not a permutation of 0..ntotal-1" % path)
    if unsorted:
        P.append("%s: %d lists are not in ascending id order" % (path, unsorted))
    if ntotal and not ivf.is_trained:
        P.append("%s: vectors stored but is_trained is false" % path)
    if isinstance(ivf, faiss.IndexIVFPQFastScan):
        pq, M = ivf.pq, ivf.pq.M
        if pq.d != d or M == 0 or d % M:
            P.append("%s: PQ d %d, M %d inconsistent with d %d" % (path, pq.d, M, d))
        if pq.nbits != 4:
            P.append("%s: fast-scan needs nbits 4, not %d" % (path, pq.nbits))
        if pq.centroids.size() != pq.d * (1 << pq.nbits):
            P.append("%s: %d PQ centroid values, expected d * 2^nbits" % (path, pq.centroids.size()))
        if ivf.M2 != M + (M & 1):
            P.append("%s: M2 %d is not M rounded up to even" % (path, ivf.M2))
        if ivf.code_size != ivf.M2 // 2:
            P.append("%s: code_size %d != M2 / 2" % (path, ivf.code_size))
        if ivf.bbs <= 0 or ivf.bbs % 32:
            P.append("%s: bbs %d is not a positive multiple of 32" % (path, ivf.bbs))
        if not isinstance(inv, faiss.BlockInvertedLists):
            P.append("%s: fast-scan lists are %s, not blocks" % (path, type(inv).__name__))
        else:
            if inv.n_per_block != ivf.bbs:
                P.append("%s: n_per_block %d != bbs %d" % (path, inv.n_per_block, ivf.bbs))
            if inv.block_size != ivf.bbs * ivf.M2 // 2:
                P.append("%s: block_size %d != bbs * M2 / 2" % (path, inv.block_size))
    elif isinstance(ivf, faiss.IndexIVFFlat):
        if not isinstance(inv, faiss.ArrayInvertedLists):
            P.append("%s: IVF-Flat lists are %s, not arrays" % (path, type(inv).__name__))
        if inv.code_size != 4 * d or ivf.code_size != 4 * d:
            P.append("%s: code_size %d != 4 * d" % (path, inv.code_size))
    else:
        P.append("%s: unexpected IVF kind %s" % (path, type(ivf).__name__))


def verify_index(idx, path="index"):
    """Problems of a loaded index (an empty list: none)."""
    P = []
    idx = faiss.downcast_index(idx)
    if not 1 <= idx.d <= 1 << 20:
        P.append("%s: d %d outside [1, 2^20]" % (path, idx.d))
    if idx.ntotal < 0:
        P.append("%s: negative ntotal" % path)
    if idx.metric_type not in (faiss.METRIC_L2, faiss.METRIC_INNER_PRODUCT):
        P.append("%s: metric %d is neither L2 nor inner product" % (path, idx.metric_type))
    if isinstance(idx, faiss.IndexRefine):
        base = faiss.downcast_index(idx.base_index)
        ref = faiss.downcast_index(idx.refine_index)
        if not isinstance(ref, faiss.IndexFlat):
            P.append("%s: refine index is %s, not flat" % (path, type(ref).__name__))
        for name, sub in (("base", base), ("refine", ref)):
            if sub.ntotal != idx.ntotal or sub.d != idx.d or sub.metric_type != idx.metric_type:
                P.append("%s: %s index ntotal/d/metric differ from the refine wrapper" % (path, name))
        if not idx.k_factor >= 1:
            P.append("%s: k_factor %g < 1" % (path, idx.k_factor))
        P += verify_index(base, path + ".base")
    elif isinstance(idx, faiss.IndexIVF):
        verify_ivf(idx, path, P)
    elif isinstance(idx, faiss.IndexFlat):
        if faiss.vector_to_array(idx.codes).size != idx.ntotal * idx.d * 4:
            P.append("%s: flat storage size != ntotal * d floats" % path)
    else:
        P.append("%s: unexpected index kind %s" % (path, type(idx).__name__))
    return P


def verify(paths):
    bad = 0
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
            owner = faiss.read_index(path)
            P = verify_index(owner, os.path.basename(path))
            back = faiss.serialize_index(owner).tobytes()
            if back != data:
                at = next((i for i, (a, b) in enumerate(zip(back, data)) if a != b),
                          min(len(back), len(data)))
                P.append("faiss writes it back differently: %d bytes against %d, first "
                         "difference at byte %d" % (len(back), len(data), at))
        except Exception as e:  # noqa: BLE001 - reported, not raised
            P = ["faiss failed: %s: %s" % (type(e).__name__, e)]
        print("%s: %s" % (path, "OK" if not P else "%d problems" % len(P)))
        for p in P:
            print("  - " + p)
        bad += bool(P)
    return 1 if bad else 0


def time_read(path, reps):
    """Time faiss.read_index(path): prints min and median seconds over reps."""
    import time
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        idx = faiss.read_index(path)
        times.append(time.perf_counter() - t)
        del idx
    times.sort()
    size = os.path.getsize(path)
    print(json.dumps({"faiss": faiss.__version__, "bytes": size, "reps": reps,
                      "min_s": times[0], "median_s": times[len(times) // 2],
                      "GBps_min": size / times[0] / 1e9}))


def main(argv):
    if argv[:1] == ["time-read"] and len(argv) in (2, 3):
        time_read(argv[1], int(argv[2]) if len(argv) == 3 else 5)
        return 0
    if argv[:1] == ["check"]:
        print("faiss %s numpy %s" % (faiss.__version__, np.__version__))
        return 0
    if argv[:1] == ["gen"] and len(argv) == 2:
        gen(argv[1])
        return 0
    if argv[:1] == ["verify"] and len(argv) >= 2:
        return verify(argv[1:])
    if argv[:1] == ["rewrite"] and len(argv) == 2:
        rewrite(argv[1])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
