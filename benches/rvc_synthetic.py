#!/usr/bin/env python3
"""Synthetic "RVC-like" feature rows in NumPy: the reference for
`src/synthetic.rs` (tests/synthetic.rs compares the two) and the data the
faiss comparison scripts in benches/ run on.

The model: frames live mostly in a low-dimensional latent space,

    x = m0 + A (u_c + t * v) + t * eps

  A     d x r mixing matrix: log-normal per-dimension scales and a decaying
        latent spectrum (anisotropic, correlated dimensions)
  u_c   component centre = one of a few "phone-like" super-centres + offset
  v     per-component diagonal latent noise with log-normal scales
  eps   small full-rank noise, standard deviation 0.15 * scale of the dimension
  t     per-frame heavy tail sqrt(5 / chi2(5)), clipped at 6

Frames come in runs (geometric, mean 6) from one component; components are
drawn with Zipf-like weights (exponent 0.8, in a random order). The database
is cut into utterances of 100..200 frames.

Every random number comes from `np.random.Generator(PCG64)` seeded with
`SeedSequence([seed, *stream])`:

  stream (seed, 0)          the mixture parameters
  stream (seed, 1, chunk)   database rows, chunks of CHUNK rows
  stream (seed, 2, chunk)   query rows
  stream (seed, 9)          utterance lengths

The order of the draws and of the floating-point operations below is part of
the definition: changing either changes the data (bump VERSION then).

    python3 benches/rvc_synthetic.py N D [SEED] OUT.npy     # database rows
    python3 benches/rvc_synthetic.py --experiment N D [SEED] DIR
"""

import hashlib
import json
import math
import os
import sys

import numpy as np

VERSION = 1          # part of the cache key; bump when the data changes
CHUNK = 65536        # rows per generator chunk
CENTERS = 4096
SUPER_CENTERS = 64
LATENT = 48
STREAM_MIXTURE, STREAM_DATABASE, STREAM_QUERIES, STREAM_LENGTHS = 0, 1, 2, 9
RUN_P = 1.0 / 6.0    # geometric run length parameter (mean 6 frames)
TAIL_DF = 5.0        # chi-square degrees of freedom of the heavy tail
TAIL_MAX = 6.0


def stream(*entropy):
    """A NumPy generator on SeedSequence(entropy)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(entropy))))


class Mixture:
    """The mixture parameters for dimension `d`; attributes as in
    `rvc_index::synthetic::Mixture`: A (d x r, float32), m0, eps_sd (d),
    u, v_sd (centers x r, float32), cdf (centers, float64, last entry 1)."""

    def __init__(self, d, centers=CENTERS, super_centers=SUPER_CENTERS, latent=LATENT, seed=0):
        if min(d, centers, super_centers, latent) < 1:
            raise ValueError("d, centers, super_centers and latent must be at least 1")
        g = stream(seed, STREAM_MIXTURE)
        self.d = d
        self.r = r = min(latent, d)
        scale = np.exp(g.normal(0.0, 0.5, size=d))
        spectrum = np.power(np.arange(1, r + 1, dtype=np.float64), -0.5)
        mixing = g.standard_normal((d, r))
        mixing = mixing / math.sqrt(r) * spectrum[None, :] * 3.0 * scale[:, None]
        self.A = mixing.astype(np.float32)
        self.m0 = (g.normal(0.0, 0.5, size=d) * scale).astype(np.float32)
        self.eps_sd = (0.15 * scale).astype(np.float32)
        supers = g.standard_normal((super_centers, r)) * 1.6
        parent = g.integers(0, super_centers, size=centers)
        offsets = g.standard_normal((centers, r)) * 0.7
        self.u = (supers[parent] + offsets).astype(np.float32)
        spread = np.exp(g.normal(math.log(0.6), 0.25, size=centers))
        axes = np.exp(g.normal(0.0, 0.3, size=(centers, r)))
        self.v_sd = (spread[:, None] * axes).astype(np.float32)
        zipf = np.power(np.arange(1, centers + 1, dtype=np.float64), -0.8)
        zipf = zipf[g.permutation(centers)]
        self.cdf = np.cumsum(zipf / zipf.sum())
        self.cdf[-1] = 1.0

    def labels(self, g, n):
        """Component of each of `n` frames: runs of geometric length. Whole
        rounds of runs are drawn (lengths first, then components), and the
        frames past `n` are dropped."""
        parts, have = [], 0
        while have < n:
            runs = max(16, (n - have) // 4)
            length = g.geometric(RUN_P, size=runs)
            comp = np.searchsorted(self.cdf, g.random(runs), side="right")
            parts.append(np.repeat(comp, length))
            have += int(length.sum())
        return np.concatenate(parts)[:n]

    def sample(self, g, n):
        """`n` rows (float32, C order) from generator `g`."""
        lab = self.labels(g, n)
        tail = np.sqrt(TAIL_DF / g.chisquare(TAIL_DF, size=n))
        tail = np.minimum(tail, TAIL_MAX).astype(np.float32)[:, None]
        noise = g.standard_normal((n, self.r), dtype=np.float32)
        z = self.u[lab] + tail * self.v_sd[lab] * noise
        x = np.matmul(z, self.A.T)
        eps = g.standard_normal((n, self.d), dtype=np.float32)
        eps *= self.eps_sd
        eps *= tail
        x += eps
        x += self.m0
        return np.ascontiguousarray(x, dtype=np.float32)

    def rows(self, n, seed, which):
        """`n` rows of stream `which`, chunk by chunk."""
        out = np.empty((n, self.d), dtype=np.float32)
        for ci, lo in enumerate(range(0, n, CHUNK)):
            hi = min(n, lo + CHUNK)
            out[lo:hi] = self.sample(stream(seed, which, ci), hi - lo)
        return out


def database(n, d, seed=0):
    """Database rows for (n, d, seed), in utterance-file order."""
    return Mixture(d, seed=seed).rows(n, seed, STREAM_DATABASE)


def queries(nq, d, seed=0):
    """Query rows: the same mixture, another stream."""
    return Mixture(d, seed=seed).rows(nq, seed, STREAM_QUERIES)


def utterance_lengths(n, seed=0):
    """Frames per utterance file (100..200 each, the last one cut so that
    they add up to n)."""
    draws = stream(seed, STREAM_LENGTHS).integers(100, 201, size=n // 100 + 2)
    out, total = [], 0
    for length in draws.tolist():
        if total + length >= n:
            out.append(n - total)
            break
        out.append(length)
        total += length
    return np.array([v for v in out if v > 0], dtype=np.int64)


def cache_key(n, d, seed=0, centers=CENTERS, super_centers=SUPER_CENTERS, latent=LATENT):
    """Folder name of the utterance files for these parameters."""
    text = json.dumps([VERSION, n, d, seed, centers, super_centers, latent])
    return "syn_n%d_d%d_s%d_%s" % (n, d, seed, hashlib.sha1(text.encode()).hexdigest()[:10])


def write_experiment(folder, n, d, seed=0, x=None):
    """Write the database as `{i:06d}.npy` utterance files and a `_complete`
    marker (what `rvc_index::synthetic::write_experiment` writes)."""
    x = database(n, d, seed) if x is None else x
    os.makedirs(folder, exist_ok=True)
    marker = os.path.join(folder, "_complete")
    if os.path.exists(marker):
        os.remove(marker)
    lo = 0
    for i, length in enumerate(utterance_lengths(n, seed).tolist()):
        np.save(os.path.join(folder, "%06d.npy" % i), x[lo:lo + length])
        lo += length
    assert lo == n
    with open(marker, "w") as f:
        f.write("ok\n")
    return folder


def main(argv):
    exp = argv[:1] == ["--experiment"]
    args = argv[1:] if exp else argv
    if len(args) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    n, d = int(args[0]), int(args[1])
    seed = int(args[2]) if len(args) == 4 else 0
    if exp:
        write_experiment(args[-1], n, d, seed)
    else:
        np.save(args[-1], database(n, d, seed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
