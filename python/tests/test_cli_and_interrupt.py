"""The wheel's `rvc-index` command, and stopping a long call (Ctrl-C, an
exception in the progress callback) without leaving partial outputs."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import rvc_index
from conftest import faiss, make_rvc_experiment, run_cli


def test_command_version_is_the_package_version():
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout == f"rvc-index {rvc_index.__version__}\n"
    r = run_cli("--help")
    assert r.returncode == 0 and "train" in r.stdout and "Usage: rvc-index" in r.stdout


def test_command_trains_a_small_experiment(tmp_path):
    exp, x = make_rvc_experiment(tmp_path, "voice", 1200, d=256, folder="3_feature256")
    r = run_cli("train", exp, "-q")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", r.stderr
    nlist = min(int(16 * 1200 ** 0.5), 1200 // 39)
    added = exp / f"added_IVF{nlist}_Flat_nprobe_1_voice_v1.index"
    ref = faiss.read_index(str(added))
    assert ref.ntotal == 1200 and ref.d == 256


def test_command_exit_codes():
    r = run_cli("no-such-command")
    assert r.returncode == 2 and "unrecognized subcommand" in r.stderr
    r = run_cli("info", "/nonexistent/x.index")
    assert r.returncode == 1
    assert r.stderr.startswith("rvc-index: error: /nonexistent/x.index: ")


def only_features(exp):
    return sorted(p.name for p in exp.iterdir()) == ["3_feature768"]


def test_an_exception_in_the_progress_callback_stops_train(tmp_path):
    exp, _ = make_rvc_experiment(tmp_path, "voice", 3000, d=32)

    class Stop(Exception):
        pass

    calls = []

    def stop_at_kmeans(stage, done, total):
        calls.append(stage)
        if stage == "k-means" and done >= 2:
            raise Stop("user cancelled")

    with pytest.raises(Stop, match="user cancelled"):
        rvc_index.train(exp, progress=stop_at_kmeans)
    # No more calls after the exception; nothing was written, not even
    # total_fea.npy (written before k-means) or a temporary file.
    assert calls[-1] == "k-means" and "add" not in calls
    assert only_features(exp)
    # The experiment is not left locked: the same call now succeeds.
    assert rvc_index.train(exp)["n"] == 3000


INTERRUPTED = textwrap.dedent("""
    import sys, numpy as np, rvc_index
    seen = set()
    def progress(stage, done, total):
        # Ctrl-C comes once the k-means has started: the rest of the run
        # (seconds) is native work with the GIL released.
        if stage == "k-means" and not seen:
            seen.add(stage)
            print("started", flush=True)
    try:
        {call}
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(0)
    print("finished", flush=True)
    sys.exit(3)
""")


def interrupt(call, tmp_path, after=0.2):
    """Run `call` (which passes `progress=progress`) in a fresh Python and
    send it SIGINT (Ctrl-C) `after` seconds into its k-means; returns the
    child's stdout."""
    script = tmp_path / "child.py"
    script.write_text(INTERRUPTED.format(call=call))
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    first = p.stdout.readline()
    if first != "started\n":
        out, err = p.communicate(timeout=120)
        pytest.fail(f"the child did not reach its k-means: {first + out!r} {err!r}")
    try:
        p.wait(timeout=after)
    except subprocess.TimeoutExpired:
        pass
    os.kill(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, (out, err)
    return "started\n" + out


def random_features(path, n, d):
    # Unclustered rows: the k-means takes many iterations (seconds) to settle.
    np.save(path, np.random.default_rng(0).normal(size=(n, d)).astype(np.float32))


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_interrupts_train_and_leaves_no_outputs(tmp_path):
    exp = tmp_path / "logs" / "voice"
    (exp / "3_feature768").mkdir(parents=True)
    random_features(exp / "3_feature768" / "0.npy", 100000, 64)
    out = interrupt(f"rvc_index.train({str(exp)!r}, nlist=1024, niter=10000, device='cpu', "
                    "progress=progress)", tmp_path)
    assert out == "started\ninterrupted\n"
    assert only_features(exp)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process")
def test_ctrl_c_interrupts_build(tmp_path):
    random_features(tmp_path / "x.npy", 100000, 64)
    out = interrupt("rvc_index.build(np.load('x.npy'), 'IVF1024,Flat', niter=10000, "
                    "device='cpu', progress=progress)", tmp_path)
    assert out == "started\ninterrupted\n"
