"""rvc_index.train on RVC-layout experiment folders, against faiss and the
`rvc-index train` command."""

import json
import os
import shutil

import numpy as np
import pytest

import rvc_index
from conftest import assert_same_search, faiss, make_rvc_experiment, run_cli


def rvc_nlist(n):
    # RVC's train_index: min(int(16 * np.sqrt(n)), n // 39).
    return min(int(16 * np.sqrt(n)), n // 39)


def test_train_writes_rvc_files_faiss_loads(tmp_path):
    exp, x = make_rvc_experiment(tmp_path, "voice", 3000)
    s = rvc_index.train(exp, device="cpu")
    nlist = rvc_nlist(3000)
    assert (s["experiment"], s["version"], s["n"], s["d"], s["files"]) == ("voice", "v2", 3000, 768, 3)
    assert (s["nlist"], s["nprobe"], s["factory"]) == (nlist, 1, f"IVF{nlist},Flat")
    added = exp / f"added_IVF{nlist}_Flat_nprobe_1_voice_v2.index"
    trained = exp / f"trained_IVF{nlist}_Flat_nprobe_1_voice_v2.index"
    assert s["added_index"] == str(added) and s["trained_index"] == str(trained)
    # total_fea.npy: the rows, shuffled.
    total = np.load(exp / "total_fea.npy")
    assert total.shape == x.shape and not np.array_equal(total, x)
    np.testing.assert_array_equal(np.unique(total, axis=0), np.unique(x, axis=0))
    ref = faiss.read_index(str(added))
    ivf = faiss.extract_index_ivf(ref)
    assert (ref.ntotal, ivf.nlist, ivf.nprobe, ref.d) == (3000, nlist, 1, 768)
    assert faiss.read_index(str(trained)).ntotal == 0
    index = rvc_index.read_index(added)
    q = x[::13] + 0.01
    assert_same_search(*index.search(q, 8), *ref.search(q, 8))


def test_train_is_the_command_line_train(tmp_path):
    a, _ = make_rvc_experiment(tmp_path / "a", "voice", 2500, d=256, folder="3_feature256")
    b, _ = make_rvc_experiment(tmp_path / "b", "voice", 2500, d=256, folder="3_feature256")
    s = rvc_index.train(a, seed=7, nlist=20, nprobe="auto", device="cpu")
    r = run_cli("train", b, "--seed", 7, "--nlist", 20, "--nprobe", "auto", "--device", "cpu",
                "--json", "-q")
    assert r.returncode == 0, r.stderr
    cli = json.loads(r.stdout)
    timing = {"seconds", "stage_seconds", "kmeans_iterations", "backend"}
    paths = {"feature_dir", "total_fea", "trained_index", "added_index"}
    assert s.keys() == cli.keys()
    assert {k: v for k, v in s.items() if k not in timing | paths} == \
        {k: v for k, v in cli.items() if k not in timing | paths}
    assert s["version"] == "v1" and s["nprobe"] == int(20 ** 0.3)
    # The same seed gives byte-identical files.
    for key in ("total_fea", "trained_index", "added_index"):
        mine, theirs = s[key], cli[key]
        assert mine.replace(str(a), "") == theirs.replace(str(b), "")
        assert open(mine, "rb").read() == open(theirs, "rb").read(), key


def test_train_progress_counts_increase_to_their_totals(tmp_path):
    exp, _ = make_rvc_experiment(tmp_path, "voice", 4000, d=64, files=4)
    seen = []
    rvc_index.train(exp, progress=lambda stage, done, total: seen.append((stage, done, total)))
    stages = [s for s, _, _ in seen]
    assert stages[0] == "load" and "k-means" in stages
    last = {}
    for stage, done, total in seen:
        assert isinstance(done, int) and isinstance(total, int) and 0 <= done <= total
        assert done >= last.get(stage, 0), (stage, done, last)
        last[stage] = done
    assert ("load", 4000, 4000) in seen and ("k-means", 10, 10) in seen


def test_train_compress_and_factory_pass_through(tmp_path):
    exp, _ = make_rvc_experiment(tmp_path, "big", 3000, d=32)
    s = rvc_index.train(exp, compress=500, factory="IVF{auto},PQ8x4fs,RFlat")
    assert s["indexed_rows"] == 500 and s["compression"]["params"]["k"] == 500
    assert s["nlist"] == rvc_nlist(500) and s["factory"] == f"IVF{s['nlist']},PQ8x4fs,RFlat"
    ref = faiss.read_index(s["added_index"])
    assert ref.ntotal == 500


def cli_error(*args):
    r = run_cli(*args)
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    return r.stderr.strip().removeprefix("rvc-index: error: ").removeprefix("error: ")


def test_bad_experiments_raise_the_command_line_message(tmp_path):
    missing = tmp_path / "logs" / "nobody"
    with pytest.raises(FileNotFoundError) as e:
        rvc_index.train(missing)
    assert str(e.value) == cli_error("train", missing, "-q") == f"{missing}: experiment folder not found"

    empty = tmp_path / "logs" / "empty"
    empty.mkdir(parents=True)
    with pytest.raises(ValueError) as e:
        rvc_index.train(empty)
    assert str(e.value) == cli_error("train", empty, "-q")
    assert "no features" in str(e.value)

    exp, _ = make_rvc_experiment(tmp_path, "voice", 100, d=32)
    (exp / "3_feature768" / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError) as e:
        rvc_index.train(exp)
    assert str(e.value) == cli_error("train", exp, "-q")
    assert "bad.npy" in str(e.value)
    assert sorted(p.name for p in exp.iterdir()) == ["3_feature768"]


@pytest.mark.parametrize("kw,message", [
    ({"nlist": 0}, "--nlist must be at least 1"),
    ({"nlist": 5000}, "fewer than the 5000 lists"),
    ({"nprobe": 0}, "invalid value '0' for '--nprobe <NPROBE>'"),
    ({"seed": -1}, "invalid value '-1' for '--seed <SEED>'"),
    ({"compress": "lots"}, "invalid value 'lots' for '--compress <COMPRESS>'"),
    ({"factory": "HNSW32"}, "unsupported: factory string \"HNSW32\""),
    ({"device": "tpu"}, "invalid value 'tpu' for '--device <DEVICE>'"),
])
def test_bad_settings_raise_value_error(tmp_path, kw, message):
    exp, _ = make_rvc_experiment(tmp_path, "voice", 400, d=32)
    with pytest.raises(ValueError) as e:
        rvc_index.train(exp, **kw)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert sorted(p.name for p in exp.iterdir()) == ["3_feature768"]


def make_applio_model(root, name, n, d=768, files=3, seed=0):
    """logs/<model>/extracted/*.npy, as Applio's feature extraction writes them."""
    exp, x = make_rvc_experiment(root, name, n, d=d, files=files, seed=seed, folder="extracted")
    return exp, x


def test_applio_layout_writes_one_model_index_faiss_loads(tmp_path):
    exp, x = make_applio_model(tmp_path / "a", "singer", 2000)
    s = rvc_index.train(exp, device="cpu")          # detected from extracted/
    assert s["layout"] == "applio" and s["n"] == 2000
    index = exp / "singer.index"
    assert s["added_index"] == str(index)
    # Applio writes its one index and nothing else (no total_fea.npy, no
    # trained_/added_ files, which its clean-up would delete).
    # (and rvc-index's record of what it wrote, for reruns).
    names = sorted(p.name for p in exp.iterdir())
    assert names == [".rvc-index-manifest.json", "extracted", "singer.index"]
    ref = faiss.read_index(str(index))
    nlist = rvc_nlist(2000)
    assert (ref.ntotal, faiss.extract_index_ivf(ref).nlist, ref.d) == (2000, nlist, 768)
    q = x[::11] + 0.01
    assert_same_search(*rvc_index.read_index(index).search(q, 8), *ref.search(q, 8))
    # The same as the command line's file, byte for byte.
    b, _ = make_applio_model(tmp_path / "b", "singer", 2000)
    r = run_cli("train", b, "--layout", "applio", "--device", "cpu", "-q")
    assert r.returncode == 0, r.stderr
    assert (b / "singer.index").read_bytes() == index.read_bytes()


def test_skip_existing_output_and_link(tmp_path):
    exp, _ = make_applio_model(tmp_path, "singer", 1500, d=256)
    first = rvc_index.train(exp, output="voice.index", device="cpu")
    assert first["added_index"] == str(exp / "voice.index")
    before = (exp / "voice.index").stat().st_mtime_ns
    again = rvc_index.train(exp, output="voice.index", skip_existing=True)
    assert again["skipped"] is True and again["added_index"] == str(exp / "voice.index")
    assert (exp / "voice.index").stat().st_mtime_ns == before

    rvc, _ = make_rvc_experiment(tmp_path, "voice", 1500, d=256, folder="3_feature256")
    outside = tmp_path / "outside"
    s = rvc_index.train(rvc, layout="rvc-main", link=outside, device="cpu")
    assert s["layout"] == "rvc-main" and not (rvc / "total_fea.npy").exists()
    # RVC main's name in outside_index_root: <exp>_<added index name>.
    linked = outside / ("voice_" + os.path.basename(s["added_index"]))
    assert s["link"] == str(linked)
    assert linked.exists() and linked.read_bytes() == open(s["added_index"], "rb").read()


def test_recall_stores_the_nprobe_that_reaches_it(tmp_path):
    exp, x = make_rvc_experiment(tmp_path, "voice", 6000, d=32)
    s = rvc_index.train(exp, recall=0.9, device="cpu")
    chosen = s["nprobe"]
    assert s["recall"]["target"] == 0.9 and chosen >= 1
    assert f"nprobe_{chosen}_" in os.path.basename(s["added_index"])
    assert faiss.extract_index_ivf(faiss.read_index(s["added_index"])).nprobe == chosen
    assert rvc_index.read_index(s["added_index"]).nprobe == chosen


def test_layout_none_is_the_folder_layout_and_unknown_values_are_refused(tmp_path):
    exp, _ = make_rvc_experiment(tmp_path, "voice", 400, d=32)
    assert rvc_index.train(exp, layout=None)["layout"] == "rvc"
    other, _ = make_rvc_experiment(tmp_path / "o", "voice", 400, d=32)
    with pytest.raises(ValueError, match="invalid value 'gradio' for '--layout <LAYOUT>'"):
        rvc_index.train(other, layout="gradio")
    assert sorted(p.name for p in other.iterdir()) == ["3_feature768"]
