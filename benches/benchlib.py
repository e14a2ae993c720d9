"""Helpers shared by the faiss comparison scripts in benches/.

    import benchlib as bl        # the scripts sit next to this file

Binaries
    bl.binary()                  target/release/rvc-index (exits with the build
                                 command when missing); bl.binary("knn_time",
                                 example=True) for target/release/examples/…
faiss at its best
    bl.has_avx512()              AVX-512F in /proc/cpuinfo
    bl.faiss_env()               os.environ + OPENBLAS_CORETYPE=SkylakeX where the
                                 CPU has AVX-512 (OpenBLAS's AVX-512 kernels; it
                                 must be set before NumPy/faiss load)
    bl.ours_env()                os.environ without OPENBLAS_CORETYPE
    bl.ensure_faiss_env()        re-run the calling script under faiss_env() unless
                                 it already is (call it first thing in main())
    bl.faiss_python(code, *args) run a Python snippet under faiss_env(); returns
                                 the last stdout line parsed as JSON (lines=True:
                                 a list, one per line)
    bl.faiss_script(name, *args) the same for a script in benches/
The machine (it may be shared)
    bl.loadavg()                 1-minute load average
    bl.Meter()                   with-block: .wall, .cpu (this process), .others
                                 (share of the machine other processes used)
    bl.wait_quiet(max_frac)      wait until others use <= max_frac of the CPUs
    bl.machine()                 CPU model, cores, AVX-512, memory
Timing
    bl.best_of(fn, repeat)       (best seconds, all seconds, last result)
    bl.median(values)
Data (benches/rvc_synthetic.py: the harness's generator; cached under
bl.cache_dir(), RVC_INDEX_BENCH_CACHE or $TMPDIR/rvc_index_bench)
    bl.database(n, d, seed), bl.queries(nq, d, seed)       arrays
    bl.database_npy(n, d, seed), bl.queries_npy(nq, d, seed)  cached .npy paths
    bl.experiment_dir(n, d, seed)  cached folder of utterance .npy files
    bl.list_npy(path), bl.load_concat(files), bl.rvc_shuffle(x, seed)
    bl.rvc_nlist(n), bl.recall_stats(I, gt, k), bl.exact_objective(x, c)
Output
    bl.log(msg), bl.write_json(path, obj), bl.pyplot() (matplotlib, Agg)
"""

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

BENCHES = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCHES)
if BENCHES not in sys.path:
    sys.path.insert(0, BENCHES)

import rvc_synthetic  # noqa: E402  (benches/ on the path first)

RVC_REDUCE_THRESHOLD = 200_000   # RVC compresses to 10 000 centres above this
RVC_MBK_CLUSTERS = 10_000
RVC_ADD_BATCH = 8192
_FAISS_MARK = "RVC_INDEX_BENCH_FAISS_ENV"


def log(msg):
    name = os.path.splitext(os.path.basename(sys.argv[0]))[0] or "bench"
    print(f"[{name} {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# binaries
# ---------------------------------------------------------------------------

def binary(name="rvc-index", example=False, path=None):
    """A release binary of this repository; exits with how to build it."""
    if path is None:
        parts = [ROOT, "target", "release"] + (["examples"] if example else []) + [name]
        path = os.path.join(*parts)
    if not os.path.exists(path):
        how = f"cargo build --release --example {name}" if example else "cargo build --release"
        sys.exit(f"{path} is missing: run `{how}` first")
    return path


# ---------------------------------------------------------------------------
# faiss at its best
# ---------------------------------------------------------------------------

def has_avx512():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return False


def faiss_env(base=None):
    env = dict(os.environ if base is None else base)
    if has_avx512():
        env.setdefault("OPENBLAS_CORETYPE", "SkylakeX")
    env[_FAISS_MARK] = "1"
    return env


def ours_env():
    return {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", _FAISS_MARK)}


def ensure_faiss_env():
    """Re-execute this script under faiss_env() (once)."""
    if os.environ.get(_FAISS_MARK) == "1":
        return
    env = faiss_env()
    if env.get("OPENBLAS_CORETYPE") == os.environ.get("OPENBLAS_CORETYPE"):
        os.environ[_FAISS_MARK] = "1"
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def _last_json(out):
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    return json.loads(lines[-1]) if lines else None


def faiss_python(code, *args, threads=None, lines=False):
    """Run `code` (python -c) under faiss_env(); the last stdout line as
    JSON, or with lines=True every non-empty line (a list)."""
    env = faiss_env()
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"faiss child failed ({r.returncode}):\n{r.stderr}")
    if lines:
        return [json.loads(ln) for ln in r.stdout.splitlines() if ln.strip()]
    return _last_json(r.stdout)


def faiss_script(name, *args):
    """Run benches/<name> under faiss_env(), stderr passed through."""
    cmd = [sys.executable, os.path.join(BENCHES, name), *map(str, args)]
    r = subprocess.run(cmd, env=faiss_env(), stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        sys.exit(f"{name} failed with status {r.returncode}")
    return _last_json(r.stdout)


# ---------------------------------------------------------------------------
# the machine
# ---------------------------------------------------------------------------

def loadavg():
    return os.getloadavg()[0]


def _busy_and_total_s():
    """Busy and total CPU seconds of the whole machine, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return float("nan"), float("nan")
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(v) - v[3] - v[4]) / hz, sum(v) / hz


class Meter:
    """Wall time, this process's CPU time (children included) and the share
    of the machine other processes used meanwhile."""

    def __enter__(self):
        self._b0, self._t0 = _busy_and_total_s()
        self._c0 = self._own()
        self._w0 = time.perf_counter()
        return self

    @staticmethod
    def _own():
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._w0
        self.cpu = self._own() - self._c0
        b1, t1 = _busy_and_total_s()
        self.others = min(1.0, max(0.0, (b1 - self._b0) - self.cpu) / max(1e-9, t1 - self._t0))
        return False

    def info(self):
        return {"wall_s": round(self.wall, 4), "cpu_s": round(self.cpu, 2),
                "others_cpu_frac": round(self.others, 3)}


def wait_quiet(max_frac=0.15, window=2.0, timeout=300.0):
    """Wait (at most `timeout` s) until other processes use at most
    `max_frac` of the CPUs over `window` s; returns what was seen."""
    t0 = time.perf_counter()
    while True:
        b0, a0 = _busy_and_total_s()
        time.sleep(window)
        b1, a1 = _busy_and_total_s()
        frac = (b1 - b0) / max(1e-9, a1 - a0)
        waited = time.perf_counter() - t0
        if frac <= max_frac or waited >= timeout:
            return {"waited_s": round(waited, 1), "busy_frac": round(frac, 3)}


def machine():
    info = {"nproc": os.cpu_count(), "avx512": has_avx512(), "platform": platform.platform(),
            "python": platform.python_version(), "loadavg": list(os.getloadavg())}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return info


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------

def best_of(fn, repeat=1):
    times, out = [], None
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), times, out


def median(values):
    return statistics.median(values)


# ---------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------

def cache_dir():
    d = os.environ.get("RVC_INDEX_BENCH_CACHE") or os.path.join(tempfile.gettempdir(),
                                                                "rvc_index_bench")
    os.makedirs(d, exist_ok=True)
    return d


def database(n, d, seed=0):
    return rvc_synthetic.database(n, d, seed)


def queries(nq, d, seed=0):
    return rvc_synthetic.queries(nq, d, seed)


def _cached_npy(name, make):
    import numpy as np
    path = os.path.join(cache_dir(), name)
    if not os.path.exists(path):
        log(f"generating {path}")
        tmp = path + ".part.npy"
        np.save(tmp, make())
        os.replace(tmp, path)
    return path


def database_npy(n, d, seed=0):
    key = rvc_synthetic.cache_key(n, d, seed)
    return _cached_npy(key + "_db.npy", lambda: database(n, d, seed))


def queries_npy(nq, d, seed=0):
    key = rvc_synthetic.cache_key(nq, d, seed)
    return _cached_npy(key + "_queries.npy", lambda: queries(nq, d, seed))


def experiment_dir(n, d, seed=0):
    """The database as utterance files (`{i:06d}.npy`), written once."""
    folder = os.path.join(cache_dir(), rvc_synthetic.cache_key(n, d, seed))
    if not os.path.exists(os.path.join(folder, "_complete")):
        log(f"generating {n} x {d} synthetic rows into {folder}")
        rvc_synthetic.write_experiment(folder, n, d, seed)
    return folder


def list_npy(path):
    if os.path.isdir(path):
        return [os.path.join(path, f) for f in sorted(os.listdir(path)) if f.endswith(".npy")]
    return [path]


def load_concat(files):
    import numpy as np
    parts = [np.load(f) for f in files]
    x = np.concatenate(parts, 0) if len(parts) > 1 else np.asarray(parts[0])
    return np.ascontiguousarray(x, dtype=np.float32)


def rvc_shuffle(x, seed):
    """RVC's row shuffle (an index permutation, then a gather)."""
    import numpy as np
    idx = np.arange(x.shape[0])
    np.random.RandomState(seed).shuffle(idx)
    return x[idx]


def rvc_nlist(n):
    return min(int(16 * n ** 0.5), n // 39)


def recall_stats(I, gt, k):
    """R1@1, R1@k (true nearest in the top k) and Rk@k (overlap of the top k)."""
    import numpy as np
    nq = I.shape[0]
    r11 = float(np.mean(I[:, 0] == gt[:, 0]))
    r1k = float(np.mean((I[:, :k] == gt[:, :1]).any(axis=1)))
    inter = sum(len(np.intersect1d(I[i, :k], gt[i, :k])) for i in range(nq))
    return {"recall_1at1": round(r11, 5), f"recall_1at{k}": round(r1k, 5),
            f"recall_{k}at{k}": round(inter / (nq * k), 5)}


def exact_objective(x, centroids, chunk=65536):
    """Sum over rows of the squared distance to the nearest centroid."""
    import faiss
    import numpy as np
    ix = faiss.IndexFlatL2(x.shape[1])
    ix.add(np.ascontiguousarray(centroids, dtype=np.float32))
    total = 0.0
    for lo in range(0, x.shape[0], chunk):
        D, _ = ix.search(x[lo:lo + chunk], 1)
        total += float(D.astype(np.float64).clip(min=0).sum())
    return total


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------

def write_json(path, obj):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
        f.write("\n")
    return path


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
