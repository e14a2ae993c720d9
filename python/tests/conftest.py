"""Shared data and helpers of the Python tests: every result of rvc_index is
checked against real faiss (or NumPy) on the same data."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

# Distances agree with faiss to this (absolute, on values of order 1..100).
DIST_TOL = 1e-4


def clustered(n, d, centres=32, seed=0, spread=0.3):
    """Gaussian clusters around random centres (float32), like voice features:
    distinct rows, no exact ties between distances."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, d)).astype(np.float32) * 2.0
    labels = rng.integers(0, centres, size=n)
    x = c[labels] + rng.normal(scale=spread, size=(n, d)).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def assert_same_search(D, I, Df, If, tol=DIST_TOL, max_swapped=0.01):
    """Ids equal to faiss's and distances within `tol` (absolute, scaled up
    for values above 1), rank by rank. Where two stored vectors lie at the
    same distance to within `tol`, float rounding may order them either way:
    there an id may differ from faiss's if faiss's row holds it at a distance
    within `tol` of ours (or, past faiss's last rank, if ours ties faiss's
    last distance). Such swaps must stay rare (at most `max_swapped` of the
    entries), but where scores are quantised (PQ), ties are common."""
    assert D.dtype == np.float32 and I.dtype == np.int64
    assert D.shape == Df.shape and I.shape == If.shape
    scale = np.maximum(np.abs(Df.astype(np.float64)), 1.0)
    np.testing.assert_array_less(np.abs(D - Df.astype(np.float64)), tol * scale + 1e-12)
    swapped = 0
    for r, c in zip(*np.nonzero(I != If)):
        row = list(If[r])
        t = tol * scale[r, c]
        if I[r, c] in row:
            ok = abs(float(Df[r, row.index(I[r, c])]) - float(D[r, c])) <= 2 * t
        else:
            ok = abs(float(Df[r, -1]) - float(D[r, c])) <= 2 * t
        assert ok, f"row {r}, rank {c}: id {I[r, c]} (distance {D[r, c]}) where faiss has " \
                   f"{If[r, c]} (distance {Df[r, c]}), not a tie"
        swapped += 1
    assert swapped <= max_swapped * I.size, f"{swapped} of {I.size} ids differ from faiss's"


def make_rvc_experiment(root, name, n, d=768, files=3, seed=0, folder="3_feature768"):
    """logs/<name>/<folder>/{0..}.npy as RVC's feature extraction writes them
    (one float32 (frames, d) matrix per audio slice). Returns (exp_dir, rows
    in sorted-name order)."""
    exp = root / "logs" / name
    feat = exp / folder
    feat.mkdir(parents=True)
    x = clustered(n, d, seed=seed)
    bounds = np.linspace(0, n, files + 1).astype(int)
    for i in range(files):
        np.save(feat / f"{i}_slice.npy", x[bounds[i]:bounds[i + 1]])
    return exp, x


def rvc_index_command():
    """The `rvc-index` command the wheel installed beside this Python."""
    exe = shutil.which("rvc-index", path=os.path.dirname(sys.executable))
    assert exe, f"no rvc-index command next to {sys.executable}"
    return exe


def run_cli(*args, **kw):
    return subprocess.run([rvc_index_command(), *map(str, args)], capture_output=True,
                          text=True, timeout=600, **kw)
