//! `train --recall R`: the stored nprobe is the smallest whose recall@8
//! reaches R, and that holds for queries the index has never seen.

mod common;

use std::path::Path;

use common::*;
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rvc_index::Backend;
use rvc_index::Metric;
use rvc_index::compute::cpu::CpuBackend;
use rvc_index::faiss::Index;
use rvc_index::index::build;
use rvc_index::index::factory::Factory;
use rvc_index::index::recall::{self, Sample, Timeline};
use rvc_index::progress::Progress;

/// A Gaussian mixture of `comps` overlapping components in `d` dimensions
/// (centres spread 2, unit noise, scales per component): `n` rows drawn
/// from the stream `stream`, the components fixed by `seed`.
fn gaussian_mixture(n: usize, d: usize, comps: usize, seed: u64, stream: u64) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..comps * d).map(|_| 2.0 * normal(&mut rng)).collect();
    let scales: Vec<f32> = (0..comps)
        .map(|c| 0.6 + 0.8 * (c % 5) as f32 / 4.0)
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(stream));
    let mut x = Array2::zeros((n, d));
    for i in 0..n {
        let c = (rand::RngExt::random::<u32>(&mut rng) as usize) % comps;
        for j in 0..d {
            x[[i, j]] = centres[c * d + j] + scales[c] * normal(&mut rng);
        }
    }
    x
}

fn train_json(args: &[&str]) -> serde_json::Value {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("stdout is the JSON")
}

fn train_recall(exp: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "train",
        exp.to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
        "--json",
    ];
    args.extend_from_slice(extra);
    train_json(&args)
}

/// Recall@8 of the added index on `fresh` at nprobe p-1 and p, computed by
/// real faiss against its exact search over total_fea.npy, and the nprobe
/// both files store.
const FRESH: &str = r#"
import sys, json, numpy as np, faiss
trained, added, total, fresh, p = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
ix = faiss.read_index(added)
ivf = faiss.extract_index_ivf(ix)
stored = [faiss.extract_index_ivf(faiss.read_index(trained)).nprobe, ivf.nprobe]
xb = np.load(total); xq = np.load(fresh)
flat = faiss.IndexFlatL2(xb.shape[1]); flat.add(xb)
_, gt = flat.search(xq, 8)
out = {"stored": stored, "ntotal": ix.ntotal}
for q in [p - 1, p]:
    if q < 1: continue
    ivf.nprobe = q
    _, I = ix.search(xq, 8)
    out[str(q)] = float(np.mean([len(set(a) & set(b)) for a, b in zip(I, gt)]) / 8)
print(json.dumps(out))
"#;

fn curve_of(c: &serde_json::Value) -> Vec<(usize, f64)> {
    c["curve"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["nprobe"].as_u64().unwrap() as usize,
                p["recall_at_8"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Train with `--recall r` and check the choice against fresh queries
/// from the same mixture, with faiss.
fn check_choice(x: &Array2<f32>, fresh: &Array2<f32>, r: f64, name: &str) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let exp = make_experiment(dir.path(), name, x, 150);
    let rs = r.to_string();
    let j = train_recall(&exp, &["--recall", &rs]);
    let rep = &j["recall"];
    let p = rep["nprobe"].as_u64().unwrap() as usize;
    assert_eq!(j["nprobe"].as_u64().unwrap() as usize, p);
    assert!(
        p >= 2,
        "{name}: pick a target above nprobe 1's recall: {rep}"
    );
    let added = j["added_index"].as_str().unwrap();
    let trained = j["trained_index"].as_str().unwrap();
    for f in [added, trained] {
        assert!(f.contains(&format!("_nprobe_{p}_")), "{f}");
    }

    // The measured curve: monotone, reaches r at p and not at p - 1.
    let cand = &rep["candidates"][0];
    assert_eq!(cand["method"], "exact");
    let curve = curve_of(cand);
    assert!(curve.windows(2).all(|w| w[1].1 >= w[0].1), "{curve:?}");
    let at = |q: usize| curve.iter().find(|c| c.0 == q).unwrap().1;
    assert!(at(p) >= r && at(p - 1) < r, "{name}: {curve:?}");
    assert_eq!(rep["recall_at_8"].as_f64().unwrap(), at(p));
    assert!(cand["ms_per_1000_queries"].as_f64().unwrap() > 0.0);

    // Fresh queries, real faiss: recall at the stored nprobe within 0.02 of
    // the target, nprobe - 1 short of it.
    let fresh_path = dir.path().join("fresh.npy");
    ndarray_npy::write_npy(&fresh_path, fresh).unwrap();
    let total = exp.join("total_fea.npy");
    let ps = p.to_string();
    let args = [
        trained,
        added,
        total.to_str().unwrap(),
        fresh_path.to_str().unwrap(),
        &ps,
    ];
    if let Some(out) = python(FRESH, &args) {
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(v["stored"], serde_json::json!([p, p]), "{v}");
        let at_p = v[&ps].as_f64().unwrap();
        let below = v[&(p - 1).to_string()].as_f64().unwrap();
        eprintln!(
            "{name}: R {r}, nprobe {p}: in-index {:.4} / fresh {at_p:.4}; at {}: {:.4} / {below:.4}",
            at(p),
            p - 1,
            at(p - 1)
        );
        assert!(
            at_p >= r - 0.02,
            "{name}: fresh recall {at_p} at nprobe {p}, target {r}"
        );
        assert!(
            below < r,
            "{name}: fresh recall {below} at nprobe {} already reaches {r}",
            p - 1
        );
    }
    p
}

#[test]
fn stored_nprobe_reaches_the_recall_on_fresh_queries() {
    // Overlapping Gaussian components: the true neighbours of a frame are
    // spread over several lists.
    let x = gaussian_mixture(12_000, 32, 40, 5, 0);
    let fresh = gaussian_mixture(2_000, 32, 40, 5, 1);
    let p90 = check_choice(&x, &fresh, 0.9, "gauss90");
    let p97 = check_choice(&x, &fresh, 0.97, "gauss97");
    assert!(p97 > p90, "a higher target needs more probes: {p90} {p97}");
}

#[test]
fn harness_mixture_fresh_queries() {
    // The baseline harness's RVC-like generator (hierarchical anisotropic
    // mixture in a latent subspace); fresh queries are its query stream.
    let x = rvc_index::synthetic::database(12_000, 64, 3).unwrap();
    let fresh = rvc_index::synthetic::queries(2_000, 64, 3).unwrap();
    check_choice(&x, &fresh, 0.95, "harness95");
}

#[test]
fn same_seed_same_choice_and_bytes() {
    let x = gaussian_mixture(3_000, 16, 12, 9, 0);
    let dir = tempfile::tempdir().unwrap();
    let a = make_experiment(dir.path(), "a", &x, 100);
    let b = make_experiment(dir.path(), "b", &x, 100);
    let ja = train_recall(&a, &["--recall", "0.95", "--seed", "4"]);
    let jb = train_recall(&b, &["--recall", "0.95", "--seed", "4"]);
    let pick = |j: &serde_json::Value| {
        let c = &j["recall"]["candidates"][0];
        (j["recall"]["nprobe"].clone(), curve_of(c))
    };
    assert_eq!(pick(&ja), pick(&jb));
    let name = |j: &serde_json::Value| {
        Path::new(j["added_index"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace("_a_", "_X_")
            .replace("_b_", "_X_")
    };
    assert_eq!(name(&ja), name(&jb));
    let bytes = |j: &serde_json::Value| std::fs::read(j["added_index"].as_str().unwrap()).unwrap();
    assert_eq!(bytes(&ja), bytes(&jb));
}

#[test]
fn default_stays_nprobe_1_and_info_shows_the_stored_nprobe() {
    let x = gaussian_mixture(3_000, 16, 12, 2, 0);
    let dir = tempfile::tempdir().unwrap();
    let exp = make_experiment(dir.path(), "v", &x, 100);
    let j = train_recall(&exp, &[]);
    assert_eq!(j["nprobe"], 1);
    assert!(j["recall"].is_null());
    // RVC's k-means and lists are unchanged by --recall: only the nprobe
    // (header and name) differs.
    let before = std::fs::read(j["added_index"].as_str().unwrap()).unwrap();
    let jr = train_recall(&exp, &["--recall", "0.99"]);
    let p = jr["nprobe"].as_u64().unwrap();
    assert!(p > 1, "{}", jr["recall"]);
    let added = jr["added_index"].as_str().unwrap();
    assert!(
        !Path::new(j["added_index"].as_str().unwrap()).exists(),
        "old set removed"
    );
    let after = std::fs::read(added).unwrap();
    assert_eq!(before.len(), after.len());
    let differing = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    assert!((1..=8).contains(&differing), "{differing} bytes differ");
    let info = train_json(&["info", added, "--json"]);
    assert_eq!(info["ivf"]["nprobe"].as_u64(), Some(p), "{info}");
}

#[test]
fn bad_recall_values_are_refused_with_one_line() {
    let x = gaussian_mixture(500, 16, 4, 1, 0);
    let dir = tempfile::tempdir().unwrap();
    let exp = make_experiment(dir.path(), "bad", &x, 100);
    let e = exp.to_str().unwrap();
    for v in ["0", "1.5", "abc", "-0.2", "NaN", "inf"] {
        let arg = format!("--recall={v}");
        let o = run(&["train", e, "--device", "cpu", &arg]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{v}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "{v}: {err}");
        assert!(lines[0].contains("above 0 and at most 1"), "{v}: {err}");
        assert!(!exp.join("total_fea.npy").exists());
    }
    let cases: [(&[&str], &str); 2] = [
        (&["--factory", "auto"], "give --recall"),
        (
            &["--recall", "0.9", "--factory", "Flat"],
            "Flat index is exact",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["train", e, "--device", "cpu"];
        args.extend_from_slice(extra);
        let o = run(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("rvc-index: error: ") && err.contains(needle),
            "{err}"
        );
        assert!(!exp.join("total_fea.npy").exists());
    }
    let o = run(&[
        "train", e, "--device", "cpu", "--recall", "0.9", "--nprobe", "4",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
}

#[test]
fn factory_auto_reports_both_kinds_and_writes_the_faster() {
    let x = gaussian_mixture(4_000, 32, 16, 7, 0);
    let dir = tempfile::tempdir().unwrap();
    let exp = make_experiment(dir.path(), "auto", &x, 200);
    let j = train_recall(&exp, &["--recall", "0.9", "--factory", "auto"]);
    let rep = &j["recall"];
    let c = rep["candidates"].as_array().unwrap();
    assert_eq!(c.len(), 2, "{rep}");
    assert!(c[0]["factory"].as_str().unwrap().ends_with(",Flat"));
    assert_eq!(c[1]["factory"], "IVF102,PQ16x4fs,RFlat");
    assert_eq!(c[1]["method"], "searched");
    let chosen: Vec<&serde_json::Value> = c
        .iter()
        .filter(|k| k["factory"] == rep["factory"])
        .collect();
    assert_eq!(chosen.len(), 1);
    let w = chosen[0];
    assert_eq!(j["factory"], rep["factory"]);
    assert_eq!(w["nprobe"], rep["nprobe"]);
    for k in c.iter().filter(|k| k["reached"] == true) {
        assert!(w["reached"] == true);
        assert!(w["ms_per_1000_queries"].as_f64() <= k["ms_per_1000_queries"].as_f64());
    }
    for k in c {
        let curve = curve_of(k);
        let p = k["nprobe"].as_u64().unwrap() as usize;
        let at = |q: usize| curve.iter().find(|c| c.0 == q).map(|c| c.1);
        if k["reached"] == true {
            assert!(at(p).unwrap() >= 0.9);
            if p > 1 {
                assert!(at(p - 1).unwrap() < 0.9, "{k}");
            }
        }
    }
    let added = j["added_index"].as_str().unwrap();
    let info = train_json(&["info", added, "--json"]);
    assert_eq!(info["ivf"]["nprobe"], rep["nprobe"], "{info}");
}

/// The exact IVF-Flat curve (from list ranks) equals what the search
/// returns with the same rows excluded, nprobe by nprobe.
#[test]
fn exact_curve_matches_the_search() {
    let x = gaussian_mixture(5_000, 24, 20, 11, 0);
    let backend = CpuBackend::new();
    let built = build::build(
        &backend,
        x.view(),
        "IVF64,Flat".parse::<Factory>().unwrap(),
        Metric::L2,
        1,
        &Progress::hidden(),
    )
    .unwrap();
    let Index::IvfFlat(ivf) = &built.index else {
        unreachable!()
    };
    let mut labels = vec![0u32; x.nrows()];
    for (l, list) in ivf.lists.iter().enumerate() {
        for &id in &list.ids {
            labels[id as usize] = l as u32;
        }
    }
    let lens = vec![100usize; 50];
    let perm: Vec<usize> = (0..5_000).rev().collect();
    let timeline = Timeline::of_files(&lens, &perm);
    // Row 4999 is position 0 of file 0: itself and the 32 rows after it.
    assert_eq!(
        timeline.excluded(4_999),
        (4_967..=4_999).collect::<Vec<i64>>()
    );
    let sample = Sample::draw(&backend, x.view(), &timeline, 3, 400).unwrap();
    assert_eq!(sample.len(), 400);
    let c = ndarray::ArrayView2::from_shape((64, 24), &ivf.ivf.quantizer.xb).unwrap();
    let curve = recall::flat_curve(c, &labels, &sample, None);
    assert_eq!(curve.len(), 64);
    assert_eq!(*curve.last().unwrap(), 1.0);
    let slack = 2.0 / (8.0 * 400.0);
    for p in [1usize, 2, 3, 5, 8, 16, 64] {
        let found = recall::search_excluding(&backend, &built.index, &sample, p).unwrap();
        let measured = sample.recall_of(found.view());
        assert!(
            (measured - curve[p - 1]).abs() <= slack,
            "nprobe {p}: {measured} vs {}",
            curve[p - 1]
        );
    }
    // Truth: no excluded row, and the exact nearest otherwise.
    let exact = backend
        .knn(sample.queries.view(), x.view(), 8 + 50, Metric::L2)
        .unwrap();
    for q in 0..sample.len() {
        let t = sample.truth.row(q);
        assert!(
            t.iter()
                .all(|id| sample.excluded[q].binary_search(id).is_err())
        );
        let kept: Vec<i64> = exact
            .ids
            .row(q)
            .iter()
            .copied()
            .filter(|id| sample.excluded[q].binary_search(id).is_err())
            .take(8)
            .collect();
        assert_eq!(t.to_vec(), kept);
    }
}

/// `batch --recall`: the target is a setting of the manifest, so the same
/// target is up to date and another one rebuilds.
#[test]
fn batch_takes_recall_as_a_setting() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    make_experiment(&logs, "voice", &gaussian_mixture(3_000, 16, 12, 4, 0), 100);
    let batch = |r: &str| {
        let o = run(&[
            "batch",
            logs.to_str().unwrap(),
            "--device",
            "cpu",
            "-q",
            "--json",
            "--recall",
            r,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        j[0]["status"].as_str().unwrap().to_string()
    };
    let added = || {
        let mut v: Vec<String> = std::fs::read_dir(logs.join("voice"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("added_"))
            .collect();
        v.sort();
        v
    };
    assert_eq!(batch("0.99"), "built");
    let first = added();
    assert_eq!(first.len(), 1);
    assert!(!first[0].contains("_nprobe_1_"), "{first:?}");
    assert_eq!(batch("0.99"), "up_to_date");
    assert_eq!(batch("0.01"), "built");
    assert_eq!(added().len(), 1);
    assert!(added()[0].contains("_nprobe_1_"), "{:?}", added());
}

/// `bench --recall --png`: the recall stage, a search at the chosen nprobe
/// (its recall on fresh queries beside the estimate) and a PNG chart.
#[test]
fn bench_recall_table_and_png() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("recall.png");
    let o = run(&[
        "bench",
        "--synthetic",
        "4000,32",
        "--queries",
        "300",
        "--recall",
        "0.9",
        "--nprobe",
        "1,2",
        "--stages",
        "search",
        "--device",
        "cpu",
        "-q",
        "--png",
        png.to_str().unwrap(),
        "--json",
    ]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let stages = j["stages"].as_array().unwrap();
    let rec: Vec<&serde_json::Value> = stages.iter().filter(|s| s["name"] == "recall").collect();
    assert_eq!(rec.len(), 2, "one per IVF kind");
    for r in rec {
        let p = r["nprobe"].as_u64().unwrap();
        let f = &r["factory"];
        assert!(
            stages
                .iter()
                .any(|s| s["name"] == "search" && &s["factory"] == f && s["nprobe"] == p),
            "searched at the chosen nprobe {p}"
        );
        let curve = r["info"]["curve"].as_array().unwrap();
        assert!(!curve.is_empty());
    }
    // The table (stderr with --json) has the recall section.
    assert!(err.contains("recall@8 against nprobe"), "{err}");
    assert!(err.contains("<- --recall"), "{err}");
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((w, h), (960, 640));
    // A folder that does not exist is refused before any work.
    let o = run(&[
        "bench",
        "--synthetic",
        "4000,32",
        "--png",
        dir.path().join("no/such/x.png").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--png"), "{}", stderr(&o));
}
