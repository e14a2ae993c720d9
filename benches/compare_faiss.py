#!/usr/bin/env python3
"""`rvc-index bench` against faiss running RVC's pipeline, stage by stage.

Runs benches/faiss_rvc.py (faiss at its best: OPENBLAS_CORETYPE=SkylakeX where
the CPU has AVX-512, set for its commands only) and `rvc-index bench` on the
same .npy files with the same settings, alternately when --rounds > 1, and
prints every stage with both figures (medians over the rounds) and the ratio
faiss / ours (> 1: we are faster). Also writes a PNG chart: seconds per stage
side by side, and recall against nprobe.

    python3 benches/compare_faiss.py --n 50000 --d 768
    python3 benches/compare_faiss.py --n 200000 --d 768 --stages load,train,add,search,pq

Data: the synthetic set of benches/rvc_synthetic.py (the baseline harness's
generator; written once as utterance files into the bench cache), or --data
(a folder of .npy files or one .npy). Both tools load the same files and hold
out the first min(--queries, N/10) shuffled rows as queries (each with its
own seeded shuffle, so the query sets differ but are drawn alike). Both
search at every --nprobe after one training per index kind. Needs numpy,
faiss-cpu, scikit-learn, matplotlib and a release build (`cargo build --release`).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import benchlib as bl

log = bl.log


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--n", type=int, default=50_000)
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="real data instead of the synthetic set")
    p.add_argument("--queries", type=int, default=10_000)
    p.add_argument("--nprobe", default="1,4,16")
    p.add_argument("-k", type=int, default=8)
    p.add_argument("--qe-rows", type=int, default=None)
    p.add_argument("--stages", default="load,mbk,train,add,search,pq,qe",
                   help="faiss stages (see benches/faiss_rvc.py); ours follow")
    p.add_argument("--rounds", type=int, default=1,
                   help="faiss and ours alternately this many times; medians are shown")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bin", default=None, help="default: target/release/rvc-index")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=os.path.join(bl.ROOT, "target", "compare_faiss"),
                   help="folder for the JSON files and the chart")
    return p.parse_args()


# ---------------------------------------------------------------------------
# faiss side
# ---------------------------------------------------------------------------

def run_faiss(a, data, out):
    stages = a.stages.split(",")
    if {"search", "pq"} & set(stages):
        stages.append("exact")
    args = ["--data", data, "--seed", a.seed, "--queries", a.queries, "--stages",
            ",".join(stages), "--nprobe", a.nprobe, "-k", a.k, "--threads", a.threads,
            "--json", out]
    if a.qe_rows:
        args += ["--qe-rows", a.qe_rows]
    log("faiss: faiss_rvc.py " + " ".join(map(str, args)))
    return bl.faiss_script("faiss_rvc.py", *args)


# ---------------------------------------------------------------------------
# our side
# ---------------------------------------------------------------------------

def run_ours(a, data, out):
    stages = [s for s in a.stages.split(",") if s in ("train", "add", "search", "qe")]
    if "pq" in a.stages.split(","):
        stages.append("search")
    ours = ",".join(sorted(set("expand" if s == "qe" else s for s in stages))) or "train"
    cmd = [a.bin, "bench", "--data", data, "--device", a.device, "--seed", str(a.seed),
           "--queries", str(a.queries), "--nprobe", a.nprobe, "-k", str(a.k),
           "--stages", ours, "--factory", "IVF{auto},Flat", "-q", "--json", out]
    if "pq" in a.stages.split(","):
        cmd += ["--factory", f"IVF{{auto}},PQ{a.d // 2}x4fs,RFlat"]
    if a.qe_rows:
        cmd += ["--qe-rows", str(a.qe_rows)]
    if "mbk" not in a.stages.split(","):
        cmd += ["--compress", "off"]
    log("ours: " + " ".join(cmd[1:]))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=bl.ours_env())
    with open(out) as f:
        return json.load(f)


# ---------------------------------------------------------------------------
# side by side
# ---------------------------------------------------------------------------

def ours_stage(r, name, factory_prefix=None, nprobe=None):
    for s in r["stages"]:
        if s["name"] != name:
            continue
        if factory_prefix is not None and not (s["factory"] or "").endswith(factory_prefix):
            continue
        if nprobe is not None and s["nprobe"] != nprobe:
            continue
        return s
    return None


def rows_of(f, o, nprobe0, k):
    """(label, faiss seconds, ours seconds, extra) for every stage both ran."""
    st = f["stages"]
    out = []

    def add(label, fs, os_):
        if fs is not None and os_ is not None:
            out.append((label, fs, os_))

    def osec(name, fac=None, nprobe=None):
        s = ours_stage(o, name, fac, nprobe)
        return None if s is None else s["min_s"]

    add("load", st.get("load", {}).get("total_s"), osec("load"))
    if st.get("mbk", {}).get("applied"):
        add("compress (mbk)", st["mbk"].get("fit_s"), osec("compress"))
    add("exact search", st.get("exact_search", {}).get("search_s"), osec("exact"))
    if "train" in st:
        add("IVF-Flat train", st["train"]["train_s"], osec("train", ",Flat"))
    if "add" in st:
        add("IVF-Flat add", st["add"]["add_s"], osec("add", ",Flat"))
        t, a = osec("train", ",Flat"), osec("add", ",Flat")
        if t is not None and a is not None:
            add("IVF-Flat train+add", st["train"]["train_s"] + st["add"]["add_s"], t + a)
    if "search" in st:
        add(f"IVF-Flat search np{nprobe0}", st["search"]["search_s"],
            osec("search", ",Flat", nprobe0))
    if "pq" in st:
        pq = st["pq"]
        t, tp = osec("train", ",RFlat"), osec("train_pq", ",RFlat")
        add("IVF-PQ train", pq["train_s"], None if t is None or tp is None else t + tp)
        add("IVF-PQ add", pq["add_s"], osec("add", ",RFlat"))
        add(f"IVF-PQ+RFlat search np{nprobe0}", pq["search_s"], osec("search", ",RFlat", nprobe0))
    if "qe" in st:
        q = st["qe"]
        add("alpha-QE expand" + (f" ({q['rows_expanded']} rows)" if "extrapolated_total_s" in q
                                 else ""), q["total_s"], osec("expand"))
    return out


def median_rows(rounds):
    labels = [r[0] for r in rounds[0]]
    res = []
    for lab in labels:
        fs = [dict((x[0], x) for x in r)[lab][1] for r in rounds if lab in dict((x[0], x) for x in r)]
        os_ = [dict((x[0], x) for x in r)[lab][2] for r in rounds if lab in dict((x[0], x) for x in r)]
        res.append((lab, statistics.median(fs), statistics.median(os_)))
    return res


def quality(f, o, nprobe0, k):
    st = f["stages"]
    q = []

    def rec(s, key):
        return None if s is None or s.get("recall") is None else s["recall"][key]

    if "search" in st:
        s = ours_stage(o, "search", ",Flat", nprobe0)
        q.append((f"IVF-Flat np{nprobe0} R1@1", st["search"]["recall_1at1"], rec(s, "r1_at_1")))
        q.append((f"IVF-Flat np{nprobe0} R{k}@{k}", st["search"][f"recall_{k}at{k}"],
                  rec(s, "rk_at_k")))
    if "pq" in st:
        s = ours_stage(o, "search", ",RFlat", nprobe0)
        q.append((f"IVF-PQ np{nprobe0} R1@1", st["pq"]["recall_1at1"], rec(s, "r1_at_1")))
        q.append((f"IVF-PQ np{nprobe0} R{k}@{k}", st["pq"][f"recall_{k}at{k}"], rec(s, "rk_at_k")))
    if "train" in st and st["train"].get("objective_mean_per_row"):
        s = ours_stage(o, "train", ",Flat")
        q.append(("IVF-Flat objective/row", st["train"]["objective_mean_per_row"],
                  s and s["objective_per_row"]))
    if st.get("mbk", {}).get("objective_mean_per_row"):
        s = ours_stage(o, "compress")
        q.append(("compress objective/row", st["mbk"]["objective_mean_per_row"],
                  s and s["objective_per_row"]))
    if "add" in st:
        s = ours_stage(o, "serialize", ",Flat")
        q.append(("IVF-Flat file MiB", st["add"]["index_bytes"] / 2**20,
                  s and s["index_bytes"] / 2**20))
    if "pq" in st:
        s = ours_stage(o, "serialize", ",RFlat")
        q.append(("IVF-PQ+RFlat file MiB", st["pq"]["index_bytes"] / 2**20,
                  s and s["index_bytes"] / 2**20))
    q.append(("peak memory GiB", f.get("peak_rss_gib"),
              o["peak_rss_bytes"] / 2**30 if o.get("peak_rss_bytes") else None))
    return q


def chart(rows, sweep, o, k, path, title):
    plt = bl.pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.5))
    labels = [r[0] for r in rows]
    y = range(len(rows))
    h = 0.4
    ax1.barh([i - h / 2 for i in y], [r[1] for r in rows], h, label="faiss")
    ax1.barh([i + h / 2 for i in y], [r[2] for r in rows], h, label="rvc-index bench")
    ax1.set_yticks(list(y))
    ax1.set_yticklabels(labels, fontsize=8)
    ax1.invert_yaxis()
    ax1.set_xscale("log")
    ax1.set_xlabel("seconds (log)")
    ax1.set_title("time per stage")
    ax1.legend(fontsize=8)
    for kind, suffix, style in (("flat", ",Flat", "o"), ("pq", ",RFlat", "s")):
        ours = [s for s in o["stages"] if s["name"] == "search"
                and (s["factory"] or "").endswith(suffix) and s["nprobe"] is not None]
        if ours:
            ax2.plot([s["nprobe"] for s in ours], [s["recall"]["r1_at_1"] for s in ours],
                     "-" + style, label=f"ours {kind} R1@1")
            ax2.plot([s["nprobe"] for s in ours], [s["recall"]["rk_at_k"] for s in ours],
                     ":" + style, label=f"ours {kind} R{k}@{k}")
        if sweep and kind in sweep:
            fs = sweep[kind]["searches"]
            ax2.plot([s["nprobe"] for s in fs], [s["recall_1at1"] for s in fs],
                     "--" + style, label=f"faiss {kind} R1@1")
            ax2.plot([s["nprobe"] for s in fs], [s[f"recall_{k}at{k}"] for s in fs],
                     "-." + style, label=f"faiss {kind} R{k}@{k}")
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("nprobe")
    ax2.set_ylabel("recall")
    ax2.set_title("recall vs nprobe (exact search as truth)")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def fmt(v, prec=3):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{prec}f}" if abs(v) < 1000 else f"{v:.1f}"
    return str(v)


def faiss_sweep(f):
    """faiss's searches at every nprobe, by index kind."""
    st = f["stages"]
    out = {}
    for kind, stage in (("flat", "search"), ("pq", "pq")):
        if "searches" in st.get(stage, {}):
            out[kind] = {"searches": st[stage]["searches"]}
    return out or None


def main():
    a = parse_args()
    a.bin = bl.binary(path=a.bin)
    os.makedirs(a.out, exist_ok=True)
    data = os.path.abspath(a.data) if a.data else bl.experiment_dir(a.n, a.d, a.seed)
    nprobes = [int(x) for x in a.nprobe.split(",")]
    tag = f"n{a.n}_d{a.d}" if not a.data else os.path.basename(os.path.normpath(a.data))
    rounds, last = [], None
    load0 = open("/proc/loadavg").read().split()[:3]
    for r in range(a.rounds):
        f = run_faiss(a, data, os.path.join(a.out, f"faiss_{tag}_{r}.json"))
        o = run_ours(a, data, os.path.join(a.out, f"ours_{tag}_{r}.json"))
        rounds.append(rows_of(f, o, nprobes[0], a.k))
        last = (f, o)
    sweep = faiss_sweep(last[0])
    load1 = open("/proc/loadavg").read().split()[:3]
    f, o = last
    rows = median_rows(rounds)
    print(f"data: {data} ({f['data'].get('n_raw')} rows x {f['data'].get('d')}, "
          f"{f['data'].get('n_queries')} queries), k {a.k}, rounds {a.rounds}")
    print(f"faiss {f['versions']['faiss']} (OPENBLAS_CORETYPE={f['OPENBLAS_CORETYPE']}, {a.threads} threads); "
          f"ours: {o['backend']['kind']} ({o['backend']['name']}); cpu {o['cpu']}")
    print(f"load average {' '.join(load0)} -> {' '.join(load1)}")
    w = max(len(r[0]) for r in rows) + 2
    print(f"\n{'stage':<{w}}{'faiss s':>10}{'ours s':>10}{'faiss/ours':>12}")
    for lab, fs, os_ in rows:
        print(f"{lab:<{w}}{fs:>10.3f}{os_:>10.3f}{fs / os_ if os_ > 0 else float('nan'):>12.2f}")
    print(f"\n{'quality':<{w}}{'faiss':>10}{'ours':>10}")
    for lab, fv, ov in quality(f, o, nprobes[0], a.k):
        print(f"{lab:<{w}}{fmt(fv, 4):>10}{fmt(ov, 4):>10}")
    if sweep or len(nprobes) > 1:
        print(f"\nrecall vs nprobe (R1@1 / R{a.k}@{a.k}; search seconds)")
        for kind, suffix in (("flat", ",Flat"), ("pq", ",RFlat")):
            for p in nprobes:
                s = ours_stage(o, "search", suffix, p)
                fsw = None
                if sweep and kind in sweep:
                    fsw = next((x for x in sweep[kind]["searches"] if x["nprobe"] == p), None)
                if s is None and fsw is None:
                    continue
                fpart = (f"faiss {fsw['recall_1at1']:.4f} / {fsw[f'recall_{a.k}at{a.k}']:.4f} "
                         f"{fsw['search_s']:.3f}s" if fsw else "faiss -")
                opart = (f"ours {s['recall']['r1_at_1']:.4f} / {s['recall']['rk_at_k']:.4f} "
                         f"{s['min_s']:.3f}s" if s else "ours -")
                print(f"  {kind:<5} nprobe {p:<4} {fpart}   {opart}")
    png = os.path.join(a.out, f"compare_{tag}.png")
    title = (f"{tag}: faiss {f['versions']['faiss']} vs rvc-index bench ({o['backend']['kind']}: "
             f"{o['backend']['name']}), {o['cpu']}, {time.strftime('%Y-%m-%d')}")
    chart(rows, sweep, o, a.k, png, title)
    bl.write_json(os.path.join(a.out, f"compare_{tag}.json"),
                  {"rows": rows, "rounds": rounds, "sweep": sweep,
                   "quality": quality(f, o, nprobes[0], a.k)})
    print(f"\nchart: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
