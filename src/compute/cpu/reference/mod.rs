//! Plain scalar versions of the backend primitives, written for clarity
//! (f64 sums where the primitive's result does not depend on the order),
//! and [`ReferenceBackend`], the backend made of them. Tests compare the
//! fast kernels (CPU and GPU) against these.

mod lists;

use ndarray::{Array2, ArrayView2};

pub(crate) use lists::per_query;
pub use lists::{
    QuantizedLut, flat_key, lut, pq_tables, quantize_lut, query_table, refine, search_flat_lists,
    search_pq_lists,
};

use crate::compute::lists::{FastScan, List, PqTables};
use crate::compute::neighbours::Neighbours;
use crate::compute::{Assignment, Backend, BackendInfo, PqAssignment};
use crate::{Error, Metric, Result};

/// Exact nearest centroid per row, f64 accumulation, ties to the lowest index.
pub fn assign(x: ArrayView2<f32>, c: ArrayView2<f32>, metric: Metric) -> Assignment {
    let mut labels = Vec::with_capacity(x.nrows());
    let mut distances = Vec::with_capacity(x.nrows());
    for row in x.rows() {
        let mut best = (0u32, metric.worst() as f64);
        let mut first = true;
        for (j, cen) in c.rows().into_iter().enumerate() {
            let s: f64 = match metric {
                Metric::L2 => row
                    .iter()
                    .zip(cen.iter())
                    .map(|(&a, &b)| {
                        let t = a as f64 - b as f64;
                        t * t
                    })
                    .sum(),
                Metric::InnerProduct => row
                    .iter()
                    .zip(cen.iter())
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum(),
            };
            let better = match metric {
                Metric::L2 => s < best.1,
                Metric::InnerProduct => s > best.1,
            };
            if first || better {
                best = (j as u32, s);
                first = false;
            }
        }
        labels.push(best.0);
        distances.push(best.1 as f32);
    }
    Assignment { labels, distances }
}

/// Best and second-best squared L2 distance per row (f64 accumulation).
pub fn assign_top2(x: ArrayView2<f32>, c: ArrayView2<f32>) -> (Assignment, Vec<f32>) {
    let mut a = Assignment::default();
    let mut second = Vec::with_capacity(x.nrows());
    for row in x.rows() {
        let (mut b1, mut b2, mut l) = (f64::INFINITY, f64::INFINITY, 0u32);
        for (j, cen) in c.rows().into_iter().enumerate() {
            let s: f64 = row
                .iter()
                .zip(cen.iter())
                .map(|(&p, &q)| (p as f64 - q as f64).powi(2))
                .sum();
            if s < b1 {
                b2 = b1;
                b1 = s;
                l = j as u32;
            } else if s < b2 {
                b2 = s;
            }
        }
        a.labels.push(l);
        a.distances.push(b1 as f32);
        second.push(b2 as f32);
    }
    (a, second)
}

/// Per-label sums (f64 accumulation) and counts.
pub fn centroid_sums(x: ArrayView2<f32>, labels: &[u32], k: usize) -> (Array2<f32>, Vec<u64>) {
    let d = x.ncols();
    let mut sums = vec![0f64; k * d];
    let mut counts = vec![0u64; k];
    for (row, &l) in x.rows().into_iter().zip(labels) {
        let l = l as usize;
        counts[l] += 1;
        for (s, &v) in sums[l * d..(l + 1) * d].iter_mut().zip(row.iter()) {
            *s += v as f64;
        }
    }
    let sums = Array2::from_shape_vec((k, d), sums.into_iter().map(|v| v as f32).collect())
        .expect("shape matches");
    (sums, counts)
}

/// Exact k-NN by brute force: every score in f64, ties to the lower index,
/// faiss's padding (id -1, the worst score) where `y` has fewer than `k` rows.
pub fn knn(x: ArrayView2<f32>, y: ArrayView2<f32>, k: usize, metric: Metric) -> Result<Neighbours> {
    if x.ncols() != y.ncols() {
        return Err(Error::Invalid(format!(
            "knn: queries have {} dimensions but the database rows have {}",
            x.ncols(),
            y.ncols()
        )));
    }
    let nq = x.nrows();
    let mut ids = Array2::from_elem((nq, k), -1i64);
    let mut scores = Array2::from_elem((nq, k), metric.worst());
    for (i, row) in x.rows().into_iter().enumerate() {
        let mut all: Vec<(f64, usize)> = y
            .rows()
            .into_iter()
            .enumerate()
            .map(|(j, c)| {
                let s: f64 = match metric {
                    Metric::L2 => row
                        .iter()
                        .zip(c.iter())
                        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                        .sum(),
                    Metric::InnerProduct => -row
                        .iter()
                        .zip(c.iter())
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum::<f64>(),
                };
                (s, j)
            })
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for (r, &(s, j)) in all.iter().take(k).enumerate() {
            ids[[i, r]] = j as i64;
            scores[[i, r]] = match metric {
                Metric::L2 => s as f32,
                Metric::InnerProduct => -s as f32,
            };
        }
    }
    Ok(Neighbours { ids, scores })
}

/// Nearest sub-centroid per row and sub-space, f64 sums, ties to the lowest.
pub fn pq_assign(
    x: ArrayView2<f32>,
    codebooks: ArrayView2<f32>,
    m: usize,
    ksub: usize,
) -> Result<PqAssignment> {
    let dsub = super::pq_assign::check("pq_assign", x.ncols(), codebooks, m, ksub)?;
    let n = x.nrows();
    let mut codes = Array2::<u8>::zeros((n, m));
    let mut distances = Array2::<f32>::zeros((n, m));
    for (i, row) in x.rows().into_iter().enumerate() {
        for sq in 0..m {
            let mut best = (f64::INFINITY, 0usize);
            for c in 0..ksub {
                let cen = codebooks.row(sq * ksub + c);
                let s: f64 = (0..dsub)
                    .map(|t| (row[sq * dsub + t] as f64 - cen[t] as f64).powi(2))
                    .sum();
                if s < best.0 {
                    best = (s, c);
                }
            }
            codes[[i, sq]] = best.1 as u8;
            distances[[i, sq]] = best.0 as f32;
        }
    }
    Ok(PqAssignment { codes, distances })
}

/// `Backend::weighted_sum` in f64.
pub fn weighted_sum(
    q: ArrayView2<f32>,
    db: ArrayView2<f32>,
    ids: ArrayView2<i64>,
    alpha: f32,
) -> Result<Array2<f32>> {
    super::weighted_sum::check(q, db, ids)?;
    let mut out = Array2::<f32>::zeros(q.dim());
    for (i, qi) in q.rows().into_iter().enumerate() {
        let mut y = vec![0f64; q.ncols()];
        for &id in ids.row(i).iter().filter(|&&id| id >= 0) {
            let n = db.row(id as usize);
            let sim: f64 = qi
                .iter()
                .zip(n.iter())
                .map(|(&a, &b)| a as f64 * b as f64)
                .sum();
            let w = sim.max(0.0).powf(alpha as f64);
            y.iter_mut()
                .zip(n.iter())
                .for_each(|(o, &v)| *o += w * v as f64);
        }
        let norm = y.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-9);
        for (o, v) in out.row_mut(i).iter_mut().zip(&y) {
            *o = (v / norm) as f32;
        }
    }
    Ok(out)
}

/// The backend made of this module's scalar references: slow, and written
/// to be obviously right. `assign_top2` is provided too.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReferenceBackend;

impl Backend for ReferenceBackend {
    fn info(&self) -> BackendInfo {
        BackendInfo {
            kind: "reference".into(),
            name: "scalar reference".into(),
            device_type: String::new(),
            api: String::new(),
        }
    }

    fn assign(&self, x: ArrayView2<f32>, c: ArrayView2<f32>, metric: Metric) -> Result<Assignment> {
        check_assign(x, c)?;
        Ok(assign(x, c, metric))
    }

    fn assign_top2(
        &self,
        x: ArrayView2<f32>,
        c: ArrayView2<f32>,
    ) -> Option<Result<(Assignment, Vec<f32>)>> {
        Some(check_assign(x, c).map(|()| assign_top2(x, c)))
    }

    fn centroid_sums(
        &self,
        x: ArrayView2<f32>,
        labels: &[u32],
        k: usize,
    ) -> Result<(Array2<f32>, Vec<u64>)> {
        if labels.len() != x.nrows() {
            return Err(Error::Invalid(format!(
                "centroid_sums: {} rows but {} labels",
                x.nrows(),
                labels.len()
            )));
        }
        if let Some(&bad) = labels.iter().find(|&&l| l as usize >= k) {
            return Err(Error::Invalid(format!(
                "centroid_sums: label {bad} is not below k = {k}"
            )));
        }
        Ok(centroid_sums(x, labels, k))
    }

    fn knn(
        &self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        k: usize,
        metric: Metric,
    ) -> Result<Neighbours> {
        knn(x, y, k, metric)
    }

    fn pq_assign(
        &self,
        x: ArrayView2<f32>,
        codebooks: ArrayView2<f32>,
        m: usize,
        ksub: usize,
    ) -> Result<PqAssignment> {
        pq_assign(x, codebooks, m, ksub)
    }

    fn pq_encode(
        &self,
        x: ArrayView2<f32>,
        codebooks: ArrayView2<f32>,
        m: usize,
    ) -> Result<Vec<u8>> {
        let ksub = codebooks.nrows() / m.max(1);
        Ok(pq_assign(x, codebooks, m, ksub)?
            .codes
            .into_raw_vec_and_offset()
            .0)
    }

    fn pq_tables(
        &self,
        queries: ArrayView2<f32>,
        codebooks: ArrayView2<f32>,
        m: usize,
        metric: Metric,
    ) -> Result<PqTables> {
        pq_tables(queries, codebooks, m, metric)
    }

    fn search_flat_lists(
        &self,
        queries: ArrayView2<f32>,
        lists: &[List<'_, f32>],
        probes: ArrayView2<i64>,
        k: usize,
        metric: Metric,
    ) -> Option<Result<Neighbours>> {
        Some(search_flat_lists(queries, lists, probes, k, metric))
    }

    fn search_pq_lists(
        &self,
        queries: ArrayView2<f32>,
        codebooks: ArrayView2<f32>,
        layout: FastScan,
        lists: &[List<'_, u8>],
        probes: ArrayView2<i64>,
        k: usize,
        metric: Metric,
    ) -> Option<Result<Neighbours>> {
        Some(search_pq_lists(
            queries, codebooks, layout, lists, probes, k, metric,
        ))
    }

    fn refine(
        &self,
        queries: ArrayView2<f32>,
        vectors: ArrayView2<f32>,
        candidates: ArrayView2<i64>,
        k: usize,
        metric: Metric,
    ) -> Option<Result<Neighbours>> {
        Some(refine(queries, vectors, candidates, k, metric))
    }

    fn weighted_sum(
        &self,
        q: ArrayView2<f32>,
        db: ArrayView2<f32>,
        ids: ArrayView2<i64>,
        alpha: f32,
    ) -> Result<Array2<f32>> {
        weighted_sum(q, db, ids, alpha)
    }
}

/// The shapes every `assign` accepts.
fn check_assign(x: ArrayView2<f32>, c: ArrayView2<f32>) -> Result<()> {
    if c.ncols() != x.ncols() {
        return Err(Error::Invalid(format!(
            "assign: rows have {} dimensions but centroids have {}",
            x.ncols(),
            c.ncols()
        )));
    }
    if c.nrows() == 0 {
        return Err(Error::Invalid("assign: no centroids".into()));
    }
    Ok(())
}
