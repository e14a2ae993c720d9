"""Bad input raises one Python exception with the command line's message."""

import numpy as np
import pytest

import rvc_index
from conftest import clustered, run_cli


def cli_message(*args):
    r = run_cli(*args)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rvc-index: error: "), r.stderr
    return lines[0].removeprefix("rvc-index: error: ")


@pytest.fixture(scope="module")
def index():
    return rvc_index.build(clustered(500, 16, seed=9), "IVF8,Flat")


def test_missing_index_file(tmp_path):
    path = tmp_path / "nothing.index"
    with pytest.raises(FileNotFoundError) as e:
        rvc_index.read_index(path)
    assert str(e.value) == cli_message("info", path)


def test_garbage_and_truncated_index_files(tmp_path, index):
    bad = tmp_path / "bad.index"
    bad.write_bytes(b"not an index at all")
    with pytest.raises(ValueError) as e:
        rvc_index.read_index(bad)
    assert str(e.value) == cli_message("info", bad)
    index.write(tmp_path / "good.index")
    cut = tmp_path / "cut.index"
    cut.write_bytes((tmp_path / "good.index").read_bytes()[:300])
    with pytest.raises(ValueError) as e:
        rvc_index.read_index(cut)
    assert str(e.value) == cli_message("info", cut)
    assert str(cut) in str(e.value)


def test_a_folder_is_not_an_index(tmp_path):
    with pytest.raises((ValueError, OSError)) as e:
        rvc_index.read_index(tmp_path)
    assert str(e.value) == cli_message("info", tmp_path)


def test_write_errors_are_os_errors(tmp_path, index):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError, match=r"^.*/file/x\.index: Not a directory") as e:
        index.write(tmp_path / "file" / "x.index")
    assert not isinstance(e.value, FileNotFoundError)
    with pytest.raises(FileNotFoundError, match=r"/no/such/x\.index: No such file or directory"):
        index.write(tmp_path / "no" / "such" / "x.index")
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError, match="folder: is a folder, not a file"):
        rvc_index.write_index(index, tmp_path / "folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]
    assert list((tmp_path / "folder").iterdir()) == []


def test_bad_shapes_and_values(index):
    q = clustered(5, 16, seed=10)
    with pytest.raises(ValueError, match="queries have 5 columns but the index holds 16-dimensional"):
        index.search(q[:, :5], 3)
    with pytest.raises(ValueError, match=r"x must be a 2-D \(n, d\) array, got shape \(16,\)"):
        index.search(q[0], 3)
    with pytest.raises(ValueError, match="k must be at least 0, got -1"):
        index.search(q, -1)
    with pytest.raises(TypeError):
        index.search(q, 2.5)
    nan = q.copy()
    nan[3, 7] = np.nan
    with pytest.raises(ValueError, match=r"x: row 3, column 7 is NaN \(features must be finite\)"):
        rvc_index.build(nan, "Flat")
    with pytest.raises(ValueError, match=r"feats: row 3, column 7 is NaN"):
        rvc_index.blend(index, nan, 0.5)
    with pytest.raises(ValueError, match="could not convert string to float"):
        index.search([["a"] * 16], 1)


def test_bad_build_settings():
    x = clustered(200, 16, seed=11)
    with pytest.raises(ValueError, match=r'unsupported: factory string "IVF8,SQ8"'):
        rvc_index.build(x, "IVF8,SQ8")
    with pytest.raises(ValueError, match="fewer than"):
        rvc_index.build(x, "IVF500,Flat")
    with pytest.raises(ValueError, match='metric must be "l2", "ip", "cosine"'):
        rvc_index.build(x, "Flat", metric="manhattan")
    with pytest.raises(ValueError, match='device must be "auto", "gpu" or "cpu", got "tpu"'):
        rvc_index.build(x, "Flat", device="tpu")
    with pytest.raises(ValueError, match="k must be at least 1"):
        rvc_index.compress(x, 0)
    with pytest.raises(ValueError, match="nprobe must be at least 1"):
        rvc_index.build(x, "IVF4,Flat", nprobe=0)


def test_flat_index_has_no_lists():
    flat = rvc_index.build(clustered(50, 4), "Flat")
    assert flat.nlist is None and flat.nprobe is None
    with pytest.raises(AttributeError, match="a Flat index has no nprobe"):
        flat.nprobe = 2


def test_reconstruct_out_of_range(index):
    with pytest.raises(IndexError, match=r"reconstruct\(500\): ids lie within 0..500"):
        index.reconstruct(500)
    with pytest.raises(ValueError, match="i0 must be at least 0"):
        index.reconstruct_n(-1, 2)
