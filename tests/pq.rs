//! 4-bit PQ training and encoding against real faiss.

mod common;

use common::*;
use ndarray::Array2;
use ndarray_npy::{read_npy, write_npy};
use rvc_index::compute::cpu::CpuBackend;
use rvc_index::index::pq;

const FAISS_PQ: &str = r#"
import sys, numpy as np, faiss
x = np.load(sys.argv[1]); m = int(sys.argv[2])
ix = faiss.index_factory(x.shape[1], f"IVF4,PQ{m}x4fs")
ix.train(x)
pq = faiss.downcast_index(faiss.extract_index_ivf(ix)).pq
np.save(sys.argv[3], faiss.vector_to_array(pq.centroids).reshape(-1, x.shape[1] // m))
np.save(sys.argv[4], pq.compute_codes(x[:500]))
"#;

#[test]
fn codebook_and_codes_follow_faiss() {
    let dir = tempfile::tempdir().unwrap();
    // More than 4096 rows, so the seeded training subsample is exercised.
    let x = mixture(5000, 32, 40, 12);
    let xp = dir.path().join("x.npy");
    write_npy(&xp, &x).unwrap();
    let cp = dir.path().join("c.npy");
    let codes_p = dir.path().join("codes.npy");
    let pq = pq::train(&CpuBackend::new(), x.view(), 8).unwrap();
    let Some(_) = python(
        FAISS_PQ,
        &[
            xp.to_str().unwrap(),
            "8",
            cp.to_str().unwrap(),
            codes_p.to_str().unwrap(),
        ],
    ) else {
        return;
    };
    let fc: Array2<f32> = read_npy(&cp).unwrap();
    let scale = fc.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = fc
        .iter()
        .zip(&pq.centroids)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        diff <= 1e-4 * scale,
        "codebooks differ by {diff} (scale {scale})"
    );
    // faiss packs two 4-bit codes per byte, low nibble first.
    let fcodes: Array2<u8> = read_npy(&codes_p).unwrap();
    let ours = pq::encode(&pq, x.slice(ndarray::s![..500, ..]));
    let mut mismatches = 0;
    for (r, row) in ours.rows().into_iter().enumerate() {
        for (sq, &c) in row.iter().enumerate() {
            let byte = fcodes[[r, sq / 2]];
            let theirs = if sq % 2 == 0 { byte & 15 } else { byte >> 4 };
            mismatches += (theirs != c) as usize;
        }
    }
    // Only exact ties between two sub-centroids could differ.
    assert!(mismatches <= 2, "{mismatches} codes differ");
}

// ---------------------------------------------------------------------------
// Lockstep training against independent references.

use rvc_index::Metric;
use rvc_index::compute::{Backend, PqSpace};
use rvc_index::train::kmeans::{self, KmeansParams};

/// The CPU backend without `assign_top2`, so that `kmeans::train` reassigns
/// every row from scratch each iteration (brute force, as faiss does).
struct FullScan(CpuBackend);

impl Backend for FullScan {
    fn info(&self) -> rvc_index::compute::BackendInfo {
        self.0.info()
    }
    fn assign(
        &self,
        x: ndarray::ArrayView2<f32>,
        c: ndarray::ArrayView2<f32>,
        metric: Metric,
    ) -> rvc_index::Result<rvc_index::compute::Assignment> {
        self.0.assign(x, c, metric)
    }
    fn centroid_sums(
        &self,
        x: ndarray::ArrayView2<f32>,
        labels: &[u32],
        k: usize,
    ) -> rvc_index::Result<(Array2<f32>, Vec<u64>)> {
        self.0.centroid_sums(x, labels, k)
    }
}

/// The PQ training of one sub-space at a time, each its own `kmeans::train`
/// (what faiss runs): the reference the lockstep training must reproduce.
fn separate_kmeans(x: &Array2<f32>, m: usize) -> (Vec<f32>, usize) {
    let n = x.nrows();
    let x = if n > pq::TRAIN_ROWS {
        let perm = kmeans::rand_perm(n, 1234);
        x.select(ndarray::Axis(0), &perm[..pq::TRAIN_ROWS])
    } else {
        x.clone()
    };
    let ds = x.ncols() / m;
    let mut params = KmeansParams::ivf(pq::KSUB, Metric::L2);
    params.niter = 25;
    let mut out = Vec::new();
    let mut splits = 0;
    for sq in 0..m {
        let sub = x.slice(ndarray::s![.., sq * ds..(sq + 1) * ds]).to_owned();
        let km = kmeans::train(&FullScan(CpuBackend::new()), sub.view(), &params, |s| {
            splits += s.nsplit
        })
        .unwrap();
        out.extend(km.centroids.iter().copied());
    }
    (out, splits)
}

fn max_diff(a: &[f32], b: &[f32]) -> (f32, f32) {
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    (diff, scale)
}

#[test]
fn lockstep_training_matches_separate_kmeans() {
    // Above 4096 rows (subsample), and a small set with an empty cluster to
    // split: the first two rows k-means draws as initial centroids are made
    // equal, so the second centroid is nobody's nearest.
    let big = mixture(5000, 32, 40, 12);
    let mut clumps = mixture(60, 12, 3, 5);
    let init = kmeans::rand_perm(60, 1235);
    let first = clumps.row(init[0]).to_owned();
    clumps.row_mut(init[1]).assign(&first);
    for (x, m, splits) in [(&big, 8, false), (&clumps, 4, true), (&big, 32, false)] {
        let (want, nsplit) = separate_kmeans(x, m);
        if splits {
            assert!(nsplit > 0, "the case meant to split clusters did not");
        }
        let cpu = pq::train(&CpuBackend::new(), x.view(), m).unwrap();
        let (diff, scale) = max_diff(&want, &cpu.centroids);
        assert!(diff <= 1e-5 * scale, "cpu M{m}: {diff} (scale {scale})");
        // Deterministic: a second run is bit-identical.
        let again = pq::train(&CpuBackend::new(), x.view(), m).unwrap();
        assert_eq!(again, cpu);
        if let Some(g) = gpu() {
            let gpq = pq::train(&g, x.view(), m).unwrap();
            let (diff, scale) = max_diff(&want, &gpq.centroids);
            assert!(diff <= 1e-4 * scale, "gpu M{m}: {diff} (scale {scale})");
            assert_eq!(pq::train(&g, x.view(), m).unwrap(), gpq);
        }
    }
}

#[test]
fn encode_is_the_nearest_sub_centroid() {
    let x = mixture(300, 24, 10, 3);
    let q = pq::train(&CpuBackend::new(), x.view(), 6).unwrap();
    let codes = pq::encode(&q, x.view());
    for (row, c) in x.rows().into_iter().zip(codes.rows()) {
        let want = q.encode(row.as_slice().unwrap());
        assert_eq!(c.to_vec(), want);
    }
}

/// The GPU backend's `pq_assign` without its `pq_train`: the lockstep loop
/// then runs on the host, one `pq_assign` call per iteration.
struct HostLoop(rvc_index::compute::gpu::GpuBackend);

impl Backend for HostLoop {
    fn info(&self) -> rvc_index::compute::BackendInfo {
        self.0.info()
    }
    fn assign(
        &self,
        x: ndarray::ArrayView2<f32>,
        c: ndarray::ArrayView2<f32>,
        metric: Metric,
    ) -> rvc_index::Result<rvc_index::compute::Assignment> {
        self.0.assign(x, c, metric)
    }
    fn centroid_sums(
        &self,
        x: ndarray::ArrayView2<f32>,
        labels: &[u32],
        k: usize,
    ) -> rvc_index::Result<(Array2<f32>, Vec<u64>)> {
        self.0.centroid_sums(x, labels, k)
    }
    fn pq_assign(
        &self,
        x: ndarray::ArrayView2<f32>,
        codebooks: ndarray::ArrayView2<f32>,
        m: usize,
        ksub: usize,
    ) -> rvc_index::Result<rvc_index::compute::PqAssignment> {
        self.0.pq_assign(x, codebooks, m, ksub)
    }
}

/// Training on the device (all iterations in one submission) gives the
/// codebooks of the host loop over the same device's `pq_assign`, bit for
/// bit: without splits, with every sub-space splitting at once, and with
/// one sub-space splitting (it comes back to the host) while the others
/// stay on the device.
#[test]
fn device_training_equals_the_host_loop() {
    let Some(g) = gpu() else { return };
    let big = mixture(5000, 32, 40, 12);
    let mut clumps = mixture(60, 12, 3, 5);
    let init = kmeans::rand_perm(60, 1235);
    let first = clumps.row(init[0]).to_owned();
    clumps.row_mut(init[1]).assign(&first);
    // Only sub-space 0 (columns 0..4 of M = 4) starts with a duplicate.
    let mut one = mixture(300, 16, 12, 8);
    let init = kmeans::rand_perm(300, 1235);
    let head = one.slice(ndarray::s![init[0], ..4]).to_owned();
    one.slice_mut(ndarray::s![init[1], ..4]).assign(&head);
    let host = HostLoop(rvc_index::compute::gpu::GpuBackend::new(true).unwrap());
    for (x, m, what) in [
        (&big, 8, "no splits"),
        (&big, 32, "M32"),
        (&clumps, 4, "every sub-space splits"),
        (&one, 4, "one sub-space splits"),
    ] {
        let trained = g
            .pq_train(
                x.view(),
                Array2::<f32>::zeros((m * pq::KSUB, x.ncols() / m)).view(),
                m,
                pq::KSUB,
                1,
            )
            .map(|r| r.is_ok());
        assert_eq!(trained, Some(true), "{what}: the device path must run");
        let dev = pq::train(&g, x.view(), m).unwrap();
        let hl = pq::train(&host, x.view(), m).unwrap();
        assert_eq!(dev, hl, "{what}");
        // Where the device stopped each sub-space (no subsample below 4096
        // rows: the initial centroids are rows rand_perm(n, 1235)[..16]).
        if x.nrows() <= pq::TRAIN_ROWS {
            let ds = x.ncols() / m;
            let first = kmeans::rand_perm(x.nrows(), 1235);
            let rows = x.select(ndarray::Axis(0), &first[..pq::KSUB]);
            let mut init = Array2::<f32>::zeros((m * pq::KSUB, ds));
            for sq in 0..m {
                init.slice_mut(ndarray::s![sq * pq::KSUB..(sq + 1) * pq::KSUB, ..])
                    .assign(&rows.slice(ndarray::s![.., sq * ds..(sq + 1) * ds]));
            }
            let t = g
                .pq_train(x.view(), init.view(), m, pq::KSUB, 25)
                .unwrap()
                .unwrap();
            let stalled: Vec<bool> = t
                .spaces
                .iter()
                .map(|s| matches!(s, PqSpace::Stalled { iteration: 0, .. }))
                .collect();
            let want = match what {
                "one sub-space splits" => vec![true, false, false, false],
                _ => vec![true; m],
            };
            assert_eq!(stalled, want, "{what}: {:?}", t.spaces);
        }
    }
}
