//! α-query expansion against a NumPy re-enactment of the formula.

mod common;

use common::*;
use ndarray::Array2;
use ndarray_npy::{read_npy, write_npy};

const NUMPY_QE: &str = r#"
import sys, numpy as np, faiss
x = np.load(sys.argv[1]); k = int(sys.argv[2]); alpha = float(sys.argv[3])
xn = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)).astype(np.float32)
index = faiss.IndexFlatIP(x.shape[1]); index.add(xn)
D, I = index.search(xn, k)
w = np.power(np.maximum(D, 0), alpha)
y = np.einsum("nm,nmd->nd", w, xn[I])
y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-9)
ours = np.load(sys.argv[4])
print(np.abs(ours - y).max())
"#;

#[test]
fn expand_equals_numpy_formula() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(700, 40, 12, 8);
    let input = dir.path().join("in.npy");
    let output = dir.path().join("out.npy");
    write_npy(&input, &x).unwrap();
    let o = run(&[
        "expand",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--num-expand",
        "7",
        "--alpha",
        "3",
        "--batch-size",
        "100",
        "--device",
        "cpu",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    if let Some(out) = python(
        NUMPY_QE,
        &[input.to_str().unwrap(), "7", "3", output.to_str().unwrap()],
    ) {
        let err: f64 = out.trim().parse().unwrap();
        assert!(err < 1e-5, "max abs difference {err}");
    }
}

/// `train --query-expansion` indexes exactly what `expand` makes of the shuffled rows.
#[test]
fn train_with_query_expansion_indexes_expanded_rows() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(400, 256, 6, 21);
    let plain = make_experiment(&dir.path().join("a"), "v", &x, 100);
    let qe = make_experiment(&dir.path().join("b"), "v", &x, 100);
    let run_ok = |args: &[&str]| {
        let o = run(args);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    run_ok(&["train", plain.to_str().unwrap(), "--device", "cpu", "-q"]);
    run_ok(&[
        "train",
        qe.to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
        "--query-expansion",
        "alpha=2,k=5",
    ]);
    let expanded = dir.path().join("expanded.npy");
    run_ok(&[
        "expand",
        plain.join("total_fea.npy").to_str().unwrap(),
        "-o",
        expanded.to_str().unwrap(),
        "--alpha",
        "2",
        "--num-expand",
        "5",
        "--device",
        "cpu",
        "-q",
    ]);
    let a: Array2<f32> = read_npy(&expanded).unwrap();
    let b: Array2<f32> = read_npy(qe.join("total_fea.npy")).unwrap();
    assert_eq!(a, b);
    assert!(qe.join("added_IVF10_Flat_nprobe_1_v_v1.index").exists());
}

#[test]
fn expand_rejects_bad_settings_and_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.npy");
    let o = run(&[
        "expand",
        dir.path().join("missing.npy").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("missing.npy"),
        "{}",
        stderr(&o)
    );
    let input = dir.path().join("in.npy");
    write_npy(&input, &mixture(10, 4, 2, 1)).unwrap();
    let o = run(&[
        "expand",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--num-expand",
        "0",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("at least 1"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
}

const NUMPY_SEARCH_QE: &str = r#"
import sys, numpy as np, faiss
ix = faiss.read_index(sys.argv[1]); q = np.load(sys.argv[2]); alpha = 2.0; k = 5
db = ix.reconstruct_n(0, ix.ntotal)
db = (db / np.maximum(np.linalg.norm(db, axis=1, keepdims=True), 1e-9)).astype(np.float32)
qn = (q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-9)).astype(np.float32)
flat = faiss.IndexFlatIP(db.shape[1]); flat.add(db)
D, I = flat.search(qn, k)
y = np.einsum("nm,nmd->nd", np.power(np.maximum(D, 0), alpha), db[I])
y = (y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-9)).astype(np.float32)
_, R = ix.search(y, 8)
print((R == np.load(sys.argv[3])).mean())
"#;

/// `search --query-expansion` expands the queries against the index's own
/// vectors before searching, as the NumPy formula does.
#[test]
fn search_with_query_expansion_matches_numpy() {
    let dir = tempfile::tempdir().unwrap();
    // Smooth data: QE of tight clusters makes their rows near-identical (ties).
    let all = latent(950, 256, 8, 31);
    let x = all.slice(ndarray::s![..900, ..]).to_owned();
    let exp = make_experiment(dir.path(), "v", &x, 100);
    let o = run(&[
        "train",
        exp.to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
        "--query-expansion",
        "alpha=2,k=5",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let q = dir.path().join("q.npy");
    write_npy(&q, &all.slice(ndarray::s![900.., ..]).to_owned()).unwrap();
    let index = exp.join("added_IVF23_Flat_nprobe_1_v_v1.index");
    let out = dir.path().join("r");
    let o = run(&[
        "search",
        index.to_str().unwrap(),
        q.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--query-expansion",
        "alpha=2,k=5",
        "--nprobe",
        "4",
        "--device",
        "cpu",
        "-q",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ids = dir.path().join("r_ids.npy");
    // faiss searches with the nprobe stored in the file; ask it for 4 too.
    let script = NUMPY_SEARCH_QE.replace(
        "_, R = ix.search",
        "faiss.extract_index_ivf(ix).nprobe = 4\n_, R = ix.search",
    );
    if let Some(r) = python(
        &script,
        &[
            index.to_str().unwrap(),
            q.to_str().unwrap(),
            ids.to_str().unwrap(),
        ],
    ) {
        let agree: f64 = r.trim().parse().unwrap();
        assert!(agree >= 0.99, "ids agree on {agree}");
    }
}

#[test]
fn qe_params_parse_factory_with_its_commas() {
    use rvc_index::qe::QeParams;
    let p: QeParams = "alpha=2,k=8,factory=IVF512,PQ128x4fs,RFlat,nprobe=4"
        .parse()
        .unwrap();
    assert_eq!((p.alpha, p.num_expand, p.nprobe), (2.0, 8, 4));
    assert_eq!(p.factory.unwrap().to_string(), "IVF512,PQ128x4fs,RFlat");
    let p: QeParams = "factory=IVF8,Flat,k=3".parse().unwrap();
    assert_eq!((p.num_expand, p.nprobe), (3, rvc_index::qe::DEFAULT_NPROBE));
    assert_eq!(p.factory.unwrap().to_string(), "IVF8,Flat");
    assert!("alpha=3".parse::<QeParams>().unwrap().factory.is_none());
    for bad in [
        "alpha=3,Flat",
        "factory=IVF8,Bogus",
        "k=3,nprobe=0",
        "factory=",
    ] {
        assert!(bad.parse::<QeParams>().is_err(), "{bad}");
    }
}

/// Row-wise cosine of two row-normalised matrices.
fn cosines(a: &Array2<f32>, b: &Array2<f32>) -> Vec<f32> {
    a.rows()
        .into_iter()
        .zip(b.rows())
        .map(|(x, y)| x.dot(&y))
        .collect()
}

/// `expand --factory`: neighbours from an IVF-PQ index built over the rows;
/// on clustered data the result is close to the exact expansion.
#[test]
fn expand_with_factory_is_close_to_exact() {
    let dir = tempfile::tempdir().unwrap();
    // 300 small clusters (10 rows, noise 2 around centres spread 10): a
    // row's nearest neighbours are its cluster mates, and expansion moves it
    // well towards their mean.
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(6);
    let x = mixture(3000, 32, 300, 5).mapv(|v| v + 1.7 * normal(&mut rng));
    let input = dir.path().join("in.npy");
    write_npy(&input, &x).unwrap();
    let expand = |out: &str, extra: &[&str]| -> (Array2<f32>, String) {
        let path = dir.path().join(out);
        let mut args = vec![
            "expand",
            input.to_str().unwrap(),
            "-o",
            path.to_str().unwrap(),
            "--num-expand",
            "8",
            "--device",
            "cpu",
            "--json",
            "-q",
        ];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        (
            read_npy(&path).unwrap(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (exact, _) = expand("exact.npy", &[]);
    let (approx, json) = expand(
        "approx.npy",
        &["--factory", "IVF16,PQ16x4fs,RFlat", "--nprobe", "4"],
    );
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(j["params"]["factory"], "IVF16,PQ16x4fs,RFlat");
    assert_eq!(j["params"]["nprobe"], 4);
    assert!(j["seconds"]["index_build"].as_f64().unwrap() > 0.0);
    let mean = |c: &[f32]| c.iter().sum::<f32>() / c.len() as f32;
    let c = cosines(&exact, &approx);
    let min = c.iter().copied().fold(f32::INFINITY, f32::min);
    // The unexpanded rows, what garbage neighbours (weights ~0) would leave.
    let mut xn = x.clone();
    rvc_index::qe::normalize_rows(&mut xn);
    let raw = mean(&cosines(&exact, &xn));
    assert!(
        min > 0.98 && 1.0 - mean(&c) < 0.2 * (1.0 - raw),
        "mean {} min {min}, unexpanded rows {raw}",
        mean(&c)
    );
    // An index with more lists than rows is refused with a clear message.
    let o = run(&[
        "expand",
        input.to_str().unwrap(),
        "-o",
        dir.path().join("bad.npy").to_str().unwrap(),
        "--factory",
        "IVF5000,Flat",
        "--device",
        "cpu",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("fewer than"),
        "{}",
        stderr(&o)
    );
}

/// `train --query-expansion ...,factory=IVF8,Flat,nprobe=8` probes every
/// list, so its neighbours are the exact ones: the indexed rows equal the
/// exact expansion (up to near-ties at the k-th neighbour).
#[test]
fn train_query_expansion_with_factory() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(400, 256, 6, 21);
    let plain = make_experiment(&dir.path().join("a"), "v", &x, 100);
    let qe = make_experiment(&dir.path().join("b"), "v", &x, 100);
    let run_ok = |args: &[&str]| {
        let o = run(args);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    run_ok(&["train", plain.to_str().unwrap(), "--device", "cpu", "-q"]);
    run_ok(&[
        "train",
        qe.to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
        "--query-expansion",
        "alpha=2,k=5,factory=IVF8,Flat,nprobe=8",
    ]);
    let expanded = dir.path().join("expanded.npy");
    run_ok(&[
        "expand",
        plain.join("total_fea.npy").to_str().unwrap(),
        "-o",
        expanded.to_str().unwrap(),
        "--alpha",
        "2",
        "--num-expand",
        "5",
        "--device",
        "cpu",
        "-q",
    ]);
    let a: Array2<f32> = read_npy(&expanded).unwrap();
    let b: Array2<f32> = read_npy(qe.join("total_fea.npy")).unwrap();
    let same = a
        .rows()
        .into_iter()
        .zip(b.rows())
        .filter(|(x, y)| x.iter().zip(y.iter()).all(|(p, q)| (p - q).abs() < 1e-5))
        .count();
    assert!(
        same as f64 >= 0.99 * a.nrows() as f64,
        "{same} of {}",
        a.nrows()
    );
}
