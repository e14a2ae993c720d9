//! Whole-index search (`index::search::search_index`, the one dispatcher)
//! with the GPU backend against the same search with the CPU backend, on
//! the same index, on lavapipe in CI: every stage runs the GPU's kernels
//! where they cover the case (checked: no stage falls back to the CPU),
//! and the CPU kernel where they do not. No adapter at all is a failure,
//! unless RVC_INDEX_SKIP_GPU_TESTS=1.
//!
//! PQ fast-scan scores are sums of 8-bit table entries, so ids and distances
//! must be identical. Exact distances (Flat, IVF-Flat, RFlat) are summed in a
//! different order on the device: they may differ by 1e-5 relative, and ids
//! may differ only where two candidates' distances are that close (a swap of
//! near-ties).

mod common;
use common::{gpu, random};

use ndarray::{Array2, s};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rvc_index::Metric;
use rvc_index::compute::cpu::CpuBackend;
use rvc_index::compute::gpu::GpuBackend;
use rvc_index::compute::{Backend, Neighbours};
use rvc_index::faiss::Index;
use rvc_index::index::build::build;
use rvc_index::index::search::{Fallbacks, StageTimes, search_index, search_index_timed};
use rvc_index::progress::Progress;

fn make(x: &Array2<f32>, factory: &str, metric: Metric) -> Index {
    build(
        &CpuBackend::new(),
        x.view(),
        factory.parse().unwrap(),
        metric,
        1,
        &Progress::hidden(),
    )
    .unwrap()
    .index
}

fn compare(what: &str, got: &Neighbours, want: &Neighbours, exact: bool) {
    assert_eq!(got.ids.dim(), want.ids.dim(), "{what}");
    if exact {
        assert_eq!(got.ids, want.ids, "{what}: ids");
        assert_eq!(got.scores, want.scores, "{what}: scores");
        return;
    }
    for q in 0..want.ids.nrows() {
        let (gi, wi) = (got.ids.row(q), want.ids.row(q));
        let (gs, ws) = (got.scores.row(q), want.scores.row(q));
        let scale = ws
            .iter()
            .filter(|v| v.is_finite())
            .fold(1f32, |m, v| m.max(v.abs()));
        let tol = 1e-5 * scale;
        for r in 0..wi.len() {
            assert_eq!(
                gi[r] < 0,
                wi[r] < 0,
                "{what}: query {q} rank {r}: {gi} vs {wi}"
            );
            if wi[r] < 0 {
                continue;
            }
            assert!(
                (gs[r] - ws[r]).abs() <= tol,
                "{what}: query {q} rank {r}: score {} vs {}",
                gs[r],
                ws[r]
            );
            if gi[r] != wi[r] {
                // A near-tie swap: the host has the GPU's id at a score within tolerance.
                let pos = wi.iter().position(|&i| i == gi[r]);
                let ok = pos.is_some_and(|p| (ws[p] - ws[r]).abs() <= 2.0 * tol)
                    || r + 1 == wi.len() && (ws[r] - gs[r]).abs() <= 2.0 * tol;
                assert!(ok, "{what}: query {q} rank {r}: id {} vs {}", gi[r], wi[r]);
            }
        }
    }
}

fn check(
    g: &GpuBackend,
    index: &Index,
    q: &Array2<f32>,
    k: usize,
    nprobe: usize,
    exact: bool,
    what: &str,
) {
    let want = search_index(&CpuBackend::new(), index, q.view(), k, Some(nprobe)).unwrap();
    let mut t = StageTimes::default();
    let got = search_index_timed(g, index, q.view(), k, Some(nprobe), &mut t).unwrap();
    assert_eq!(
        t.cpu_fallback,
        Fallbacks::default(),
        "{what} k{k} nprobe{nprobe}: a stage fell back to the CPU"
    );
    compare(&format!("{what} k{k} nprobe{nprobe}"), &got, &want, exact);
}

fn set_k_factor(index: &mut Index, f: f32) {
    if let Index::Refine(r) = index {
        r.k_factor = f;
    }
}

#[test]
fn every_index_type_both_metrics() {
    let Some(g) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    // d = 10: rows are not whole vec4s; M = 5: odd number of sub-quantizers.
    for &(d, m) in &[(24, 4), (10, 5)] {
        let x = random(&mut rng, 2500, d);
        let q = random(&mut rng, 37, d);
        for metric in [Metric::L2, Metric::InnerProduct] {
            let tag = format!("d{d} {metric:?}");
            let flat = make(&x, "Flat", metric);
            for k in [1, 7, 64, 128] {
                check(&g, &flat, &q, k, 1, false, &format!("Flat {tag}"));
            }
            let ivf = make(&x, "IVF16,Flat", metric);
            for (k, np) in [(1, 1), (10, 4), (100, 16), (5, 40)] {
                check(&g, &ivf, &q, k, np, false, &format!("IVF-Flat {tag}"));
            }
            let pq = make(&x, &format!("IVF16,PQ{m}x4fs"), metric);
            for (k, np) in [(1, 1), (10, 3), (128, 16)] {
                check(&g, &pq, &q, k, np, true, &format!("IVF-PQfs {tag}"));
            }
            let mut rf = make(&x, &format!("IVF16,PQ{m}x4fs,RFlat"), metric);
            for (k, np, f) in [(1, 1, 1.0), (8, 4, 4.0), (32, 16, 4.0)] {
                set_k_factor(&mut rf, f);
                check(
                    &g,
                    &rf,
                    &q,
                    k,
                    np,
                    false,
                    &format!("IVF-PQfs,RFlat×{f} {tag}"),
                );
            }
        }
    }
}

/// Lists far longer than lavapipe's 65 535-iteration loop limit: a kernel
/// that scanned a list in one loop would silently stop early.
#[test]
fn long_lists() {
    let Some(g) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let x = random(&mut rng, 70_000, 4);
    let q = random(&mut rng, 5, 4);
    for metric in [Metric::L2, Metric::InnerProduct] {
        let ivf = make(&x, "IVF1,Flat", metric);
        check(&g, &ivf, &q, 10, 1, false, &format!("IVF1,Flat {metric:?}"));
        let pq = make(&x, "IVF1,PQ2x4fs", metric);
        check(
            &g,
            &pq,
            &q,
            100,
            1,
            true,
            &format!("IVF1,PQ2x4fs {metric:?}"),
        );
        let flat = make(&x, "Flat", metric);
        check(&g, &flat, &q, 3, 1, false, &format!("Flat {metric:?}"));
    }
    // The entries at the far end of the list are reachable: query the last rows.
    let ivf = make(&x, "IVF1,Flat", Metric::L2);
    let tail = x.slice(s![69_990.., ..]).to_owned();
    let got = search_index(&g, &ivf, tail.view(), 1, Some(1)).unwrap();
    for (i, &id) in got.ids.column(0).iter().enumerate() {
        assert_eq!(id, 69_990 + i as i64);
    }
}

/// Small bindings: the lists, the candidates and the queries all split into
/// several chunks and batches.
#[test]
fn chunked_bindings() {
    let Some(g) = gpu() else { return };
    let g = g.with_max_binding(16 << 10);
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let x = random(&mut rng, 3000, 24);
    let q = random(&mut rng, 300, 24);
    let ivf = make(&x, "IVF8,Flat", Metric::L2);
    check(&g, &ivf, &q, 20, 8, false, "chunked IVF-Flat");
    let pq = make(&x, "IVF8,PQ6x4fs", Metric::InnerProduct);
    check(&g, &pq, &q, 20, 8, true, "chunked IVF-PQfs");
    let flat = make(&x, "Flat", Metric::L2);
    check(&g, &flat, &q, 5, 1, false, "chunked Flat");
}

/// Beyond what the GPU's kernels cover (k > 128, here also k·k_factor),
/// that stage runs the CPU kernel and the results are the CPU backend's.
#[test]
fn stages_the_gpu_does_not_cover_run_on_the_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let x = random(&mut rng, 500, 8);
    let q = random(&mut rng, 3, 8);
    let cpu = CpuBackend::new();
    let ivf = make(&x, "IVF4,Flat", Metric::L2);
    let mut t = StageTimes::default();
    let r = search_index_timed(&g, &ivf, q.view(), 129, Some(2), &mut t).unwrap();
    assert_eq!(r.ids.dim(), (3, 129));
    assert!(t.cpu_fallback.scan && !t.cpu_fallback.refine);
    let want = search_index(&cpu, &ivf, q.view(), 129, Some(2)).unwrap();
    compare("IVF-Flat k129", &r, &want, false);
    // k·k_factor = 160: the PQ scan on the CPU, the refine (k = 8) on the GPU.
    let mut rf = make(&x, "IVF4,PQ4x4fs,RFlat", Metric::L2);
    set_k_factor(&mut rf, 20.0);
    let mut t = StageTimes::default();
    let r = search_index_timed(&g, &rf, q.view(), 8, Some(2), &mut t).unwrap();
    assert_eq!(
        t.cpu_fallback,
        Fallbacks {
            scan: true,
            refine: false
        }
    );
    let want = search_index(&cpu, &rf, q.view(), 8, Some(2)).unwrap();
    compare("RFlat×20", &r, &want, false);
}

/// `--json` books each stage's seconds where it ran: coarse, scan and
/// refine are all non-zero when the GPU runs an RFlat search.
#[test]
fn stage_times_are_booked_per_stage() {
    let Some(g) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(18);
    let x = random(&mut rng, 2000, 16);
    let q = random(&mut rng, 50, 16);
    let rf = make(&x, "IVF16,PQ4x4fs,RFlat", Metric::L2);
    let mut t = StageTimes::default();
    search_index_timed(&g, &rf, q.view(), 8, Some(4), &mut t).unwrap();
    assert!(t.coarse > 0.0 && t.scan > 0.0 && t.refine > 0.0, "{t:?}");
}

/// Fewer entries than k: padding with id -1 and the metric's worst score.
#[test]
fn padding_where_lists_are_short() {
    let Some(g) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let x = random(&mut rng, 64, 8);
    let q = random(&mut rng, 4, 8);
    for metric in [Metric::L2, Metric::InnerProduct] {
        let ivf = make(&x, "IVF4,Flat", metric);
        check(&g, &ivf, &q, 100, 1, false, "short IVF-Flat");
        let pq = make(&x, "IVF4,PQ2x4fs", metric);
        check(&g, &pq, &q, 100, 2, true, "short IVF-PQfs");
    }
}

/// `GpuBackend::knn` runs the Flat search kernels: equal to the CPU k-NN.
#[test]
fn knn_matches_cpu() {
    let Some(g) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(16);
    for &(nq, nb, d, k) in &[
        (1, 1, 1, 1),
        (70, 1500, 13, 8),
        (130, 40, 64, 50),
        (5, 2100, 3, 16),
    ] {
        let x = random(&mut rng, nq, d);
        let y = random(&mut rng, nb, d);
        for metric in [Metric::L2, Metric::InnerProduct] {
            let want = CpuBackend::new()
                .knn(x.view(), y.view(), k, metric)
                .unwrap();
            let got = g.knn(x.view(), y.view(), k, metric).unwrap();
            compare(
                &format!("knn nq{nq} nb{nb} d{d} k{k} {metric:?}"),
                &got,
                &want,
                false,
            );
        }
    }
}

/// Many sub-quantizers: fewer queries' tables fit workgroup memory per item
/// (3 for M = 300, 1 for M = 600).
#[test]
fn wide_pq_tables() {
    let Some(g) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    for m in [300, 600] {
        let x = random(&mut rng, 400, m);
        let q = random(&mut rng, 9, m);
        for metric in [Metric::L2, Metric::InnerProduct] {
            let pq = make(&x, &format!("IVF4,PQ{m}x4fs"), metric);
            check(&g, &pq, &q, 16, 3, true, &format!("PQ{m} {metric:?}"));
        }
    }
}

/// The lists stay on the device between searches: the same index searched
/// again (other queries, other nprobe) uploads nothing, while an index
/// with other contents — changed in place, or a new one in memory the old
/// one may have left — is uploaded and searched as itself.
#[test]
fn lists_stay_resident_across_searches() {
    let Some(g) = gpu() else { return };
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let x = random(&mut rng, 3000, 16);
    let q1 = random(&mut rng, 40, 16);
    let q2 = random(&mut rng, 25, 16);
    for factory in ["IVF16,Flat", "IVF16,PQ4x4fs"] {
        let exact = factory.contains("PQ");
        let mut index = make(&x, factory, Metric::L2);
        g.clear_resident();
        let u0 = g.list_uploads();
        check(&g, &index, &q1, 5, 4, exact, factory);
        // Lists once, and for nprobe > 1 the coarse centroids (a k-NN).
        let u1 = g.list_uploads();
        assert_eq!(u1 - u0, 2, "{factory}: first search");
        check(&g, &index, &q2, 5, 4, exact, factory);
        check(&g, &index, &q1, 3, 8, exact, factory);
        assert_eq!(
            g.list_uploads(),
            u1,
            "{factory}: searches of resident lists"
        );

        // Change one stored entry in place: same addresses, new contents.
        match &mut index {
            Index::IvfFlat(ix) => {
                let l = ix.lists.iter_mut().find(|l| !l.ids.is_empty()).unwrap();
                l.codes[..16].copy_from_slice(q1.row(0).as_slice().unwrap());
            }
            Index::IvfPqFastScan(ix) => {
                let l = ix.lists.iter_mut().find(|l| !l.ids.is_empty()).unwrap();
                l.codes[0] ^= 0x5a;
            }
            _ => unreachable!(),
        }
        // Every list probed: for IVF-Flat the changed entry is then query
        // 0's nearest, which stale buffers would miss.
        check(&g, &index, &q1, 5, 16, exact, &format!("{factory} changed"));
        assert_eq!(g.list_uploads(), u1 + 1, "{factory}: changed lists");

        // A new index of the same shape, built after the old one is gone.
        drop(index);
        let y = random(&mut rng, 3000, 16);
        let other = make(&y, factory, Metric::L2);
        check(&g, &other, &q1, 5, 4, exact, &format!("{factory} other"));
        assert!(g.list_uploads() >= u1 + 2, "{factory}: other index");
    }
}
