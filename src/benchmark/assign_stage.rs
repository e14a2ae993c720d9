//! The `assign` stage: the nearest-centroid kernel alone (what every k-means
//! iteration and every `add` runs), timed on all rows against K centroids,
//! with a check of a sample of rows against an f64 scoring.

use ndarray::{ArrayView2, s};
use rayon::prelude::*;

use super::pipeline::timed;
use super::report::Stage;
use crate::compute::Backend;
use crate::{Metric, Result};

/// Rows of the sample checked against the f64 scoring.
const CHECK_ROWS: usize = 2000;
/// A label other than the f64 best counts as a near tie (not an error) when
/// its f64 distance is within this share of ‖x‖² + ‖c‖² of the best one.
const TIE_TOL: f64 = 1e-5;

/// How the sampled labels compare with the f64 best.
#[derive(Debug, Default, PartialEq)]
pub struct Checked {
    pub rows: usize,
    /// Labels that are not the f64 best.
    pub differ: usize,
    /// Of those, labels worse than the best by more than the tie tolerance.
    pub wrong: usize,
}

/// Score `labels` of the evenly spaced sample rows of `x` against every
/// centroid in f64.
pub fn check_sample(x: ArrayView2<f32>, c: ArrayView2<f32>, labels: &[u32]) -> Checked {
    let n = x.nrows();
    let take = n.min(CHECK_ROWS);
    let mut out = Checked {
        rows: take,
        ..Default::default()
    };
    let norms: Vec<f64> = c
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|&v| (v as f64).powi(2)).sum())
        .collect();
    let verdicts: Vec<(bool, bool)> = (0..take)
        .into_par_iter()
        .map(|t| {
            let i = t * n / take;
            let row = x.row(i);
            let dist = |j: usize| -> f64 {
                row.iter()
                    .zip(c.row(j).iter())
                    .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                    .sum()
            };
            let (best, best_d) = (0..c.nrows())
                .map(|j| (j, dist(j)))
                .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
            let got = labels[i] as usize;
            if got == best {
                return (false, false);
            }
            if got >= c.nrows() {
                return (true, true);
            }
            let xx: f64 = row.iter().map(|&v| (v as f64).powi(2)).sum();
            let scale = xx + norms[got].max(norms[best]);
            (true, dist(got) - best_d > TIE_TOL * scale)
        })
        .collect();
    out.differ = verdicts.iter().filter(|v| v.0).count();
    out.wrong = verdicts.iter().filter(|v| v.1).count();
    out
}

/// One stage per K: `backend.assign` of every row of `db` against its
/// first K rows (k-means' initial centroids are rows too), `repeat` times.
pub fn run(
    backend: &dyn Backend,
    db: ArrayView2<f32>,
    ks: &[usize],
    repeat: usize,
    peak: &mut Option<u64>,
) -> Result<Vec<Stage>> {
    let (n, d) = db.dim();
    let mut stages = Vec::new();
    for &k in ks {
        let k = k.min(n);
        let c = db.slice(s![..k, ..]).to_owned();
        let reruns = || backend.adapter().map_or(0, |a| a.coop_rerun_rows);
        let on_device = || backend.adapter().and_then(|a| a.assign_kernel_seconds);
        let (before, dev0) = (reruns(), on_device());
        let (a, t, p) = timed(repeat, peak, || backend.assign(db, c.view(), Metric::L2))?;
        let rerun = reruns() - before;
        // The kernels alone, from device timestamps: per run, no transfers.
        let kernel_s = match (dev0, on_device()) {
            (Some(a), Some(b)) if b > a => Some((b - a) / repeat.max(1) as f64),
            _ => None,
        };
        let flops = 2.0 * n as f64 * k as f64 * d as f64;
        let checked = check_sample(db, c.view(), &a.labels);
        let mut st = Stage::new("assign", t)
            .flops(flops)
            .info("kernel_s", kernel_s)
            .info("kernel_gflops", kernel_s.map(|s| flops / s / 1e9))
            .info("rows", n)
            .info("k", k)
            .info("d", d)
            .info("repeat", repeat)
            .info("checked_rows", checked.rows)
            .info("labels_not_f64_best", checked.differ)
            .info("labels_wrong", checked.wrong);
        if let Some(ad) = backend.adapter() {
            st = st.info("kernel", ad.assign_kernel.name());
            if ad.assign_kernel == crate::compute::gpu::AssignVariant::Coop16 {
                // Per run: rows whose f16 ranking was re-run in f32.
                st = st.info("rows_rerun_in_f32", rerun / repeat.max(1));
            }
        }
        st.peak_rss_bytes = p;
        stages.push(st);
    }
    Ok(stages)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr2;

    #[test]
    fn sample_check_counts_wrong_and_tied_labels() {
        let x = arr2(&[[0.0f32, 0.0], [1.0, 1.0], [5.0, 5.0]]);
        let c = arr2(&[[0.0f32, 0.0], [1.0, 1.0], [1.0, 1.0]]);
        // Row 1 is tied between centroids 1 and 2; row 2's best is 1 or 2.
        let ok = check_sample(x.view(), c.view(), &[0, 2, 1]);
        assert_eq!((ok.rows, ok.differ, ok.wrong), (3, 1, 0));
        let bad = check_sample(x.view(), c.view(), &[1, 1, 0]);
        assert_eq!((bad.differ, bad.wrong), (2, 2));
    }
}
