//! The list-scan primitives `search_flat_lists`, `search_pq_lists` and
//! `refine` (`shaders/list_scan.wgsl`; `compute/gpu/list_scan/`;
//! `compute/cpu/list_search.rs` over `flat_scan.rs` and `pq_scan.rs`) on
//! every backend against the one-query-at-a-time scalar references, on
//! plain inverted lists: empty lists, lists longer than a GPU segment,
//! unordered ids, -1 probes.
//!
//! On the CPU and the reference the data are small integers, so every sum
//! is exact whatever its order and results must be equal, ties included
//! (earlier list and entry first for exact distances, id order for PQ sums).
//! The GPU sums exact distances in another order and orders exact ties by
//! id, so there the data are random floats and a swap of two candidates
//! whose distances agree to 1e-5 is allowed; its PQ results are exact.

#[macro_use]
mod device;

use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rvc_index::Metric;
use rvc_index::compute::cpu::pq_scan::{self, PqTop};
use rvc_index::compute::cpu::{Isa, flat_scan, list_search, reference};
use rvc_index::compute::{Backend, FastScan, List, Neighbours, TopK};
use rvc_index::faiss::fastscan;

/// Inverted lists with their raw vectors and their 4-bit codes, queries and
/// the lists each query probes.
struct Fixture {
    m: usize,
    ids: Vec<Vec<i64>>,
    vectors: Vec<Vec<f32>>,
    packed: Vec<Vec<u8>>,
    codebooks: Array2<f32>,
    /// Every stored vector by id (for refine).
    by_id: Array2<f32>,
    queries: Array2<f32>,
    probes: Array2<i64>,
}

fn value(rng: &mut ChaCha8Rng, ints: bool) -> f32 {
    if ints {
        rng.random_range(-3i32..=3) as f32
    } else {
        rng.random_range(-1.0f32..1.0)
    }
}

/// `nlist` lists (one empty, one of 700 entries), ids a shuffled 0..total,
/// `nq` queries probing `np` distinct lists each (a few with -1 at the end).
fn fixture(
    seed: u64,
    d: usize,
    m: usize,
    nlist: usize,
    nq: usize,
    np: usize,
    ints: bool,
) -> Fixture {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sizes: Vec<usize> = (0..nlist)
        .map(|l| match l {
            0 => 0,
            1 => 700,
            _ => rng.random_range(1..90),
        })
        .collect();
    let total: usize = sizes.iter().sum();
    let mut order: Vec<i64> = (0..total as i64).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let mut by_id = Array2::<f32>::zeros((total, d));
    let (mut ids, mut vectors, mut packed) = (Vec::new(), Vec::new(), Vec::new());
    let mut next = 0;
    for &n in &sizes {
        let lid: Vec<i64> = order[next..next + n].to_vec();
        next += n;
        let v: Vec<f32> = (0..n * d).map(|_| value(&mut rng, ints)).collect();
        for (r, &id) in lid.iter().enumerate() {
            by_id
                .row_mut(id as usize)
                .assign(&ndarray::ArrayView1::from(&v[r * d..(r + 1) * d]));
        }
        let codes: Vec<u8> = (0..n * m).map(|_| rng.random_range(0..16u8)).collect();
        packed.push(fastscan::pq4_pack(&codes, m, 32));
        ids.push(lid);
        vectors.push(v);
    }
    let codebooks = Array2::from_shape_fn((m * 16, d / m), |_| value(&mut rng, ints));
    let queries = Array2::from_shape_fn((nq, d), |_| value(&mut rng, ints));
    let mut probes = Array2::from_elem((nq, np), -1i64);
    for q in 0..nq {
        let mut all: Vec<i64> = (0..nlist as i64).collect();
        for i in (1..all.len()).rev() {
            all.swap(i, rng.random_range(0..=i));
        }
        let live = if q % 5 == 4 {
            np.saturating_sub(1).max(1)
        } else {
            np
        };
        for r in 0..live {
            probes[[q, r]] = all[r];
        }
    }
    Fixture {
        m,
        ids,
        vectors,
        packed,
        codebooks,
        by_id,
        queries,
        probes,
    }
}

impl Fixture {
    fn flat(&self) -> Vec<List<'_, f32>> {
        self.ids
            .iter()
            .zip(&self.vectors)
            .map(|(ids, codes)| List { ids, codes })
            .collect()
    }

    fn pq(&self) -> Vec<List<'_, u8>> {
        self.ids
            .iter()
            .zip(&self.packed)
            .map(|(ids, codes)| List { ids, codes })
            .collect()
    }

    fn layout(&self) -> FastScan {
        FastScan { m: self.m, bbs: 32 }
    }
}

/// `got` equals `want` exactly (`exact`), or up to swaps of candidates whose
/// distances agree to 1e-5 of the largest score.
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
            .filter(|v| v.abs() < f32::MAX)
            .fold(1f32, |m, v| m.max(v.abs()));
        let tol = 1e-5 * scale;
        for r in 0..wi.len() {
            assert_eq!(
                gi[r] < 0,
                wi[r] < 0,
                "{what}: query {q} rank {r}: {gi} vs {wi}"
            );
            if wi[r] < 0 {
                assert_eq!(gs[r], ws[r], "{what}: padding score");
                continue;
            }
            assert!(
                (gs[r] - ws[r]).abs() <= tol,
                "{what}: query {q} rank {r}: score {} vs {}",
                gs[r],
                ws[r]
            );
            if gi[r] != wi[r] {
                let pos = wi.iter().position(|&i| i == gi[r]);
                let ok = pos.is_some_and(|p| (ws[p] - ws[r]).abs() <= 2.0 * tol)
                    || r + 1 == wi.len() && (ws[r] - gs[r]).abs() <= 2.0 * tol;
                assert!(ok, "{what}: query {q} rank {r}: id {} vs {}", gi[r], wi[r]);
            }
        }
    }
}

/// The backend's own kernel: the list-scan primitives answer `None` only
/// where a backend has none, and for these cases every backend has one.
fn own<T>(what: &str, r: Option<rvc_index::Result<T>>) -> T {
    r.unwrap_or_else(|| panic!("{what}: the backend has no kernel for this case"))
        .unwrap()
}

fn flat_lists_equal_the_reference(b: &dyn Backend, what: &str) {
    let exact = !device::is_gpu(b);
    for (seed, d, nq, np) in [(1, 24, 37, 3), (2, 10, 9, 1), (3, 5, 40, 12), (4, 1, 3, 12)] {
        let f = fixture(seed, d, 1, 12, nq, np, exact);
        let lists = f.flat();
        for metric in [Metric::L2, Metric::InnerProduct] {
            for k in [1, 10, 128] {
                let tag = format!("{what} {metric} d={d} nq={nq} np={np} k={k}");
                let want = reference::search_flat_lists(
                    f.queries.view(),
                    &lists,
                    f.probes.view(),
                    k,
                    metric,
                )
                .unwrap();
                let got = own(
                    &tag,
                    b.search_flat_lists(f.queries.view(), &lists, f.probes.view(), k, metric),
                );
                compare(&tag, &got, &want, exact);
            }
        }
    }
}
test_device!(flat_lists_equal_the_reference);

fn pq_lists_equal_the_reference(b: &dyn Backend, what: &str) {
    for (seed, d, m, nq, np) in [(5, 24, 4, 37, 3), (6, 10, 5, 9, 1), (7, 34, 17, 40, 12)] {
        let f = fixture(seed, d, m, 12, nq, np, false);
        let lists = f.pq();
        for metric in [Metric::L2, Metric::InnerProduct] {
            for k in [1, 10, 128] {
                let tag = format!("{what} {metric} d={d} m={m} nq={nq} np={np} k={k}");
                let (q, books, probes) = (f.queries.view(), f.codebooks.view(), f.probes.view());
                let want =
                    reference::search_pq_lists(q, books, f.layout(), &lists, probes, k, metric)
                        .unwrap();
                let got = own(
                    &tag,
                    b.search_pq_lists(q, books, f.layout(), &lists, probes, k, metric),
                );
                assert_eq!(got.ids, want.ids, "{tag}: ids");
                for (a, w) in got.scores.iter().zip(want.scores.iter()) {
                    assert!(
                        a == w || (a - w).abs() <= 1e-5 * w.abs().max(1.0),
                        "{tag}: {a} vs {w}"
                    );
                }
            }
        }
    }
}
test_device!(pq_lists_equal_the_reference);

fn refine_equals_the_reference(b: &dyn Backend, what: &str) {
    let exact = !device::is_gpu(b);
    let f = fixture(8, 20, 1, 12, 25, 2, exact);
    let n = f.by_id.nrows() as i64;
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    // Candidates with repeats and -1 padding, as a base search leaves them.
    let cand = Array2::from_shape_fn((25, 40), |(q, r)| {
        if r >= 40 - q % 7 {
            -1
        } else {
            rng.random_range(0..n)
        }
    });
    for metric in [Metric::L2, Metric::InnerProduct] {
        for k in [1, 8, 40, 64] {
            let tag = format!("{what} {metric} k={k}");
            let want = reference::refine(f.queries.view(), f.by_id.view(), cand.view(), k, metric)
                .unwrap();
            let got = own(
                &tag,
                b.refine(f.queries.view(), f.by_id.view(), cand.view(), k, metric),
            );
            compare(&tag, &got, &want, exact);
        }
    }
}
test_device!(refine_equals_the_reference);

/// Bad input is an error, never a panic: probes naming no list, codes
/// shorter than their ids, candidates naming no stored vector.
fn reject_malformed_input(b: &dyn Backend, what: &str) {
    let f = fixture(10, 8, 2, 4, 3, 2, true);
    let mut probes = f.probes.clone();
    probes[[0, 0]] = 4;
    let q = f.queries.view();
    assert!(
        b.search_flat_lists(q, &f.flat(), probes.view(), 5, Metric::L2)
            .unwrap()
            .is_err(),
        "{what}"
    );
    let mut short = f.flat();
    short[1].codes = &short[1].codes[..5];
    assert!(
        b.search_flat_lists(q, &short, f.probes.view(), 5, Metric::L2)
            .unwrap()
            .is_err(),
        "{what}"
    );
    assert!(
        b.search_pq_lists(
            q,
            f.codebooks.view(),
            f.layout(),
            &f.pq(),
            probes.view(),
            5,
            Metric::L2
        )
        .unwrap()
        .is_err(),
        "{what}"
    );
    let mut short = f.pq();
    short[1].codes = &short[1].codes[..3];
    assert!(
        b.search_pq_lists(
            q,
            f.codebooks.view(),
            f.layout(),
            &short,
            f.probes.view(),
            5,
            Metric::L2
        )
        .unwrap()
        .is_err(),
        "{what}"
    );
    let cand = Array2::from_elem((3, 2), f.by_id.nrows() as i64);
    assert!(
        b.refine(q, f.by_id.view(), cand.view(), 1, Metric::L2)
            .unwrap()
            .is_err(),
        "{what}"
    );
    let few = Array2::from_elem((2, 2), 0i64);
    assert!(
        b.refine(q, f.by_id.view(), few.view(), 1, Metric::L2)
            .unwrap()
            .is_err(),
        "{what}"
    );
}
test_device!(reject_malformed_input);

/// Batches of queries (partial results kept per batch and slot) give exactly
/// the one-query-at-a-time reference, whatever the batch size, for flat
/// lists (integer data: exact sums, real ties) and fast-scan PQ, on every
/// instruction set.
#[test]
fn cpu_batches_equal_the_reference() {
    let f = fixture(21, 24, 6, 12, 97, 12, true);
    let (flat, pq) = (f.flat(), f.pq());
    for isa in Isa::available() {
        for metric in [Metric::L2, Metric::InnerProduct] {
            for (k, np) in [(1, 1), (10, 3), (400, 2), (5, 12)] {
                let probes = f.probes.slice(ndarray::s![.., ..np]);
                let q = f.queries.view();
                let want_flat = reference::search_flat_lists(q, &flat, probes, k, metric).unwrap();
                let want_pq = reference::search_pq_lists(
                    q,
                    f.codebooks.view(),
                    f.layout(),
                    &pq,
                    probes,
                    k,
                    metric,
                )
                .unwrap();
                for batch in [1, 7, 40, 1000] {
                    let tag = format!("{isa:?} {metric:?} k={k} nprobe={np} batch={batch}");
                    let got = list_search::search_flat_lists(
                        isa,
                        q,
                        &flat,
                        probes,
                        k,
                        metric,
                        Some(batch),
                    )
                    .unwrap();
                    compare(&format!("flat {tag}"), &got, &want_flat, true);
                    let got = list_search::search_pq_lists(
                        isa,
                        q,
                        f.codebooks.view(),
                        f.layout(),
                        &pq,
                        probes,
                        k,
                        metric,
                        Some(batch),
                    )
                    .unwrap();
                    assert_eq!(got.ids, want_pq.ids, "pq {tag}");
                    if k == 400 {
                        assert!(got.ids.iter().any(|&i| i == -1), "{tag}: should pad");
                    }
                    for (a, b) in got.scores.iter().zip(want_pq.scores.iter()) {
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

/// Ids beyond the 48 bits a packed PQ key carries, and blocks of 64
/// entries, take the scalar path: same results as the reference.
#[test]
fn cpu_pq_outside_the_fast_path() {
    let f = fixture(22, 12, 3, 6, 20, 3, false);
    let far: Vec<Vec<i64>> = f
        .ids
        .iter()
        .map(|l| l.iter().map(|&i| i + (1 << 50)).collect())
        .collect();
    let lists: Vec<List<'_, u8>> = far
        .iter()
        .zip(&f.packed)
        .map(|(ids, codes)| List { ids, codes })
        .collect();
    let q = f.queries.view();
    for metric in [Metric::L2, Metric::InnerProduct] {
        let want = reference::search_pq_lists(
            q,
            f.codebooks.view(),
            f.layout(),
            &lists,
            f.probes.view(),
            9,
            metric,
        )
        .unwrap();
        let got = list_search::search_pq_lists(
            Isa::best(),
            q,
            f.codebooks.view(),
            f.layout(),
            &lists,
            f.probes.view(),
            9,
            metric,
            None,
        )
        .unwrap();
        assert_eq!(got, want, "{metric:?}");
        assert!(got.ids.iter().any(|&i| i >= 1 << 50));
    }
    // bbs 64: repack the codes of the same entries.
    let mut rng = ChaCha8Rng::seed_from_u64(23);
    let codes: Vec<Vec<u8>> = f
        .ids
        .iter()
        .map(|l| {
            (0..l.len() * f.m)
                .map(|_| rng.random_range(0..16u8))
                .collect()
        })
        .collect();
    let p64: Vec<Vec<u8>> = codes
        .iter()
        .map(|c| fastscan::pq4_pack(c, f.m, 64))
        .collect();
    let p32: Vec<Vec<u8>> = codes
        .iter()
        .map(|c| fastscan::pq4_pack(c, f.m, 32))
        .collect();
    let l64: Vec<List<'_, u8>> = f
        .ids
        .iter()
        .zip(&p64)
        .map(|(ids, codes)| List { ids, codes })
        .collect();
    let l32: Vec<List<'_, u8>> = f
        .ids
        .iter()
        .zip(&p32)
        .map(|(ids, codes)| List { ids, codes })
        .collect();
    let layout64 = FastScan { m: f.m, bbs: 64 };
    let got = list_search::search_pq_lists(
        Isa::best(),
        q,
        f.codebooks.view(),
        layout64,
        &l64,
        f.probes.view(),
        9,
        Metric::L2,
        None,
    )
    .unwrap();
    let fast = list_search::search_pq_lists(
        Isa::best(),
        q,
        f.codebooks.view(),
        f.layout(),
        &l32,
        f.probes.view(),
        9,
        Metric::L2,
        None,
    )
    .unwrap();
    assert_eq!(got, fast, "bbs 64 vs bbs 32");
}

/// The GPU's kernels cover k ≤ 128 and ids that fit 32 bits; beyond, its
/// primitives answer `None` (the caller then runs the CPU kernel).
#[test]
fn gpu_declines_what_it_does_not_cover() {
    let Some(g) = device::gpu() else { return };
    let f = fixture(30, 8, 2, 4, 3, 2, false);
    let q = f.queries.view();
    assert!(
        g.search_flat_lists(q, &f.flat(), f.probes.view(), 129, Metric::L2)
            .is_none()
    );
    assert!(
        g.search_pq_lists(
            q,
            f.codebooks.view(),
            f.layout(),
            &f.pq(),
            f.probes.view(),
            129,
            Metric::L2
        )
        .is_none()
    );
    let cand = Array2::from_elem((3, 200), 0i64);
    assert!(
        g.refine(q, f.by_id.view(), cand.view(), 129, Metric::L2)
            .is_none()
    );
    assert!(
        g.refine(q, f.by_id.view(), cand.view(), 128, Metric::L2)
            .is_some()
    );
    let far: Vec<Vec<i64>> = f
        .ids
        .iter()
        .map(|l| l.iter().map(|&i| i + (1 << 33)).collect())
        .collect();
    let lists: Vec<List<'_, f32>> = far
        .iter()
        .zip(&f.vectors)
        .map(|(ids, codes)| List { ids, codes })
        .collect();
    assert!(
        g.search_flat_lists(q, &lists, f.probes.view(), 5, Metric::L2)
            .is_none()
    );
    assert!(
        g.search_flat_lists(q, &f.flat(), f.probes.view(), 5, Metric::L2)
            .is_some()
    );
}

/// Small bindings on the GPU: lists, candidates and queries split into
/// several chunks and batches.
#[test]
fn gpu_chunked_bindings() {
    let Some(g) = device::gpu() else { return };
    let g = g.with_max_binding(16 << 10);
    let f = fixture(31, 24, 6, 10, 300, 8, false);
    let q = f.queries.view();
    for metric in [Metric::L2, Metric::InnerProduct] {
        let want = reference::search_flat_lists(q, &f.flat(), f.probes.view(), 20, metric).unwrap();
        let got = own(
            "chunked flat",
            g.search_flat_lists(q, &f.flat(), f.probes.view(), 20, metric),
        );
        compare("chunked flat", &got, &want, false);
        let want = reference::search_pq_lists(
            q,
            f.codebooks.view(),
            f.layout(),
            &f.pq(),
            f.probes.view(),
            20,
            metric,
        )
        .unwrap();
        let got = own(
            "chunked pq",
            g.search_pq_lists(
                q,
                f.codebooks.view(),
                f.layout(),
                &f.pq(),
                f.probes.view(),
                20,
                metric,
            ),
        );
        assert_eq!(got, want, "chunked pq {metric:?}");
    }
}

// ------------------------------------------------------- the CPU's SIMD tiles

/// Small integers: every sum is exact whatever the order, so keys equal
/// the scalar reference bit for bit and ties really occur.
fn ints(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-3i32..=3) as f32).collect()
}

#[test]
fn cpu_flat_tiles_equal_scalar_on_odd_sizes() {
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
                        flat_scan::scan_flat(
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
                                .map(|(r, &id)| (reference::flat_key(metric, q, r), id))
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
fn cpu_fast_scan_equals_scalar_on_odd_sizes() {
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
                        pq_scan::scan_pq(isa, ip, &lut_refs, m2, &packed, n, &ids, &mut tops);
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
                                    pq_scan::pq_key(s as u16, id, ip)
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
