"""blend against RVC's formula, expand against a NumPy re-implementation,
compress against faiss's k-means."""

import numpy as np
import pytest

import rvc_index
from conftest import clustered, faiss


def rvc_blend(index_path, feats, index_rate):
    """RVC's retrieval at inference (`Pipeline.vc`, infer/modules/vc/pipeline.py),
    in NumPy on faiss's own search, as RVC runs it."""
    index = faiss.read_index(str(index_path))
    big_npy = index.reconstruct_n(0, index.ntotal)
    npy = feats.copy()
    score, ix = index.search(npy, k=8)
    weight = np.square(1 / score)
    weight /= weight.sum(axis=1, keepdims=True)
    npy = np.sum(big_npy[ix] * np.expand_dims(weight, axis=2), axis=1)
    return npy * index_rate + (1 - index_rate) * feats


@pytest.fixture(scope="module")
def rvc_files(tmp_path_factory):
    """An added_IVF…Flat index over 768-d features, as RVC's train_index builds it."""
    x = clustered(5000, 768, centres=40, seed=4)
    d = tmp_path_factory.mktemp("blend")
    quantizer = faiss.IndexFlatL2(768)
    ref = faiss.IndexIVFFlat(quantizer, 768, 128)
    ref.train(x)
    ref.add(x)
    ref.nprobe = 1
    path = d / "added_IVF128_Flat_nprobe_1_voice_v2.index"
    faiss.write_index(ref, str(path))
    return path, x


@pytest.mark.parametrize("index_rate", [0.0, 0.33, 0.75, 1.0])
def test_blend_equals_rvc_formula(rvc_files, index_rate):
    path, x = rvc_files
    # Frames near, not on, stored vectors (RVC's formula is NaN on exact matches).
    feats = (x[::10] + np.random.default_rng(5).normal(scale=0.05, size=(500, 768))).astype(np.float32)
    want = rvc_blend(path, feats, index_rate)
    got = rvc_index.blend(rvc_index.read_index(path), feats, index_rate)
    assert got.dtype == np.float32 and got.shape == feats.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    if index_rate == 0.0:
        np.testing.assert_array_equal(got, feats)


def test_blend_follows_the_stored_nprobe(rvc_files, tmp_path):
    path, x = rvc_files
    feats = (x[1::7][:300] + 0.3).astype(np.float32)
    index = rvc_index.read_index(path)
    one = rvc_index.blend(index, feats, 0.8)
    ref = faiss.read_index(str(path))
    ref.nprobe = 8
    faiss.write_index(ref, str(tmp_path / "p8.index"))
    index.nprobe = 8
    eight = rvc_index.blend(index, feats, 0.8)
    assert np.abs(one - eight).max() > 1e-3
    np.testing.assert_allclose(eight, rvc_blend(tmp_path / "p8.index", feats, 0.8), rtol=0, atol=1e-5)


def test_blend_without_rvc_nan_on_exact_matches(rvc_files):
    path, x = rvc_files
    frames = x[:50].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        assert np.isnan(rvc_blend(path, frames, 0.75)).any()
    got = rvc_index.blend(rvc_index.read_index(path), frames, 0.75)
    # The stored vector takes the whole weight: rate·v + (1 − rate)·v = v.
    np.testing.assert_allclose(got, frames, rtol=0, atol=1e-5)


def test_blend_refuses_what_rvc_cannot_blend(rvc_files):
    path, x = rvc_files
    index = rvc_index.read_index(path)
    with pytest.raises(ValueError, match=r"--index-rate must be within 0\.\.1, got 1\.5"):
        rvc_index.blend(index, x[:3], 1.5)
    with pytest.raises(ValueError, match="queries have 16 columns but the index holds 768"):
        rvc_index.blend(index, x[:3, :16], 0.5)
    ip = rvc_index.build(x[:500], "Flat", metric="ip")
    with pytest.raises(ValueError, match="RVC's blend needs an L2 index"):
        rvc_index.blend(ip, x[:3], 0.5)
    with pytest.raises(TypeError, match="rvc_index.Index"):
        rvc_index.blend(faiss.read_index(str(path)), x[:3], 0.5)


def numpy_expand(x, alpha, num_expand):
    """α-query expansion: rows normalised, neighbours by inner product (faiss
    exact search), weights max(similarity, 0)^alpha, sum normalised. Also
    returns, for rows whose last neighbour ties the next row (within 1e-5),
    the expansion with that next row instead (either is right)."""
    xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(xn)
    sims, ids = flat.search(xn, num_expand + 1)

    def combine(s, i):
        w = np.maximum(s, 0.0).astype(np.float64) ** alpha
        y = np.einsum("nk,nkd->nd", w, xn[i].astype(np.float64))
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-9)

    k = num_expand
    tie = sims[:, k - 1] - sims[:, k] <= 1e-5
    alt = np.r_[0:k - 1, k]
    return combine(sims[:, :k], ids[:, :k]), tie, combine(sims[:, alt], ids[:, alt])


def test_expand_through_an_index_probing_every_list_is_exact():
    x = clustered(3000, 48, seed=7, spread=0.5)
    exact = rvc_index.expand(x, 3.0, 8)
    seen = []
    via = rvc_index.expand(x, 3.0, 8, factory="IVF16,Flat", nprobe=16,
                           progress=lambda *a: seen.append(a))
    np.testing.assert_allclose(via, exact, rtol=0, atol=1e-5)
    assert seen[-1] == ("expand", 3000, 3000)
    with pytest.raises(ValueError, match="nprobe= needs factory="):
        rvc_index.expand(x, 3.0, 8, nprobe=4)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        rvc_index.expand(x, -1.0, 8)


def test_compress_scores_like_faiss_kmeans_and_repeats_with_its_seed():
    x = clustered(20000, 32, centres=300, seed=8, spread=0.6)
    k = 200
    seen = []
    c = rvc_index.compress(x, k, seed=3, progress=lambda *a: seen.append(a))
    assert c.dtype == np.float32 and c.shape == (k, 32)

    def inertia(centres):
        flat = faiss.IndexFlatL2(32)
        flat.add(np.ascontiguousarray(centres, dtype=np.float32))
        return float(flat.search(x, 1)[0].sum())

    km = faiss.Kmeans(32, k, niter=10, seed=1234)
    km.train(x)
    ours, theirs = inertia(c), inertia(km.centroids)
    assert ours <= 1.05 * theirs, (ours, theirs)
    np.testing.assert_array_equal(rvc_index.compress(x, k, seed=3), c)
    assert not np.array_equal(rvc_index.compress(x, k, seed=4), c)
    done = [d for s, d, _ in seen if s == "compress"]
    assert done == sorted(done) and done[-1] == seen[-1][2]
    with pytest.raises(ValueError, match="only 20000 rows, fewer than the 20001 centres"):
        rvc_index.compress(x, 20001)
