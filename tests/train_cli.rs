//! `rvc-index train` end to end: files checked with real faiss.

mod common;

use std::path::Path;

use common::*;
use ndarray::{Array2, Axis, concatenate};
use ndarray_npy::{read_npy, write_npy};

fn train_json(args: &[&str]) -> serde_json::Value {
    let mut a = vec!["train", "--device", "cpu", "--json", "--quiet"];
    a.extend_from_slice(args);
    let o = run(&a);
    assert!(o.status.success(), "train failed: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("--json prints JSON")
}

const CHECK_ADDED: &str = r#"
import sys, subprocess, numpy as np, faiss
added, trained, total, helper = sys.argv[1:5]
x = np.load(total)
ix = faiss.read_index(added)
ivf = faiss.extract_index_ivf(ix)
assert ix.ntotal == x.shape[0], (ix.ntotal, x.shape)
assert ix.d == x.shape[1]
assert ivf.nprobe == 1, ivf.nprobe
assert ix.metric_type == faiss.METRIC_L2
assert ix.is_trained
nlist = ivf.nlist
assert ivf.quantizer.ntotal == nlist
# RVC reads every vector back: row i must be the vector with id i.
assert np.array_equal(ix.reconstruct_n(0, ix.ntotal), x)
# Each row sits in the list of its nearest centroid (exact ties aside).
ours = np.full(x.shape[0], -1)
inv = ivf.invlists
for l in range(nlist):
    n = inv.list_size(l)
    if n:
        ids = faiss.rev_swig_ptr(inv.get_ids(l), n).copy()
        assert np.all(np.diff(ids) > 0), "ids ascend inside a list"
        ours[ids] = l
assert np.all(ours >= 0)
cent = ivf.quantizer.reconstruct_n(0, nlist)
D, I = ivf.quantizer.search(x, 1)
diff = np.nonzero(I[:, 0] != ours)[0]
d_ours = ((x[diff] - cent[ours[diff]]) ** 2).sum(1)
d_faiss = ((x[diff] - cent[I[diff, 0]]) ** 2).sum(1)
assert np.allclose(d_ours, d_faiss, rtol=1e-5, atol=1e-5), (diff, d_ours, d_faiss)
t = faiss.read_index(trained)
assert t.ntotal == 0 and t.is_trained and faiss.extract_index_ivf(t).nprobe == 1
assert np.array_equal(faiss.extract_index_ivf(t).quantizer.reconstruct_n(0, nlist), cent)
r = subprocess.run([sys.executable, helper, "verify", added, trained], capture_output=True, text=True)
assert r.returncode == 0 and r.stdout.count(": OK\n") == 2, r.stdout + r.stderr
print("OK", nlist, len(diff))
"#;

#[test]
fn added_index_loads_in_faiss_with_rvc_contract() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(1500, 768, 60, 1);
    let exp = make_experiment(dir.path(), "voice", &x, 170);
    let j = train_json(&[exp.to_str().unwrap()]);
    assert_eq!(j["n"], 1500);
    assert_eq!(j["d"], 768);
    assert_eq!(j["nlist"], 1500 / 39);
    let names = listing(&exp);
    let added = "added_IVF38_Flat_nprobe_1_voice_v2.index".to_string();
    let trained = "trained_IVF38_Flat_nprobe_1_voice_v2.index".to_string();
    // RVC's three files, and the manifest of the set (hidden, see batch).
    assert_eq!(
        names,
        vec![
            ".rvc-index-manifest.json".to_string(),
            "3_feature768".to_string(),
            added.clone(),
            "total_fea.npy".into(),
            trained.clone()
        ]
    );
    let out = python(
        CHECK_ADDED,
        &[
            exp.join(&added).to_str().unwrap(),
            exp.join(&trained).to_str().unwrap(),
            exp.join("total_fea.npy").to_str().unwrap(),
            faiss_helper().to_str().unwrap(),
        ],
    );
    if let Some(out) = out {
        assert!(out.starts_with("OK 38"), "{out}");
    }
}

const FAISS_KMEANS: &str = r#"
import sys, json, numpy as np, faiss
x = np.load(sys.argv[1]); k = int(sys.argv[2])
clus = faiss.Clustering(x.shape[1], k)
clus.niter = 10; clus.seed = 1234; clus.max_points_per_centroid = 256
index = faiss.IndexFlatL2(x.shape[1])
clus.train(x, index)
obj = [clus.iteration_stats.at(i).obj for i in range(clus.iteration_stats.size())]
np.save(sys.argv[3], faiss.vector_to_array(clus.centroids).reshape(k, -1))
print(json.dumps(obj))
"#;

/// Same rows, same seed: our k-means follows faiss's (initial centroids,
/// splits of empty clusters, objective per iteration).
#[test]
fn kmeans_follows_faiss_on_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(1200, 32, 24, 7);
    let exp = make_experiment(dir.path(), "k", &x, 100);
    let fd = exp.join("3_feature768");
    let j = train_json(&[
        exp.to_str().unwrap(),
        "--feature-dir",
        fd.to_str().unwrap(),
        "--nlist",
        "20",
    ]);
    let total = exp.join("total_fea.npy");
    let cpath = dir.path().join("faiss_centroids.npy");
    let Some(out) = python(
        FAISS_KMEANS,
        &[total.to_str().unwrap(), "20", cpath.to_str().unwrap()],
    ) else {
        return;
    };
    let faiss_obj: Vec<f64> = serde_json::from_str(out.trim()).unwrap();
    let ours: Vec<f64> = j["kmeans_iterations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["objective"].as_f64().unwrap())
        .collect();
    assert!(ours.len() >= 2);
    for (a, b) in ours.iter().zip(&faiss_obj) {
        assert!(
            (a - b).abs() <= 1e-5 * b.abs(),
            "objective {a} vs faiss {b}"
        );
    }
    let fc: Array2<f32> = read_npy(&cpath).unwrap();
    let ix = exp.join("trained_IVF20_Flat_nprobe_1_k_v2.index");
    let out = python(
        "import sys, faiss, numpy as np\nix = faiss.read_index(sys.argv[1]); c = faiss.extract_index_ivf(ix).quantizer.reconstruct_n(0, 20)\nf = np.load(sys.argv[2])\nprint(np.abs(c - f).max() / np.abs(f).max())",
        &[ix.to_str().unwrap(), cpath.to_str().unwrap()],
    )
    .unwrap();
    let rel: f64 = out.trim().parse().unwrap();
    assert!(
        rel < 1e-4,
        "centroids differ from faiss's by {rel} (relative)"
    );
    assert_eq!(fc.dim(), (20, 32));
}

#[test]
fn same_seed_same_bytes_other_seed_other_shuffle() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(800, 256, 10, 3);
    let a = make_experiment(&dir.path().join("a"), "v", &x, 90);
    let b = make_experiment(&dir.path().join("b"), "v", &x, 90);
    let c = make_experiment(&dir.path().join("c"), "v", &x, 90);
    train_json(&[a.to_str().unwrap()]);
    train_json(&[b.to_str().unwrap()]);
    train_json(&[c.to_str().unwrap(), "--seed", "5"]);
    let files = [
        "total_fea.npy",
        "trained_IVF20_Flat_nprobe_1_v_v1.index",
        "added_IVF20_Flat_nprobe_1_v_v1.index",
    ];
    for f in files {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    assert_ne!(
        std::fs::read(a.join(files[0])).unwrap(),
        std::fs::read(c.join(files[0])).unwrap()
    );
}

/// Files are read in Python `sorted()` order (byte order of UTF-8 names) and
/// row i of total_fea.npy is row perm[i] of that concatenation.
#[test]
fn sorted_name_order_and_documented_shuffle() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("stimme-é");
    let fd = exp.join("3_feature256");
    std::fs::create_dir_all(&fd).unwrap();
    let names = [
        "0_2.npy", "0_10.npy", "é_0.npy", "0_1.npy", "Z.npy", "a.npy",
    ];
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut parts = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let x = mixture(20, 256, 2, 100 + i as u64);
        write_npy(fd.join(n), &x).unwrap();
        parts.push((n.to_string(), x));
    }
    std::fs::write(fd.join("notes.txt"), "not a feature file").unwrap();
    let ordered: Vec<_> = sorted
        .iter()
        .map(|n| parts.iter().find(|(m, _)| m == n).unwrap().1.view())
        .collect();
    let concat = concatenate(Axis(0), &ordered).unwrap();
    train_json(&[exp.to_str().unwrap(), "--seed", "9"]);
    let total: Array2<f32> = read_npy(exp.join("total_fea.npy")).unwrap();
    let perm = rvc_index::train::rvc::shuffle_permutation(concat.nrows(), 9);
    let expect = concat.select(Axis(0), &perm);
    assert_eq!(total, expect);
    assert!(
        exp.join("added_IVF3_Flat_nprobe_1_stimme-é_v1.index")
            .exists()
    );
}

#[test]
fn float16_and_float64_are_converted_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(120, 256, 3, 11);
    let exp = dir.path().join("mixed");
    let fd = exp.join("3_feature256");
    std::fs::create_dir_all(&fd).unwrap();
    let a = x.slice(ndarray::s![..40, ..]).to_owned();
    let b = x.slice(ndarray::s![40..80, ..]).mapv(|v| v as f64);
    let c = x.slice(ndarray::s![80.., ..]).mapv(half::f16::from_f32);
    write_npy(fd.join("0_0.npy"), &a).unwrap();
    write_npy(fd.join("0_1.npy"), &b).unwrap();
    // ndarray-npy cannot write float16: write the header and bytes by hand.
    write_f16_npy(&fd.join("0_2.npy"), &c);
    let o = run(&[
        "train",
        exp.to_str().unwrap(),
        "--device",
        "cpu",
        "--seed",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("0_1.npy: float64 converted to float32"),
        "{err}"
    );
    assert!(
        err.contains("0_2.npy: float16 converted to float32"),
        "{err}"
    );
    let total: Array2<f32> = read_npy(exp.join("total_fea.npy")).unwrap();
    let concat = concatenate(
        Axis(0),
        &[
            a.view(),
            b.mapv(|v| v as f32).view(),
            c.mapv(|v| v.to_f32()).view(),
        ],
    )
    .unwrap();
    let perm = rvc_index::train::rvc::shuffle_permutation(120, 1);
    assert_eq!(total, concat.select(Axis(0), &perm));
}

fn write_f16_npy(path: &Path, x: &Array2<half::f16>) {
    let dict = format!(
        "{{'descr': '<f2', 'fortran_order': False, 'shape': ({}, {}), }}",
        x.nrows(),
        x.ncols()
    );
    let mut header = dict.into_bytes();
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(b' ');
    }
    header.push(b'\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(&header);
    for v in x.iter() {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// The GPU backend (lavapipe in CI) builds a valid index of the same
/// quality: faiss's checks pass (each row in its nearest list, ids, vectors)
/// and the objective equals the CPU backend's within 0.5%. (The lists
/// themselves may differ: one float-rounding tie in an early iteration sends
/// k-means down a slightly different path.)
#[test]
fn gpu_backend_builds_an_equivalent_index() {
    if std::env::var("RVC_INDEX_SKIP_GPU_TESTS").as_deref() == Ok("1") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(2000, 256, 51, 13);
    let a = make_experiment(&dir.path().join("cpu"), "v", &x, 150);
    let b = make_experiment(&dir.path().join("gpu"), "v", &x, 150);
    let cpu = train_json(&[a.to_str().unwrap()]);
    let o = run(&[
        "train",
        b.to_str().unwrap(),
        "--device",
        "gpu",
        "--json",
        "--quiet",
    ]);
    assert!(o.status.success(), "--device gpu failed: {}", stderr(&o));
    let gpu: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(gpu["backend"]["kind"], "gpu", "{gpu}");
    let (oc, og) = (
        cpu["objective_per_row"].as_f64().unwrap(),
        gpu["objective_per_row"].as_f64().unwrap(),
    );
    assert!((oc - og).abs() <= 5e-3 * oc, "objective cpu {oc} gpu {og}");
    let out = python(
        CHECK_ADDED,
        &[
            b.join("added_IVF51_Flat_nprobe_1_v_v1.index")
                .to_str()
                .unwrap(),
            b.join("trained_IVF51_Flat_nprobe_1_v_v1.index")
                .to_str()
                .unwrap(),
            b.join("total_fea.npy").to_str().unwrap(),
            faiss_helper().to_str().unwrap(),
        ],
    );
    if let Some(out) = out {
        assert!(out.starts_with("OK 51"), "{out}");
    }
}

const CHECK_PQ: &str = r#"
import sys, numpy as np, faiss
ix = faiss.read_index(sys.argv[1]); x = np.load(sys.argv[2]); t = faiss.read_index(sys.argv[3])
assert ix.ntotal == x.shape[0] and t.ntotal == 0
# RFlat serves RVC's reconstruct_n from the exact vectors.
assert np.array_equal(ix.reconstruct_n(0, ix.ntotal), x)
ivf = faiss.extract_index_ivf(ix)
assert ivf.nprobe == 1 and ivf.nlist == int(sys.argv[4])
D, I = ix.search(x[:50], 8)
print("OK", (I[:, 0] == np.arange(50)).mean())
"#;

/// `train --factory` builds RVC's commented-out alternative, named after it.
#[test]
fn train_with_a_pq_refine_factory() {
    let dir = tempfile::tempdir().unwrap();
    let x = latent(2000, 256, 8, 17);
    let exp = make_experiment(dir.path(), "pq", &x, 250);
    let j = train_json(&[
        exp.to_str().unwrap(),
        "--factory",
        "IVF{auto},PQ128x4fs,RFlat",
    ]);
    assert_eq!(j["nlist"], 51);
    let added = exp.join("added_IVF51_PQ128x4fs_RFlat_nprobe_1_pq_v1.index");
    let trained = exp.join("trained_IVF51_PQ128x4fs_RFlat_nprobe_1_pq_v1.index");
    let out = python(
        CHECK_PQ,
        &[
            added.to_str().unwrap(),
            exp.join("total_fea.npy").to_str().unwrap(),
            trained.to_str().unwrap(),
            "51",
        ],
    );
    if let Some(out) = out {
        let hit: f64 = out.trim().strip_prefix("OK ").unwrap().parse().unwrap();
        assert!(
            hit >= 0.95,
            "a stored row is its own nearest neighbour: {hit}"
        );
    }
}

const OBJECTIVE: &str = r#"
import sys, numpy as np, faiss
ix = faiss.read_index(sys.argv[1])  # keeps the IVF part alive
ivf = faiss.extract_index_ivf(ix)
x = np.load(sys.argv[2])
D, _ = ivf.quantizer.search(x, 1)
print(float(D[:, 0].astype(np.float64).mean()))
"#;

/// Every index kind takes `--niter`, shows the k-means lines of `-v` and
/// reports `objective_per_row` with one meaning: the mean squared distance
/// of an indexed row to its nearest (= its list's) centroid, checked here
/// against faiss's own search of the stored quantizer.
#[test]
fn every_kind_takes_niter_and_verbose_and_reports_one_objective() {
    let dir = tempfile::tempdir().unwrap();
    let x = latent(3000, 256, 12, 23);
    for (name, factory) in [
        ("rvc", None),
        ("ivfflat", Some("IVF40,Flat")),
        ("pq", Some("IVF{auto},PQ64x4fs,RFlat")),
    ] {
        let exp = make_experiment(dir.path(), name, &x, 500);
        let mut args = vec![
            "train",
            exp.to_str().unwrap(),
            "--device",
            "cpu",
            "--niter",
            "2",
            "-v",
            "--json",
        ];
        if let Some(f) = factory {
            args.extend_from_slice(&["--factory", f]);
        }
        let o = run(&args);
        let err = stderr(&o);
        assert!(o.status.success(), "{name}: {err}");
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is the JSON");
        assert_eq!(
            j["kmeans_iterations"].as_array().unwrap().len(),
            2,
            "{name}"
        );
        assert!(
            err.contains("iteration 0 (") && err.contains("iteration 1 ("),
            "{name}: {err}"
        );
        assert!(!err.contains("iteration 2 ("), "{name}: {err}");
        let nlist = j["nlist"].as_u64().unwrap();
        let want_factory = match name {
            "pq" => format!("IVF{nlist},PQ64x4fs,RFlat"),
            _ => format!("IVF{nlist},Flat"),
        };
        assert_eq!(j["factory"], want_factory.as_str());
        let st = &j["stage_seconds"];
        assert!(st["kmeans"].as_f64().unwrap() > 0.0, "{name}: {st}");
        assert_eq!(st["pq_train"].as_f64().unwrap() > 0.0, name == "pq");
        assert_eq!(st["encode"].as_f64().unwrap() > 0.0, name == "pq");

        let added = j["added_index"].as_str().unwrap();
        let total = j["total_fea"].as_str().unwrap();
        if let Some(out) = python(OBJECTIVE, &[added, total]) {
            let faiss_obj: f64 = out.trim().parse().unwrap();
            let ours = j["objective_per_row"].as_f64().unwrap();
            assert!(
                (ours - faiss_obj).abs() <= 1e-4 * faiss_obj,
                "{name}: objective_per_row {ours} vs faiss {faiss_obj}"
            );
        }
    }
}
