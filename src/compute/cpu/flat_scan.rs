//! The flat list-scan kernels (`search_flat_lists`, `refine`): one list
//! scored against a group of queries at once, in tiles of several queries ×
//! several list rows, so each list row is read from memory once per group
//! rather than once per query. Distances are computed directly (Σ (x − y)²,
//! or −Σ x·y) as faiss's IVF-Flat scanner does, so results order as faiss's.
//! Keys are "smaller is better": squared L2 distances or negated inner
//! products. AVX-512 (16 lanes, 4 queries × 6 rows), AVX2 + FMA (8 lanes,
//! 2 × 4) or portable (8 lane sums, 2 × 2), by [`Isa`].

use super::Isa;
use crate::Metric;
use crate::compute::neighbours::TopK;

/// Score every row of one list (`row(i)`, `n` rows of `d` floats) against each
/// query and fold the keys into `tops[q]` (ids `ids[i]`), rows in order.
#[allow(clippy::too_many_arguments)]
pub fn scan_flat<'a>(
    isa: Isa,
    metric: Metric,
    queries: &[&[f32]],
    d: usize,
    n: usize,
    row: impl Fn(usize) -> &'a [f32],
    ids: impl Fn(usize) -> i64,
    tops: &mut [TopK],
) {
    assert_eq!(queries.len(), tops.len());
    assert!(queries.iter().all(|q| q.len() >= d));
    if n == 0 || queries.is_empty() {
        return;
    }
    let ip = metric == Metric::InnerProduct;
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.is_available() => {
            drive::<6, 4>(queries, d, n, &row, &ids, tops, |qs, rs, out| unsafe {
                x86::flat_tile_512(qs, rs, d, ip, out)
            })
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.is_available() => {
            drive::<4, 2>(queries, d, n, &row, &ids, tops, |qs, rs, out| unsafe {
                x86::flat_tile_avx2(qs, rs, d, ip, out)
            })
        }
        _ => drive::<2, 2>(queries, d, n, &row, &ids, tops, |qs, rs, out| {
            flat_tile_portable(qs, rs, d, ip, out)
        }),
    }
}

/// Walk queries in groups of up to `QM` and rows in tiles of `R` (a short
/// last tile repeats its last row), folding each tile's keys into the tops.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn drive<'a, const R: usize, const QM: usize>(
    queries: &[&[f32]],
    d: usize,
    n: usize,
    row: &impl Fn(usize) -> &'a [f32],
    ids: &impl Fn(usize) -> i64,
    tops: &mut [TopK],
    tile: impl Fn(&[&[f32]], &[&[f32]; R], &mut [[f32; R]; 4]),
) {
    let mut out = [[0f32; R]; 4];
    let mut q0 = 0;
    while q0 < queries.len() {
        let left = queries.len() - q0;
        let qn = if left >= QM {
            QM
        } else if left >= 2 {
            2
        } else {
            1
        };
        let qs = &queries[q0..q0 + qn];
        let mut r0 = 0;
        while r0 < n {
            let rn = R.min(n - r0);
            let rs: [&[f32]; R] = std::array::from_fn(|b| {
                let r = row(r0 + b.min(rn - 1));
                debug_assert!(r.len() >= d);
                r
            });
            tile(qs, &rs, &mut out);
            for (a, top) in tops[q0..q0 + qn].iter_mut().enumerate() {
                let mut thr = top.threshold();
                for (b, &key) in out[a][..rn].iter().enumerate() {
                    if key < thr {
                        top.push(key, ids(r0 + b));
                        thr = top.threshold();
                    }
                }
            }
            r0 += R;
        }
        q0 += qn;
    }
}

/// Reference key of one row: Σ (x − y)² or −Σ x·y, summed in order.
pub fn flat_key_scalar(metric: Metric, x: &[f32], y: &[f32]) -> f32 {
    match metric {
        Metric::L2 => x.iter().zip(y).map(|(a, b)| (a - b) * (a - b)).sum(),
        Metric::InnerProduct => -x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>(),
    }
}

/// Key of one row with the fastest kernel (for refine).
pub fn flat_key(isa: Isa, metric: Metric, x: &[f32], y: &[f32]) -> f32 {
    let d = x.len().min(y.len());
    let mut out = [[0f32; 1]; 4];
    let ip = metric == Metric::InnerProduct;
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.is_available() => unsafe {
            x86::flat_tile_512::<1>(&[x], &[y], d, ip, &mut out)
        },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.is_available() => unsafe {
            x86::flat_tile_avx2::<1>(&[x], &[y], d, ip, &mut out)
        },
        _ => flat_tile_portable::<1>(&[x], &[y], d, ip, &mut out),
    }
    out[0][0]
}

/// Portable tile: 8 independent lane sums per (query, row), `Q ≤ 4` queries.
#[inline(always)]
fn flat_tile_generic<const R: usize>(
    qs: &[&[f32]],
    rs: &[&[f32]; R],
    d: usize,
    ip: bool,
    out: &mut [[f32; R]; 4],
) {
    match qs.len() {
        4 => tile_q::<4, R>(qs, rs, d, ip, out),
        3 => tile_q::<3, R>(qs, rs, d, ip, out),
        2 => tile_q::<2, R>(qs, rs, d, ip, out),
        _ => tile_q::<1, R>(qs, rs, d, ip, out),
    }
}

#[inline(always)]
fn tile_q<const Q: usize, const R: usize>(
    qs: &[&[f32]],
    rs: &[&[f32]; R],
    d: usize,
    ip: bool,
    out: &mut [[f32; R]; 4],
) {
    const L: usize = 8;
    let qs: [&[f32]; Q] = std::array::from_fn(|a| &qs[a][..d]);
    let rs: [&[f32]; R] = std::array::from_fn(|b| &rs[b][..d]);
    let mut acc = [[[0f32; L]; R]; Q];
    let full = d / L * L;
    let mut j = 0;
    while j < full {
        for b in 0..R {
            let y: &[f32; L] = rs[b][j..j + L].try_into().unwrap();
            for a in 0..Q {
                let x: &[f32; L] = qs[a][j..j + L].try_into().unwrap();
                for l in 0..L {
                    let (u, v) = if ip {
                        (x[l], y[l])
                    } else {
                        (x[l] - y[l], x[l] - y[l])
                    };
                    acc[a][b][l] += u * v;
                }
            }
        }
        j += L;
    }
    for a in 0..Q {
        for b in 0..R {
            for jj in full..d {
                let (x, y) = (qs[a][jj], rs[b][jj]);
                let (u, v) = if ip { (x, y) } else { (x - y, x - y) };
                acc[a][b][jj - full] += u * v;
            }
            let s = acc[a][b].iter().sum::<f32>();
            out[a][b] = if ip { -s } else { s };
        }
    }
}

fn flat_tile_portable<const R: usize>(
    qs: &[&[f32]],
    rs: &[&[f32]; R],
    d: usize,
    ip: bool,
    out: &mut [[f32; R]; 4],
) {
    flat_tile_generic::<R>(qs, rs, d, ip, out)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// AVX-512 flat tile: up to 4 queries × `R` rows, 16-lane sums.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn flat_tile_512<const R: usize>(
        qs: &[&[f32]],
        rs: &[&[f32]; R],
        d: usize,
        ip: bool,
        out: &mut [[f32; R]; 4],
    ) {
        unsafe {
            match (qs.len(), ip) {
                (4, false) => tile512::<4, R, false>(qs, rs, d, out),
                (3, false) => tile512::<3, R, false>(qs, rs, d, out),
                (2, false) => tile512::<2, R, false>(qs, rs, d, out),
                (_, false) => tile512::<1, R, false>(qs, rs, d, out),
                (4, true) => tile512::<4, R, true>(qs, rs, d, out),
                (3, true) => tile512::<3, R, true>(qs, rs, d, out),
                (2, true) => tile512::<2, R, true>(qs, rs, d, out),
                (_, true) => tile512::<1, R, true>(qs, rs, d, out),
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn tile512<const Q: usize, const R: usize, const IP: bool>(
        qs: &[&[f32]],
        rs: &[&[f32]; R],
        d: usize,
        out: &mut [[f32; R]; 4],
    ) {
        let mut qp = [std::ptr::null::<f32>(); Q];
        for a in 0..Q {
            assert!(qs[a].len() >= d);
            qp[a] = qs[a].as_ptr();
        }
        let mut rp = [std::ptr::null::<f32>(); R];
        for b in 0..R {
            assert!(rs[b].len() >= d);
            rp[b] = rs[b].as_ptr();
        }
        let mut acc = [[_mm512_setzero_ps(); R]; Q];
        let mut j = 0;
        // SAFETY: every pointer has at least `d` floats; loads stay below d
        // (the tail is masked).
        unsafe {
            while j + 16 <= d {
                let mut x = [_mm512_setzero_ps(); Q];
                for a in 0..Q {
                    x[a] = _mm512_loadu_ps(qp[a].add(j));
                }
                for b in 0..R {
                    let y = _mm512_loadu_ps(rp[b].add(j));
                    for a in 0..Q {
                        acc[a][b] = if IP {
                            _mm512_fmadd_ps(x[a], y, acc[a][b])
                        } else {
                            let t = _mm512_sub_ps(x[a], y);
                            _mm512_fmadd_ps(t, t, acc[a][b])
                        };
                    }
                }
                j += 16;
            }
            if j < d {
                let k: __mmask16 = ((1u32 << (d - j)) - 1) as u16;
                let mut x = [_mm512_setzero_ps(); Q];
                for a in 0..Q {
                    x[a] = _mm512_maskz_loadu_ps(k, qp[a].add(j));
                }
                for b in 0..R {
                    let y = _mm512_maskz_loadu_ps(k, rp[b].add(j));
                    for a in 0..Q {
                        acc[a][b] = if IP {
                            _mm512_fmadd_ps(x[a], y, acc[a][b])
                        } else {
                            let t = _mm512_sub_ps(x[a], y);
                            _mm512_fmadd_ps(t, t, acc[a][b])
                        };
                    }
                }
            }
        }
        for a in 0..Q {
            for b in 0..R {
                let s = _mm512_reduce_add_ps(acc[a][b]);
                out[a][b] = if IP { -s } else { s };
            }
        }
    }

    /// AVX2 + FMA flat tile: up to 2 queries × `R` rows, 8-lane sums.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn flat_tile_avx2<const R: usize>(
        qs: &[&[f32]],
        rs: &[&[f32]; R],
        d: usize,
        ip: bool,
        out: &mut [[f32; R]; 4],
    ) {
        unsafe {
            match (qs.len(), ip) {
                (1, false) => tile256::<1, R, false>(qs, rs, d, out),
                (_, false) => tile256::<2, R, false>(qs, rs, d, out),
                (1, true) => tile256::<1, R, true>(qs, rs, d, out),
                (_, true) => tile256::<2, R, true>(qs, rs, d, out),
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile256<const Q: usize, const R: usize, const IP: bool>(
        qs: &[&[f32]],
        rs: &[&[f32]; R],
        d: usize,
        out: &mut [[f32; R]; 4],
    ) {
        let mut qp = [std::ptr::null::<f32>(); Q];
        for a in 0..Q {
            assert!(qs[a].len() >= d);
            qp[a] = qs[a].as_ptr();
        }
        let mut rp = [std::ptr::null::<f32>(); R];
        for b in 0..R {
            assert!(rs[b].len() >= d);
            rp[b] = rs[b].as_ptr();
        }
        let mut acc = [[_mm256_setzero_ps(); R]; Q];
        let mut j = 0;
        // SAFETY: loads stay below `d` floats of every pointer.
        unsafe {
            while j + 8 <= d {
                let mut x = [_mm256_setzero_ps(); Q];
                for a in 0..Q {
                    x[a] = _mm256_loadu_ps(qp[a].add(j));
                }
                for b in 0..R {
                    let y = _mm256_loadu_ps(rp[b].add(j));
                    for a in 0..Q {
                        acc[a][b] = if IP {
                            _mm256_fmadd_ps(x[a], y, acc[a][b])
                        } else {
                            let t = _mm256_sub_ps(x[a], y);
                            _mm256_fmadd_ps(t, t, acc[a][b])
                        };
                    }
                }
                j += 8;
            }
        }
        let mut lanes = [0f32; 8];
        for a in 0..Q {
            for b in 0..R {
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc[a][b]) };
                // SAFETY: jj < d.
                for (l, jj) in (j..d).enumerate() {
                    let (x, y) = unsafe { (*qp[a].add(jj), *rp[b].add(jj)) };
                    lanes[l] += if IP { x * y } else { (x - y) * (x - y) };
                }
                let s = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
                    + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
                out[a][b] = if IP { -s } else { s };
            }
        }
    }
}
