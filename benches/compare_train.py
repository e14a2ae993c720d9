#!/usr/bin/env python3
"""`rvc-index train` against faiss on the same data, in the same run.

Runs RVC's pipeline with faiss (benches/faiss_rvc.py, stages load,train,add;
faiss at its best: OPENBLAS_CORETYPE=SkylakeX where the CPU has AVX-512, for
its command only) and then `rvc-index train` on the very same utterance
files (benches/rvc_synthetic.py's data, or --data), and prints both figures
side by side with their ratio.

    python3 benches/compare_train.py --n 200000 --d 768 [--device cpu] [--repeat 2]

Needs python3 with numpy and faiss-cpu, and a release build
(`cargo build --release`).
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import benchlib as bl


def run_faiss(data, threads):
    # No queries are held out: RVC trains on every row.
    return bl.faiss_script("faiss_rvc.py", "--data", data, "--stages", "load,train,add",
                           "--queries", 0, "--threads", threads)


def run_ours(binary, feature_dir, device):
    with tempfile.TemporaryDirectory() as tmp:
        exp = os.path.join(tmp, "bench")
        os.makedirs(exp)
        t = time.perf_counter()
        proc = subprocess.Popen([binary, "train", exp, "--feature-dir", feature_dir, "--device", device,
                                 "--json", "--quiet"], stdout=subprocess.PIPE, text=True,
                                env=bl.ours_env())
        out = proc.stdout.read()
        # wait4 gives this child's own peak RSS (KiB on Linux).
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        if status != 0:
            raise SystemExit(f"rvc-index train failed with status {status}")
        peak_kib = usage.ru_maxrss
        j = json.loads(out)
        j["wall_s"] = wall
        j["peak_rss_mib"] = peak_kib / 1024
        return j


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default=None, help="a folder of .npy files instead of the synthetic set")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="faiss threads")
    p.add_argument("--repeat", type=int, default=1, help="alternate faiss and ours this many times")
    p.add_argument("--binary", default=None, help="default: target/release/rvc-index")
    a = p.parse_args()
    binary = bl.binary(path=a.binary)
    data = os.path.abspath(a.data) if a.data else bl.experiment_dir(a.n, a.d, a.seed)

    rows = []
    for r in range(a.repeat):
        fj = run_faiss(data, a.threads)
        st = fj["stages"]
        faiss_s = st["load"]["total_s"] + st["train"]["train_s"] + st["add"]["add_s"]
        ours = run_ours(binary, data, a.device)
        n, d = fj["data"]["n_raw"], fj["data"]["d"]
        matrix_mib = n * d * 4 / 2**20
        rows.append({
            "faiss_load_train_add_s": faiss_s,
            "faiss_train_s": st["train"]["train_s"],
            "faiss_objective_per_row": st["train"]["objective_mean_per_row"],
            "ours_total_s": ours["seconds"]["total"],
            "ours_wall_s": ours["wall_s"],
            "ours_kmeans_s": ours["seconds"]["kmeans"],
            "ours_objective_per_row": ours["objective_per_row"],
            "ours_peak_rss_mib": ours["peak_rss_mib"],
            "matrix_mib": matrix_mib,
            "backend": ours["backend"],
        })
        x = rows[-1]
        print(f"run {r + 1}: faiss load+train+add {faiss_s:.2f} s | rvc-index train {x['ours_wall_s']:.2f} s "
              f"(wall, incl. writing 3 files) -> faiss / ours {faiss_s / x['ours_wall_s']:.3f}")
        print(f"       objective/row faiss {x['faiss_objective_per_row']:.3f} ours {x['ours_objective_per_row']:.3f} "
              f"({100 * (x['ours_objective_per_row'] / x['faiss_objective_per_row'] - 1):+.3f}%)")
        print(f"       peak RSS {x['ours_peak_rss_mib']:.0f} MiB = {x['ours_peak_rss_mib'] / matrix_mib:.3f} x matrix "
              f"({matrix_mib:.0f} MiB); limit 1.3 x matrix + 200 MB = {1.3 * matrix_mib + 200:.0f} MiB")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
