"""rvc-index from Python: faiss-compatible IVF indexes for RVC voice models.

The names and shapes follow faiss, so inference code changes little::

    import rvc_index

    summary = rvc_index.train("logs/myvoice")          # RVC's "train index" step
    index = rvc_index.read_index(summary["added_index"])
    D, I = index.search(feats, 8)                       # float32 (n, 8), int64 (n, 8)
    feats = rvc_index.blend(index, feats, 0.75)        # RVC's retrieval, without NaN

Arrays: every matrix argument is used as a C-contiguous float32 (n, d) array.
One that already is (``x.dtype == np.float32`` and ``x.flags.c_contiguous``)
is read in place, without a copy; anything else (float64, float16, a
transposed or sliced view, a list of lists) is converted once, with
``numpy.ascontiguousarray(x, dtype=numpy.float32)``. Results are new arrays.

Calls release the GIL while they work, and Ctrl-C interrupts them: the work
stops at its next progress point, unfinished output files are removed, and
``KeyboardInterrupt`` is raised. ``progress(stage, done, total)`` callables
are called on the calling thread; an exception raised by one stops the call
the same way and is raised in its place.

Errors are Python exceptions carrying the line the ``rvc-index`` command
prints after ``rvc-index: error:``: ``FileNotFoundError`` for a missing file
or folder, ``OSError`` for other I/O failures, ``ValueError`` for unusable
values, shapes, files and settings, ``RuntimeError`` for a failing GPU.
"""

import json
import operator
import os
import sys

# Mesa's Vulkan device-selection layer prints two "error:" lines on every
# adapter probe when XDG_RUNTIME_DIR is unset (containers, ssh); wgpu picks
# the adapter itself. The `rvc-index` binary switches the layer off the same way.
os.environ.setdefault("NODEVICE_SELECT", "1")

import numpy as np  # noqa: E402

from . import _native  # noqa: E402

__version__ = _native.__version__

__all__ = [
    "Index",
    "METRIC_INNER_PRODUCT",
    "METRIC_L2",
    "blend",
    "build",
    "compress",
    "expand",
    "read_index",
    "train",
    "write_index",
]

#: faiss's metric codes, accepted by ``build(metric=...)``.
METRIC_INNER_PRODUCT = 0
METRIC_L2 = 1

_METRICS = {METRIC_L2: "l2", METRIC_INNER_PRODUCT: "ip", "l2": "l2", "ip": "ip",
            "inner_product": "ip", "cosine": "cosine"}


def _matrix(x, name):
    """``x`` as a C-contiguous float32 (n, d) array: itself when it already is."""
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, d) array, got shape {a.shape}")
    return a


def _count(value, name, minimum=0):
    """An integer argument, checked (bools and floats are refused as faiss does)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    v = operator.index(value)
    if v < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {v}")
    return v


class Index:
    """An index in memory (what ``read_index`` and ``build`` return), searched
    as faiss searches it.

    ``d``, ``ntotal``, ``nlist`` and ``nprobe`` (None for a Flat index),
    ``metric`` ("l2" or "ip"), ``metric_type`` (faiss's code), ``is_trained``,
    ``fourcc`` (faiss's type code: IxF2, IxFI, IwFl, IwPf, IxRF) and ``device``
    are attributes; setting ``nprobe`` changes what ``search`` and ``blend``
    probe and what ``write`` stores, as in faiss.
    """

    __slots__ = ("_impl",)

    def __init__(self, native):
        self._impl = native

    d = property(lambda self: self._impl.d, doc="Dimension of the vectors.")
    ntotal = property(lambda self: self._impl.ntotal, doc="Number of stored vectors.")
    nlist = property(lambda self: self._impl.nlist, doc="Inverted lists (None for Flat).")
    metric = property(lambda self: self._impl.metric, doc='"l2" or "ip".')
    metric_type = property(lambda self: self._impl.metric_type,
                           doc="faiss's code: METRIC_L2 (1) or METRIC_INNER_PRODUCT (0).")
    is_trained = property(lambda self: self._impl.is_trained)
    fourcc = property(lambda self: self._impl.fourcc, doc="faiss's type code of the index.")
    device = property(lambda self: self._impl.device, doc='Where searches run.')

    @property
    def nprobe(self):
        """Lists an IVF search probes (None for Flat); settable, stored by ``write``."""
        return self._impl.nprobe

    @nprobe.setter
    def nprobe(self, value):
        self._impl.nprobe = _count(value, "nprobe", 1)

    def search(self, x, k):
        """The ``k`` nearest stored vectors of every row of ``x`` ((n, d)).

        Returns ``(D, I)``: float32 (n, k) squared L2 distances (ascending) or
        inner products (descending), and int64 (n, k) ids. Where fewer than
        ``k`` vectors lie in the probed lists, a row ends with id -1 and
        distance 3.4028235e38 (-3.4028235e38 for inner product), as in faiss.
        """
        return self._impl.search(_matrix(x, "x"), _count(k, "k"))

    def reconstruct_n(self, i0, n):
        """Stored vectors ``i0 .. i0 + n - 1`` as a float32 (n, d) array (PQ
        indexes: their decoded approximations)."""
        return self._impl.reconstruct_n(_count(i0, "i0"), _count(n, "n"))

    def reconstruct(self, key):
        """Stored vector ``key`` as a float32 (d,) array."""
        return self._impl.reconstruct(_count(key, "key"))

    def write(self, path):
        """Write the index to ``path`` as faiss writes it (whole or not at all)."""
        self._impl.write(os.fspath(path))

    def __repr__(self):
        return repr(self._impl)


def read_index(path, *, device="auto"):
    """Read a faiss index file (what ``faiss.read_index`` reads: Flat, IVF-Flat,
    IVF-PQ fast-scan, RFlat, L2 or inner product).

    ``device``: where ``search`` and ``blend`` run ("auto": a real GPU when there
    is one, else the CPU; "gpu" also takes software adapters; "cpu").
    """
    return Index(_native.read_index(os.fspath(path), device))


def write_index(index, path):
    """``faiss.write_index(index, path)``: the same as ``index.write(path)``."""
    index.write(path)


def build(x, factory, metric="l2", device="auto", *, nprobe=1, niter=10, progress=None):
    """Train and fill an index of kind ``factory`` over the rows of ``x``.

    ``factory``: "Flat", "IVF<n>,Flat", "IVF<n>,PQ<M>x4fs", optionally followed by
    ",RFlat"; ``<n>`` may be "{auto}" (RVC's min(16·sqrt(N), N // 39)). Ids are the
    row numbers. ``metric``: "l2", "ip" (or faiss's METRIC_L2 / METRIC_INNER_PRODUCT),
    or "cosine" (rows normalised, then inner product). ``nprobe`` is stored in
    the index; ``niter``: k-means iterations (faiss: 10). ``progress(stage, done,
    total)`` is called as the stages advance ("k-means" iterations, "add" rows).
    Returns an ``Index``; ``index.write(path)`` saves it.
    """
    try:
        m = _METRICS[metric]
    except (KeyError, TypeError):
        raise ValueError(
            f'metric must be "l2", "ip", "cosine", METRIC_L2 or METRIC_INNER_PRODUCT, got {metric!r}'
        ) from None
    return Index(_native.build(_matrix(x, "x"), str(factory), m, device,
                               _count(nprobe, "nprobe", 1), _count(niter, "niter", 1), progress))


def blend(index, feats, index_rate):
    """RVC's retrieval step: ``index_rate · retrieved + (1 − index_rate) · feats``.

    Each frame (row of ``feats``, (T, d)) is searched for its 8 nearest stored
    vectors (with the index's nprobe, as RVC does), which are averaged with
    weights 1/distance², normalised. Unlike RVC's NumPy formula this never gives
    NaN: an exact match (distance 0) takes the whole weight, and a frame whose
    probed lists are empty is left unchanged. ``index`` must be an L2 index
    (RVC's added_… file); ``index_rate`` lies within 0..1. Returns a new float32
    (T, d) array. The stored vectors are reconstructed once per ``Index`` and kept.
    """
    if not isinstance(index, Index):
        raise TypeError(f"index must be an rvc_index.Index, got {type(index).__name__}")
    return _native.blend(index._impl, _matrix(feats, "feats"), float(index_rate))


def expand(x, alpha=3.0, num_expand=16, *, factory=None, nprobe=None, device="auto",
           progress=None):
    """α-query expansion: every row becomes the L2-normalised sum of its
    ``num_expand`` nearest rows by inner product (itself included), weighted by
    similarity^alpha (similarities below 0 count as 0). Neighbours are exact,
    unless ``factory`` names an index to build over the normalised rows and search
    instead (``nprobe`` lists, default 16). Returns a new float32 array.
    """
    return _native.expand(_matrix(x, "x"), float(alpha), _count(num_expand, "num_expand", 1),
                          None if factory is None else str(factory),
                          None if nprobe is None else _count(nprobe, "nprobe", 1),
                          device, progress)


def compress(x, k, seed=0, *, device="auto", progress=None):
    """Compress the rows of ``x`` to ``k`` mini-batch k-means centres (what RVC
    does above 200 000 rows, with k = 10 000), with a fixed, seeded amount of
    work: the same seed gives the same centres on the same device. Returns a new
    float32 (k, d) array.
    """
    return _native.compress(_matrix(x, "x"), _count(k, "k", 1), _count(seed, "seed"), device,
                            progress)


def _cli_args(options):
    """``{"skip_existing": True, "nlist": 256}`` → ``["--skip-existing", "--nlist=256"]``;
    None and False leave an option out."""
    args = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        args.append(flag if value is True else f"{flag}={value}")
    return args


def train(exp_dir, *, layout=None, output=None, skip_existing=False, link=None,
          version=None, device="auto", seed=0, nlist=None, nprobe=None, recall=None,
          compress="auto", factory=None, niter=None, progress=None):
    """Build an experiment's index, as ``rvc-index train exp_dir`` does: RVC's
    "train index" step, writing the index files (and, in RVC's layout,
    total_fea.npy) into ``exp_dir``, whole or not at all. Returns the summary
    ``train --json`` prints, as a dict (``added_index`` is the path to load).

    Every keyword is the ``train`` option of the same name (see
    ``rvc-index train --help``):

    * ``layout``: "rvc", "rvc-main" or "applio" (None: detected from the
      folder); ``output``: the index file's name; ``skip_existing``: return
      without work when the layout's index exists (the summary then says
      ``"skipped": true``); ``link``: a folder to link the added index into
      (RVC main's outside_index_root); ``version``: "v1" or "v2" (None: from
      the feature folder).
    * ``nprobe``: a number or "auto"; ``recall``: a target recall@8 in (0, 1],
      stored as the smallest nprobe reaching it (``factory="auto"`` also tries
      a PQ fast-scan index and keeps the faster); ``compress``: "auto" (RVC's
      rule), "off" or a number of centres; ``factory``: a factory string;
      ``niter``: the k-means iterations (default 10, as faiss).

    ``progress(stage, done, total)`` is called as the stages advance: "load"
    (rows), "compress" (row updates), "expand" (rows), "k-means" (iterations),
    "add" (rows). An exception raised in it stops the call and is re-raised.
    """
    # Every keyword but `progress` is passed on as `--name=value`: a new train
    # option is one more keyword in the signature above.
    options = {k: v for k, v in locals().items() if k not in ("exp_dir", "progress")}
    summary = _native.train(os.fspath(exp_dir), _cli_args(options), progress)
    return json.loads(summary)


def _main():
    """The ``rvc-index`` command installed with the package."""
    sys.exit(_native.cli_main(["rvc-index", *sys.argv[1:]]))
