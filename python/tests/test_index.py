"""read_index / build / Index against faiss on the same data and files."""

import numpy as np
import pytest

import rvc_index
from conftest import assert_same_search, clustered, faiss


@pytest.fixture(scope="module")
def data():
    x = clustered(4000, 32, seed=1)
    q = clustered(300, 32, seed=2)
    return x, q


def faiss_ivf_flat(x, nlist, metric=faiss.METRIC_L2):
    quantizer = faiss.IndexFlatL2(x.shape[1]) if metric == faiss.METRIC_L2 \
        else faiss.IndexFlatIP(x.shape[1])
    index = faiss.IndexIVFFlat(quantizer, x.shape[1], nlist, metric)
    index.train(x)
    index.add(x)
    return index


@pytest.mark.parametrize("metric", [faiss.METRIC_L2, faiss.METRIC_INNER_PRODUCT])
def test_read_index_of_a_faiss_file_searches_as_faiss(tmp_path, data, metric):
    x, q = data
    ref = faiss_ivf_flat(x, 40, metric)
    path = tmp_path / "faiss.index"
    faiss.write_index(ref, str(path))
    index = rvc_index.read_index(path)
    assert (index.d, index.ntotal, index.nlist, index.nprobe) == (32, 4000, 40, 1)
    assert index.metric_type == metric
    assert index.metric == ("l2" if metric == faiss.METRIC_L2 else "ip")
    assert index.fourcc == "IwFl" and index.is_trained
    for nprobe in (1, 3, 40):
        ref.nprobe = nprobe
        index.nprobe = nprobe
        assert index.nprobe == nprobe
        D, I = index.search(q, 10)
        Df, If = ref.search(q, 10)
        assert_same_search(D, I, Df, If)


def test_nprobe_setter_changes_results_as_faiss(tmp_path, data):
    x, q = data
    ref = faiss_ivf_flat(x, 64)
    faiss.write_index(ref, str(tmp_path / "a.index"))
    index = rvc_index.read_index(tmp_path / "a.index")
    D1, I1 = index.search(q, 20)
    index.nprobe = 16
    D16, I16 = index.search(q, 20)
    # More lists probed: other (closer) neighbours for many queries...
    assert (I1 != I16).any(axis=1).mean() > 0.1
    assert (D16 <= D1 + 1e-6).all()
    # ...exactly those faiss finds with the same nprobe.
    ref.nprobe = 16
    assert_same_search(D16, I16, *ref.search(q, 20))
    ref.nprobe = 1
    assert_same_search(D1, I1, *ref.search(q, 20))
    # The new nprobe is what the written file stores.
    index.write(tmp_path / "b.index")
    assert faiss.extract_index_ivf(faiss.read_index(str(tmp_path / "b.index"))).nprobe == 16
    with pytest.raises(ValueError, match="nprobe must be at least 1"):
        index.nprobe = 0


def test_missing_results_are_minus_one_as_in_faiss(tmp_path):
    # Few rows in many lists: one probed list holds fewer than k vectors.
    x = clustered(200, 8, centres=4, seed=3)
    ref = faiss_ivf_flat(x, 5)
    faiss.write_index(ref, str(tmp_path / "s.index"))
    index = rvc_index.read_index(tmp_path / "s.index")
    D, I = index.search(x[:20], 150)
    Df, If = ref.search(x[:20], 150)
    assert (If == -1).any()
    assert_same_search(D, I, Df, If)


FACTORIES = ["Flat", "IVF{auto},Flat", "IVF32,Flat", "IVF16,PQ8x4fs", "IVF16,PQ8x4fs,RFlat"]


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_build_write_and_faiss_search_agree(tmp_path, data, factory, metric):
    x, q = data
    if metric == "ip":
        # Inner product is used on normalised rows (on raw ones the longest
        # rows win every query, and quantised PQ scores tie massively).
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    index = rvc_index.build(x, factory, metric=metric, device="cpu")
    assert (index.d, index.ntotal, index.metric) == (32, 4000, metric)
    path = tmp_path / "built.index"
    rvc_index.write_index(index, path)
    ref = faiss.read_index(str(path))
    assert ref.ntotal == 4000 and ref.d == 32
    nprobe = 1 if index.nlist is None else 4
    if index.nlist is not None:
        assert faiss.extract_index_ivf(ref).nlist == index.nlist
        if factory.startswith("IVF{auto}"):
            assert index.nlist == min(int(16 * 4000 ** 0.5), 4000 // 39)
        index.nprobe = nprobe
        faiss.extract_index_ivf(ref).nprobe = nprobe
    D, I = index.search(q, 8)
    Df, If = ref.search(q, 8)
    if not factory.endswith("RFlat"):
        # PQ scores are sums of 8-bit table entries, so equal scores are
        # common: each id that differs from faiss's is checked to be a tie.
        # (With L2 the tie order is faiss's too; with inner product it is not.)
        swaps = 1.0 if ("PQ" in factory and metric == "ip") else 0.01
        assert_same_search(D, I, Df, If, max_swapped=swaps)
        return
    # RFlat re-ranks the k best PQ candidates exactly, so its results follow
    # from which of several equally scored PQ candidates are kept.
    assert (I >= 0).all()
    diff = q[:, None, :].astype(np.float64) - x[I].astype(np.float64)
    exact = (diff * diff).sum(-1) if metric == "l2" else \
        (q[:, None, :].astype(np.float64) * x[I]).sum(-1)
    np.testing.assert_allclose(D, exact, rtol=1e-5, atol=1e-4)
    agree = np.mean([len(set(a) & set(b)) / 8 for a, b in zip(I, If)])
    if metric == "ip":
        pytest.xfail(f"inner-product fast-scan keeps other equally scored candidates than "
                     f"faiss (top-8 agreement {agree:.3f})") if agree < 0.99 else None
    assert agree >= 0.99, agree


def test_build_cosine_is_inner_product_of_normalised_rows(data):
    x, q = data
    index = rvc_index.build(x, "Flat", metric="cosine")
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    ref = faiss.IndexFlatIP(32)
    ref.add(xn)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    assert_same_search(*index.search(qn, 5), *ref.search(qn, 5))
    assert index.metric_type == rvc_index.METRIC_INNER_PRODUCT
    same = rvc_index.build(x, "Flat", metric=rvc_index.METRIC_INNER_PRODUCT)
    assert same.metric == "ip"


def test_reconstruct_matches_faiss(tmp_path, data):
    x, _ = data
    # (Not PQ fast-scan: faiss 1.15's reconstruct of a fast-scan index read
    # from a file crashes, its own files included.)
    for factory in ("Flat", "IVF32,Flat", "IVF64,Flat,RFlat"):
        index = rvc_index.build(x, factory)
        index.write(tmp_path / "r.index")
        ref = faiss.read_index(str(tmp_path / "r.index"))
        if factory != "Flat":
            faiss.extract_index_ivf(ref).make_direct_map()
        got = index.reconstruct_n(100, 50)
        assert got.dtype == np.float32 and got.shape == (50, 32)
        np.testing.assert_allclose(got, ref.reconstruct_n(100, 50), rtol=0, atol=1e-5)
        np.testing.assert_allclose(index.reconstruct(7), ref.reconstruct(7), rtol=0, atol=1e-5)
        np.testing.assert_array_equal(index.reconstruct_n(0, index.ntotal), x)
    with pytest.raises(IndexError, match="within 0..4000"):
        index.reconstruct_n(3990, 11)


def test_inputs_of_any_layout_and_dtype_give_the_same_results(data):
    x, q = data
    index = rvc_index.build(x, "IVF32,Flat")
    D, I = index.search(q, 6)
    for other in (q.astype(np.float64), np.asfortranarray(q), q.tolist(),
                  np.concatenate([q, q], axis=1)[:, :32]):
        D2, I2 = index.search(other, 6)
        np.testing.assert_array_equal(I2, I)
        np.testing.assert_array_equal(D2, D)
    # A float64 matrix indexes as its float32 conversion.
    again = rvc_index.build(x.astype(np.float64), "IVF32,Flat")
    np.testing.assert_array_equal(again.search(q, 6)[1], I)


def test_read_index_of_an_rvc_index_written_by_this_package(tmp_path, data):
    x, q = data
    index = rvc_index.build(x, "IVF{auto},Flat")
    index.write(tmp_path / "w.index")
    back = rvc_index.read_index(tmp_path / "w.index")
    assert repr(back) == repr(index)
    np.testing.assert_array_equal(back.search(q, 4)[1], index.search(q, 4)[1])
    assert (tmp_path / "w.index").read_bytes() == faiss.serialize_index(
        faiss.read_index(str(tmp_path / "w.index"))).tobytes()


def test_build_progress_reports_kmeans_iterations(data):
    x, _ = data
    seen = []
    rvc_index.build(x, "IVF32,Flat", niter=7, progress=lambda *a: seen.append(a))
    kmeans = [(d, t) for s, d, t in seen if s == "k-means"]
    assert kmeans[0] == (0, 7) and kmeans[-1] == (7, 7)
    assert [d for d, _ in kmeans] == sorted(d for d, _ in kmeans)
    # Rows are assigned to their lists ("add") only where k-means' own
    # final assignment cannot be used; then every row is counted.
    for s, d, t in seen:
        assert s in ("k-means", "add") and 0 <= d <= t
        if s == "add":
            assert t == 4000
