//! Shared by tests/layouts*.rs: an Applio-made model folder, `train`
//! runs, and the check of an index with real faiss.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use super::common::*;
use ndarray::{Array1, Array2, Axis};
use ndarray_npy::write_npy;

/// A model folder as Applio's preprocessing and extraction leave it:
/// `sliced_audios/`, `sliced_audios_16k/`, `f0/` and `f0_voiced/` (1-D
/// `<slice>.wav.npy` pitch files), `extracted/<slice>.npy` (the features),
/// `model_info.json`, `config.json`, `filelist.txt`.
pub fn applio_folder(root: &Path, model: &str, x: &Array2<f32>, rows_per_file: usize) -> PathBuf {
    let exp = root.join(model);
    for d in [
        "sliced_audios",
        "sliced_audios_16k",
        "f0",
        "f0_voiced",
        "extracted",
    ] {
        std::fs::create_dir_all(exp.join(d)).unwrap();
    }
    for (i, chunk) in x.axis_chunks_iter(Axis(0), rows_per_file).enumerate() {
        let slice = format!("0_{i}_0");
        write_npy(
            exp.join(format!("extracted/{slice}.npy")),
            &chunk.to_owned(),
        )
        .unwrap();
        let pitch = Array1::<f32>::from_elem(chunk.nrows(), 220.0);
        for d in ["f0", "f0_voiced"] {
            write_npy(exp.join(format!("{d}/{slice}.wav.npy")), &pitch).unwrap();
        }
        for d in ["sliced_audios", "sliced_audios_16k"] {
            std::fs::write(exp.join(format!("{d}/{slice}.wav")), b"RIFF").unwrap();
        }
    }
    std::fs::write(
        exp.join("model_info.json"),
        r#"{"embedder_model": "contentvec"}"#,
    )
    .unwrap();
    std::fs::write(exp.join("config.json"), "{}").unwrap();
    std::fs::write(exp.join("filelist.txt"), "").unwrap();
    exp
}

pub fn train(args: &[&str]) -> Output {
    let mut a = vec!["train", "--device", "cpu", "--json", "--quiet"];
    a.extend_from_slice(args);
    run(&a)
}

pub fn train_json(args: &[&str]) -> serde_json::Value {
    let o = train(args);
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("--json prints JSON")
}

/// The one error line, checked: non-zero exit, no panic.
pub fn error_line(o: &Output) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "expected a failure: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("device:")).collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("rvc-index: error: "), "{err}");
    lines[0].to_string()
}

/// `x`'s rows in the order `train --seed` indexes them.
pub fn shuffled(x: &Array2<f32>, seed: u64) -> Array2<f32> {
    let perm = rvc_index::train::rvc::shuffle_permutation(x.nrows(), seed);
    x.select(Axis(0), &perm)
}

/// What RVC's and Applio's inference need of the index, checked by faiss:
/// IVF-Flat, L2, nprobe 1, RVC's nlist rule, ids 0..n ascending in each
/// list, `reconstruct_n(0, ntotal)` = the rows in our shuffled order, and
/// `search(k=8)` answering; then faiss_helper's structural check.
pub const CHECK: &str = r#"
import sys, subprocess, numpy as np, faiss
path, rows, helper = sys.argv[1:4]
x = np.load(rows)
n, d = x.shape
ix = faiss.read_index(path)
ivf = faiss.extract_index_ivf(ix)
assert isinstance(ix, faiss.IndexIVFFlat), type(ix)
assert (ix.ntotal, ix.d) == (n, d), (ix.ntotal, ix.d, x.shape)
assert ivf.nprobe == 1 and ix.metric_type == faiss.METRIC_L2
assert ivf.nlist == min(int(16 * np.sqrt(n)), n // 39), ivf.nlist
ids = []
for l in range(ivf.nlist):
    k = ivf.invlists.list_size(l)
    if k:
        li = faiss.rev_swig_ptr(ivf.invlists.get_ids(l), k).copy()
        assert np.all(np.diff(li) > 0)
        ids.append(li)
assert np.array_equal(np.sort(np.concatenate(ids)), np.arange(n))
big_npy = ix.reconstruct_n(0, ix.ntotal)
assert np.array_equal(big_npy, x)
D, I = ix.search(x[:5] + 0.01, 8)
assert I.shape == (5, 8) and I[:, 0].tolist() == list(range(5)), I
r = subprocess.run([sys.executable, helper, "verify", path], capture_output=True, text=True)
assert r.returncode == 0 and ": OK" in r.stdout, r.stdout + r.stderr
print("OK", ivf.nlist)
"#;

pub fn check_with_faiss(index: &Path, rows: &Array2<f32>, dir: &Path) {
    let npy = dir.join(format!(
        "expected_{}.npy",
        index.file_name().unwrap().to_string_lossy()
    ));
    write_npy(&npy, rows).unwrap();
    let helper = faiss_helper();
    if let Some(out) = python(
        CHECK,
        &[
            index.to_str().unwrap(),
            npy.to_str().unwrap(),
            helper.to_str().unwrap(),
        ],
    ) {
        assert!(out.starts_with("OK"), "{out}");
    }
}

pub fn added_listing(exp: &Path, before: &[String], new: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = before.to_vec();
    v.extend(new.iter().map(|s| s.to_string()));
    v.sort();
    let got = listing(exp);
    assert_eq!(got, v, "{}", exp.display());
    got
}
