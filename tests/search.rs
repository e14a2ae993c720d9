//! `build`, `search` and `blend` against real faiss on the same files.

mod common;

use std::path::Path;

use common::*;
use ndarray::Array2;
use ndarray_npy::{read_npy, write_npy};

fn ok(args: &[&str]) {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", stderr(&o));
}

/// faiss searches `index` for `queries` and saves `<out>_fd.npy`, `<out>_fi.npy`;
/// with a fourth argument, exact ground truth (`<out>_gi.npy`) from that database.
const FAISS_SEARCH: &str = r#"
import sys, numpy as np, faiss
index, queries, out, k, nprobe = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
ix = faiss.read_index(index)
q = np.load(queries)
if nprobe > 0:
    faiss.extract_index_ivf(ix).nprobe = nprobe
D, I = ix.search(q, k)
np.save(out + "_fd.npy", D); np.save(out + "_fi.npy", I)
if len(sys.argv) > 6:
    db = np.load(sys.argv[6])
    gt = faiss.IndexFlatIP(db.shape[1]) if ix.metric_type == 0 else faiss.IndexFlatL2(db.shape[1])
    gt.add(db); _, G = gt.search(q, k); np.save(out + "_gi.npy", G)
"#;

fn faiss_search(
    dir: &Path,
    index: &Path,
    q: &Path,
    k: usize,
    nprobe: usize,
    db: Option<&Path>,
) -> Option<(Array2<f32>, Array2<i64>, Option<Array2<i64>>)> {
    let out = dir.join("faiss");
    let (ks, ns) = (k.to_string(), nprobe.to_string());
    let mut args = vec![
        index.to_str().unwrap(),
        q.to_str().unwrap(),
        out.to_str().unwrap(),
        &ks,
        &ns,
    ];
    if let Some(db) = db {
        args.push(db.to_str().unwrap());
    }
    python(FAISS_SEARCH, &args)?;
    let gt = db.map(|_| read_npy(dir.join("faiss_gi.npy")).unwrap());
    Some((
        read_npy(dir.join("faiss_fd.npy")).unwrap(),
        read_npy(dir.join("faiss_fi.npy")).unwrap(),
        gt,
    ))
}

fn ours(
    dir: &Path,
    index: &Path,
    q: &Path,
    k: usize,
    nprobe: usize,
    extra: &[&str],
) -> (Array2<f32>, Array2<i64>) {
    let out = dir.join("ours");
    let (ks, ns) = (k.to_string(), nprobe.to_string());
    let mut args = vec![
        "search",
        index.to_str().unwrap(),
        q.to_str().unwrap(),
        "-k",
        &ks,
        "--nprobe",
        &ns,
        "-o",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
    ];
    args.extend_from_slice(extra);
    ok(&args);
    (
        read_npy(dir.join("ours_distances.npy")).unwrap(),
        read_npy(dir.join("ours_ids.npy")).unwrap(),
    )
}

/// Database and queries drawn from the same mixture (queries are held-out rows).
fn data(
    dir: &Path,
    n: usize,
    nq: usize,
    d: usize,
    dims: usize,
    seed: u64,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let x = latent(n + nq, d, dims, seed);
    let (db, q) = (dir.join("db.npy"), dir.join("q.npy"));
    write_npy(&db, &x.slice(ndarray::s![..n, ..]).to_owned()).unwrap();
    write_npy(&q, &x.slice(ndarray::s![n.., ..]).to_owned()).unwrap();
    (db, q)
}

fn recall(found: &Array2<i64>, truth: &Array2<i64>) -> f64 {
    let mut hit = 0;
    for (f, t) in found.rows().into_iter().zip(truth.rows()) {
        hit += f
            .iter()
            .filter(|id| **id >= 0 && t.iter().any(|x| x == *id))
            .count();
    }
    hit as f64 / truth.len() as f64
}

#[test]
fn ivf_flat_search_equals_faiss() {
    let dir = tempfile::tempdir().unwrap();
    let (db, q) = data(dir.path(), 3000, 200, 48, 6, 1);
    for metric in ["l2", "ip"] {
        let index = dir.path().join(format!("{metric}.index"));
        ok(&[
            "build",
            db.to_str().unwrap(),
            "--factory",
            "IVF40,Flat",
            "--metric",
            metric,
            "-o",
            index.to_str().unwrap(),
            "--device",
            "cpu",
            "-q",
        ]);
        for (k, nprobe) in [(1, 1), (8, 1), (8, 4), (20, 40)] {
            let (d, i) = ours(dir.path(), &index, &q, k, nprobe, &[]);
            let Some((fd, fi, _)) = faiss_search(dir.path(), &index, &q, k, nprobe, None) else {
                return;
            };
            assert_eq!(i, fi, "{metric} k={k} nprobe={nprobe}");
            for (a, b) in d.iter().zip(fd.iter()) {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{metric}: {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn pq_fast_scan_with_refine_matches_faiss() {
    let dir = tempfile::tempdir().unwrap();
    let (db, q) = data(dir.path(), 6000, 300, 64, 6, 3);
    for metric in ["l2", "ip"] {
        let index = dir.path().join(format!("pq_{metric}.index"));
        ok(&[
            "build",
            db.to_str().unwrap(),
            "--factory",
            "IVF32,PQ16x4fs,RFlat",
            "--metric",
            metric,
            "-o",
            index.to_str().unwrap(),
            "--device",
            "cpu",
            "-q",
        ]);
        for (nprobe, kf) in [(1, "1"), (4, "1"), (1, "4"), (4, "4")] {
            let (_, i) = ours(dir.path(), &index, &q, 8, nprobe, &["--k-factor", kf]);
            let Some((_, _, Some(gt))) = faiss_search(dir.path(), &index, &q, 8, nprobe, Some(&db))
            else {
                return;
            };
            // faiss with the same k_factor.
            let script = r#"
import sys, numpy as np, faiss
ix = faiss.read_index(sys.argv[1]); ix.k_factor = float(sys.argv[5]); faiss.extract_index_ivf(ix).nprobe = int(sys.argv[3])
_, I = ix.search(np.load(sys.argv[2]), 8); np.save(sys.argv[4], I)
"#;
            let fpath = dir.path().join("fi4.npy");
            python(
                script,
                &[
                    index.to_str().unwrap(),
                    q.to_str().unwrap(),
                    &nprobe.to_string(),
                    fpath.to_str().unwrap(),
                    kf,
                ],
            )
            .unwrap();
            let fi: Array2<i64> = read_npy(&fpath).unwrap();
            let agree = recall(&i, &fi);
            let (ours_r, faiss_r) = (recall(&i, &gt), recall(&fi, &gt));
            eprintln!(
                "{metric} nprobe {nprobe} k_factor {kf}: agreement {agree}, recall@8 ours {ours_r} faiss {faiss_r}"
            );
            assert!(
                agree >= 0.99,
                "{metric} nprobe {nprobe}: our top-8 vs faiss's {agree}"
            );
            assert!(
                ours_r >= faiss_r - 0.01,
                "{metric} nprobe {nprobe}: recall {ours_r} vs faiss {faiss_r}"
            );
        }
    }
}

/// Without refine, scores come from faiss's 8-bit quantised look-up table,
/// which we reproduce: distances equal faiss's to float rounding of the table
/// (measured: 1.5e-5 absolute on a scale of 144), ids agree but where a
/// rounding flips a tie.
#[test]
fn pq_fast_scan_without_refine_equals_faiss() {
    let dir = tempfile::tempdir().unwrap();
    let (db, q) = data(dir.path(), 5000, 200, 32, 6, 5);
    let index = dir.path().join("pq.index");
    ok(&[
        "build",
        db.to_str().unwrap(),
        "--factory",
        "IVF16,PQ16x4fs",
        "-o",
        index.to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
    ]);
    let (d, i) = ours(dir.path(), &index, &q, 8, 2, &[]);
    let Some((fd, fi, _)) = faiss_search(dir.path(), &index, &q, 8, 2, None) else {
        return;
    };
    let scale = fd.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = d
        .iter()
        .zip(fd.iter())
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!(
        "max |ours - faiss| = {worst} (scale {scale}); id agreement {}",
        recall(&i, &fi)
    );
    assert!(worst <= 1e-5 * scale, "{worst} vs scale {scale}");
    assert!(recall(&i, &fi) >= 0.99);
}

/// A file faiss built itself (IVF-PQ fast-scan + RFlat) searched by us.
#[test]
fn faiss_built_pq_index_searched_like_faiss() {
    let dir = tempfile::tempdir().unwrap();
    let (db, q) = data(dir.path(), 4000, 150, 32, 6, 7);
    let index = dir.path().join("faiss.index");
    let script = r#"
import sys, numpy as np, faiss
x = np.load(sys.argv[1]); ix = faiss.index_factory(x.shape[1], "IVF20,PQ16x4fs,RFlat")
ix.train(x); ix.add(x); faiss.write_index(ix, sys.argv[2])
"#;
    if python(script, &[db.to_str().unwrap(), index.to_str().unwrap()]).is_none() {
        return;
    }
    let (d, i) = ours(dir.path(), &index, &q, 5, 3, &["--k-factor", "8"]);
    let script = r#"
import sys, numpy as np, faiss
ix = faiss.read_index(sys.argv[1]); ix.k_factor = 8; faiss.extract_index_ivf(ix).nprobe = 3
D, I = ix.search(np.load(sys.argv[2]), 5); np.save(sys.argv[3], D); np.save(sys.argv[4], I)
"#;
    let (fdp, fip) = (dir.path().join("fd.npy"), dir.path().join("fi.npy"));
    python(
        script,
        &[
            index.to_str().unwrap(),
            q.to_str().unwrap(),
            fdp.to_str().unwrap(),
            fip.to_str().unwrap(),
        ],
    )
    .unwrap();
    let fi: Array2<i64> = read_npy(&fip).unwrap();
    let fd: Array2<f32> = read_npy(&fdp).unwrap();
    assert!(recall(&i, &fi) >= 0.99, "{}", recall(&i, &fi));
    // Where the ids agree, refined distances are exact on both sides.
    for ((a, b), (ia, ib)) in d.iter().zip(fd.iter()).zip(i.iter().zip(fi.iter())) {
        if ia == ib {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0));
        }
    }
}

const RVC_BLEND: &str = r#"
import sys, numpy as np, faiss
index = faiss.read_index(sys.argv[1]); feats = np.load(sys.argv[2]); rate = float(sys.argv[3])
big_npy = index.reconstruct_n(0, index.ntotal)
score, ix = index.search(feats, k=8)
weight = np.square(1 / score)
weight /= weight.sum(axis=1, keepdims=True)
npy = np.sum(big_npy[ix] * np.expand_dims(weight, axis=2), axis=1)
out = npy * rate + (1 - rate) * feats
print(np.abs(out - np.load(sys.argv[4])).max())
"#;

#[test]
fn blend_equals_rvc_formula() {
    let dir = tempfile::tempdir().unwrap();
    let x = mixture(3000, 256, 40, 9);
    let exp = make_experiment(dir.path(), "voice", &x, 200);
    ok(&["train", exp.to_str().unwrap(), "--device", "cpu", "-q"]);
    let index = exp.join("added_IVF76_Flat_nprobe_1_voice_v1.index");
    let feats = dir.path().join("feats.npy");
    write_npy(&feats, &mixture(300, 256, 40, 10)).unwrap();
    let out = dir.path().join("blended.npy");
    ok(&[
        "blend",
        index.to_str().unwrap(),
        feats.to_str().unwrap(),
        "--index-rate",
        "0.6",
        "-o",
        out.to_str().unwrap(),
        "--device",
        "cpu",
        "-q",
    ]);
    if let Some(r) = python(
        RVC_BLEND,
        &[
            index.to_str().unwrap(),
            feats.to_str().unwrap(),
            "0.6",
            out.to_str().unwrap(),
        ],
    ) {
        let err: f64 = r.trim().parse().unwrap();
        assert!(err < 1e-4, "max difference from RVC's formula: {err}");
    }
}

// ------------------------------------------------------------ grouped scans

/// Many queries per list (several SIMD query groups), odd dimension, k
/// beyond what the probed lists hold (-1 padding): ids equal faiss's for both
/// metrics and every nprobe.
#[test]
fn ivf_flat_grouped_scan_equals_faiss() {
    let dir = tempfile::tempdir().unwrap();
    let (db, q) = data(dir.path(), 2300, 517, 37, 5, 11);
    for metric in ["l2", "ip"] {
        let index = dir.path().join(format!("g_{metric}.index"));
        ok(&[
            "build",
            db.to_str().unwrap(),
            "--factory",
            "IVF23,Flat",
            "--metric",
            metric,
            "-o",
            index.to_str().unwrap(),
            "--device",
            "cpu",
            "-q",
        ]);
        for (k, nprobe) in [(1, 1), (7, 2), (5, 5), (300, 1), (3, 23), (13, 30)] {
            let (d, i) = ours(dir.path(), &index, &q, k, nprobe, &[]);
            let Some((fd, fi, _)) = faiss_search(dir.path(), &index, &q, k, nprobe, None) else {
                return;
            };
            if k == 300 {
                assert!(i.iter().any(|&id| id == -1), "k=300 should pad");
            }
            assert_eq!(i, fi, "{metric} k={k} nprobe={nprobe}");
            for (a, b) in d.iter().zip(fd.iter()) {
                assert!(
                    a == b || (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{metric} k={k} nprobe={nprobe}: {a} vs {b}"
                );
            }
        }
    }
}

/// The fast PQ search returns exactly what the one-query-at-a-time scalar
/// reference returns (same tables, same integer sums, same tie order), with
/// and without -1 padding, for every instruction set this CPU runs.
#[test]
fn pq_search_equals_scalar_reference_on_every_isa() {
    let dir = tempfile::tempdir().unwrap();
    let (db, q) = data(dir.path(), 3000, 203, 40, 5, 13);
    for metric in ["l2", "ip"] {
        let index = dir.path().join(format!("pq_{metric}.index"));
        ok(&[
            "build",
            db.to_str().unwrap(),
            "--factory",
            "IVF17,PQ5x4fs",
            "--metric",
            metric,
            "-o",
            index.to_str().unwrap(),
            "--device",
            "cpu",
            "-q",
        ]);
        let ix = rvc_index::faiss::read_index(&index).unwrap();
        let rvc_index::faiss::Index::IvfPqFastScan(ivf) = &ix else {
            panic!("not a fast-scan index")
        };
        let queries: Array2<f32> = read_npy(&q).unwrap();
        let backend = rvc_index::compute::cpu::CpuBackend::new();
        let lists: Vec<_> = ivf
            .lists
            .iter()
            .map(|l| rvc_index::index::search::List {
                ids: &l.ids,
                codes: &l.codes,
            })
            .collect();
        let centroids = ndarray::ArrayView2::from_shape(
            (ivf.ivf.quantizer.ntotal(), ivf.ivf.d),
            &ivf.ivf.quantizer.xb,
        )
        .unwrap();
        for (k, nprobe) in [(1, 1), (8, 3), (500, 1), (20, 17)] {
            let reference = rvc_index::index::search::search_pq_reference(
                &backend,
                centroids,
                &ivf.pq,
                ivf.bbs,
                &lists,
                ix.metric(),
                queries.view(),
                k,
                nprobe,
            )
            .unwrap();
            for isa in rvc_index::index::scan::Isa::available() {
                let out = dir.path().join("isa");
                let (ks, ns) = (k.to_string(), nprobe.to_string());
                let o = common::bin()
                    .env(rvc_index::index::scan::ISA_ENV, isa.name())
                    .args([
                        "search",
                        index.to_str().unwrap(),
                        q.to_str().unwrap(),
                        "-k",
                        &ks,
                        "--nprobe",
                        &ns,
                        "-o",
                        out.to_str().unwrap(),
                        "--device",
                        "cpu",
                        "-q",
                    ])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", stderr(&o));
                let i: Array2<i64> = read_npy(dir.path().join("isa_ids.npy")).unwrap();
                let d: Array2<f32> = read_npy(dir.path().join("isa_distances.npy")).unwrap();
                let tag = format!("{metric} {isa:?} k={k} nprobe={nprobe}");
                assert_eq!(i, reference.ids, "{tag}");
                if k == 500 {
                    assert!(i.iter().any(|&id| id == -1), "{tag}: should pad");
                }
                for (a, b) in d.iter().zip(reference.scores.iter()) {
                    assert!(
                        (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                        "{tag}: {a} vs {b}"
                    );
                }
            }
        }
    }
}

mod simd_scan {
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use rvc_index::Metric;
    use rvc_index::compute::knn::TopK;
    use rvc_index::faiss::{ProductQuantizer, fastscan};
    use rvc_index::index::scan::{self, Isa, PqTop};
    use rvc_index::index::search;

    /// Small integers: every sum is exact whatever the order, so keys equal
    /// the scalar reference bit for bit and ties really occur.
    fn ints(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-3i32..=3) as f32).collect()
    }

    #[test]
    fn flat_scan_equals_scalar_on_odd_sizes() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for isa in Isa::available() {
            for &d in &[1usize, 3, 15, 16, 17, 33, 70] {
                for &n in &[1usize, 5, 6, 7, 13, 40] {
                    for &nq in &[1usize, 2, 3, 4, 5, 7] {
                        for metric in [Metric::L2, Metric::InnerProduct] {
                            let k = 1 + (n + nq) % 9;
                            let rows = ints(&mut rng, n * d);
                            let qs = ints(&mut rng, nq * d);
                            let queries: Vec<&[f32]> = qs.chunks_exact(d).collect();
                            let ids: Vec<i64> = (0..n as i64).map(|i| 1000 - 3 * i).collect();
                            let mut tops: Vec<TopK> = (0..nq).map(|_| TopK::new(k)).collect();
                            scan::scan_flat(
                                isa,
                                metric,
                                &queries,
                                d,
                                n,
                                |i| &rows[i * d..(i + 1) * d],
                                |i| ids[i],
                                &mut tops,
                            );
                            for (q, top) in queries.iter().zip(&tops) {
                                // Reference: stable sort by key (earlier row wins ties).
                                let mut all: Vec<(f32, i64)> = rows
                                    .chunks_exact(d)
                                    .zip(&ids)
                                    .map(|(r, &id)| (scan::flat_key_scalar(metric, q, r), id))
                                    .collect();
                                all.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
                                all.truncate(k);
                                let want: Vec<i64> = all.iter().map(|p| p.1).collect();
                                let keys: Vec<f32> = all.iter().map(|p| p.0).collect();
                                let tag = format!("{isa:?} d={d} n={n} nq={nq} {metric:?}");
                                assert_eq!(top.ids, want, "{tag}");
                                assert_eq!(top.keys, keys, "{tag}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn pq_scan_equals_scalar_on_odd_sizes() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        for isa in Isa::available() {
            for &m in &[1usize, 2, 3, 4, 5, 7, 16, 17] {
                let m2 = m + (m & 1);
                for &n in &[1usize, 17, 31, 32, 33, 64, 95] {
                    for &nq in &[1usize, 2, 3, 4, 5, 9] {
                        for ip in [false, true] {
                            let k = 1 + (n * 7 + nq) % 20;
                            let codes: Vec<u8> =
                                (0..n * m).map(|_| rng.random_range(0..16u8)).collect();
                            let packed = fastscan::pq4_pack(&codes, m, 32);
                            // Few distinct table values: many equal sums (ties by id).
                            let luts: Vec<Vec<u8>> = (0..nq)
                                .map(|_| {
                                    let mut l: Vec<u8> = (0..m2 * 16)
                                        .map(|_| rng.random_range(0..4u8) * 60)
                                        .collect();
                                    l[m * 16..].fill(0);
                                    l
                                })
                                .collect();
                            let lut_refs: Vec<&[u8]> = luts.iter().map(|l| &l[..]).collect();
                            let ids: Vec<i64> = (0..n as i64).map(|i| (i * 37) % 101).collect();
                            let mut tops: Vec<PqTop> = (0..nq).map(|_| PqTop::new(k)).collect();
                            scan::scan_pq(isa, ip, &lut_refs, m2, &packed, n, &ids, &mut tops);
                            for (lut, top) in luts.iter().zip(&tops) {
                                let mut want: Vec<u64> = codes
                                    .chunks_exact(m)
                                    .zip(&ids)
                                    .map(|(c, &id)| {
                                        let s: u32 = c
                                            .iter()
                                            .enumerate()
                                            .map(|(sq, &v)| lut[sq * 16 + v as usize] as u32)
                                            .sum();
                                        scan::pq_key(s as u16, id, ip)
                                    })
                                    .collect();
                                want.sort_unstable();
                                want.truncate(k);
                                assert_eq!(top.keys, want, "{isa:?} m={m} n={n} nq={nq} ip={ip}");
                            }
                        }
                    }
                }
            }
        }
    }

    fn random_pq(rng: &mut ChaCha8Rng, d: usize, m: usize) -> ProductQuantizer {
        ProductQuantizer {
            d,
            m,
            nbits: 4,
            centroids: (0..d * 16)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect(),
        }
    }

    #[test]
    fn tables_equal_the_scalar_quantised_lut() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for &(d, m) in &[(8usize, 8usize), (15, 5), (12, 3), (64, 32), (6, 1)] {
            let pq = random_pq(&mut rng, d, m);
            let q: Vec<f32> = (0..9 * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            for metric in [Metric::L2, Metric::InnerProduct] {
                let t = scan::pq_tables(&pq, &q, metric);
                for (i, qi) in q.chunks_exact(d).enumerate() {
                    let mut raw = search::lut(&pq, qi, metric);
                    if metric == Metric::InnerProduct {
                        raw.iter_mut().for_each(|v| *v = -*v);
                    }
                    let want = search::quantize_lut(&raw, m);
                    let got: Vec<u16> = t.lut(i)[..m * 16].iter().map(|&v| v as u16).collect();
                    assert_eq!(got, want.table, "d={d} m={m} {metric:?}");
                    assert!(t.lut(i)[m * 16..].iter().all(|&v| v == 0));
                    assert_eq!((t.a[i], t.b[i]), (want.a, want.b));
                }
            }
        }
    }

    #[test]
    fn fast_encoder_equals_product_quantizer_encode() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        for &(d, m) in &[(8usize, 8usize), (15, 5), (12, 3), (64, 32)] {
            let pq = random_pq(&mut rng, d, m);
            let x: Vec<f32> = (0..301 * d)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let want: Vec<u8> = x.chunks_exact(d).flat_map(|r| pq.encode(r)).collect();
            assert_eq!(scan::pq_encode(&pq, &x), want, "d={d} m={m}");
        }
    }
}

/// Batches of queries (partial results kept per batch and slot) give exactly
/// the one-query-at-a-time reference, whatever the batch size, for IVF-Flat
/// (integer-valued data: exact sums, real ties) and fast-scan PQ.
#[test]
fn batched_search_equals_reference() {
    use rvc_index::compute::cpu::CpuBackend;
    use rvc_index::index::factory::{Codec, Factory, Nlist};
    use rvc_index::index::search::{self, List, StageTimes};
    let backend = CpuBackend::new();
    let mut x = latent(1500 + 97, 24, 4, 21);
    x.mapv_inplace(|v| (v * 2.0).round());
    let (db, q) = (
        x.slice(ndarray::s![..1500, ..]).to_owned(),
        x.slice(ndarray::s![1500.., ..]).to_owned(),
    );
    for metric in [rvc_index::Metric::L2, rvc_index::Metric::InnerProduct] {
        for codec in [Codec::Flat, Codec::Pq4FastScan { m: 6 }] {
            let factory = Factory::Ivf {
                nlist: Nlist::Fixed(9),
                codec,
                refine: false,
            };
            let built = rvc_index::index::build::build(
                &backend,
                db.view(),
                factory,
                metric,
                1,
                &rvc_index::progress::Progress::hidden(),
            )
            .unwrap();
            for (k, nprobe) in [(1, 1), (10, 3), (400, 2), (5, 12)] {
                for batch in [1, 7, 40, 1000] {
                    let mut t = StageTimes::default();
                    let (got, want) = match &built.index {
                        rvc_index::faiss::Index::IvfFlat(ix) => {
                            let lists: Vec<_> = ix
                                .lists
                                .iter()
                                .map(|l| List {
                                    ids: &l.ids,
                                    codes: &l.codes,
                                })
                                .collect();
                            let c = ndarray::ArrayView2::from_shape(
                                (ix.ivf.quantizer.ntotal(), ix.ivf.d),
                                &ix.ivf.quantizer.xb,
                            )
                            .unwrap();
                            (
                                search::search_flat(
                                    &backend,
                                    c,
                                    &lists,
                                    metric,
                                    q.view(),
                                    k,
                                    nprobe,
                                    Some(batch),
                                    &mut t,
                                )
                                .unwrap(),
                                search::search_flat_reference(
                                    &backend,
                                    c,
                                    &lists,
                                    metric,
                                    q.view(),
                                    k,
                                    nprobe,
                                )
                                .unwrap(),
                            )
                        }
                        rvc_index::faiss::Index::IvfPqFastScan(ix) => {
                            let lists: Vec<_> = ix
                                .lists
                                .iter()
                                .map(|l| List {
                                    ids: &l.ids,
                                    codes: &l.codes,
                                })
                                .collect();
                            let c = ndarray::ArrayView2::from_shape(
                                (ix.ivf.quantizer.ntotal(), ix.ivf.d),
                                &ix.ivf.quantizer.xb,
                            )
                            .unwrap();
                            (
                                search::search_pq(
                                    &backend,
                                    c,
                                    &ix.pq,
                                    ix.bbs,
                                    &lists,
                                    metric,
                                    q.view(),
                                    k,
                                    nprobe,
                                    Some(batch),
                                    &mut t,
                                )
                                .unwrap(),
                                search::search_pq_reference(
                                    &backend,
                                    c,
                                    &ix.pq,
                                    ix.bbs,
                                    &lists,
                                    metric,
                                    q.view(),
                                    k,
                                    nprobe,
                                )
                                .unwrap(),
                            )
                        }
                        _ => unreachable!(),
                    };
                    let tag = format!("{metric:?} {codec:?} k={k} nprobe={nprobe} batch={batch}");
                    assert_eq!(got.ids, want.ids, "{tag}");
                    if k == 400 {
                        assert!(got.ids.iter().any(|&i| i == -1), "{tag}: should pad");
                    }
                    for (a, b) in got.scores.iter().zip(want.scores.iter()) {
                        assert!(
                            a == b || (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                            "{tag}: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }
}
