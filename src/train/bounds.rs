//! Exact L2 assignment that skips rows whose nearest centroid provably did
//! not change (Hamerly-style bounds, with the few far-moving centroids
//! checked exactly so one big jump does not spoil every bound).
//!
//! Per row we keep its label, and a lower bound `lb` on its distance to every
//! other centroid. After the centroids move by `drift[j]`:
//! * the exact distance `u` to the row's own centroid is recomputed (cheap);
//! * for "slow" centroids (drift ≤ δ, the 90th percentile) `lb − δ` still
//!   bounds the distance; the "fast" ones are measured exactly, and only for
//!   rows that pass the first test;
//! * if `u` is below both, with a safety margin far above float rounding,
//!   the label is kept; otherwise the row is assigned from scratch.
//!
//! Results equal a full assignment, up to near-ties within the margin, which
//! are always recomputed.

use ndarray::{ArrayView2, Axis};
use rayon::prelude::*;

use crate::compute::Backend;
use crate::{Error, Result};

/// Rows gathered per backend call, so that no copy of the whole matrix exists.
const CHUNK: usize = 16_384;
/// Relative margin between a kept distance and the bound it must stay under.
const MARGIN: f32 = 1e-3;
/// Share of centroids treated as slow-moving.
const SLOW_QUANTILE: f64 = 0.9;

pub struct Bounds {
    pub labels: Vec<u32>,
    lb: Vec<f32>,
}

/// Outcome of one assignment pass.
pub struct Pass {
    /// Squared distance of each row to its centroid.
    pub distances: Vec<f32>,
    /// Rows assigned from scratch (the rest kept their label).
    pub recomputed: usize,
}

fn top2(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    c: ArrayView2<f32>,
) -> Result<(Vec<u32>, Vec<f32>, Vec<f32>)> {
    match backend.assign_top2(x, c) {
        Some(r) => r.map(|(a, s)| (a.labels, a.distances, s)),
        None => Err(Error::Unsupported(
            "second-best assignment on this backend".into(),
        )),
    }
}

/// Backend calls on gathered chunks of `rows`.
fn top2_rows(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    rows: &[usize],
    c: ArrayView2<f32>,
    mut each: impl FnMut(usize, u32, f32, f32),
) -> Result<()> {
    for chunk in rows.chunks(CHUNK) {
        let sub = x.select(Axis(0), chunk);
        let (l, d1, d2) = top2(backend, sub.view(), c)?;
        for (r, &i) in chunk.iter().enumerate() {
            each(i, l[r], d1[r], d2[r]);
        }
    }
    Ok(())
}

impl Bounds {
    /// A full assignment that also records the bounds. `None` if the backend
    /// has no second-best assignment.
    pub fn full(
        backend: &dyn Backend,
        x: ArrayView2<f32>,
        c: ArrayView2<f32>,
    ) -> Option<Result<(Bounds, Pass)>> {
        let n = x.nrows();
        // Probe support on the first chunk; that work is reused below.
        let first = n.min(CHUNK);
        let probe = backend.assign_top2(x.slice(ndarray::s![..first, ..]), c)?;
        let mut b = Bounds {
            labels: vec![0; n],
            lb: vec![0.0; n],
        };
        let mut dist = vec![0f32; n];
        let mut record = |i: usize, l: u32, d1: f32, d2: f32| {
            b.labels[i] = l;
            dist[i] = d1.max(0.0);
            b.lb[i] = d2.max(0.0).sqrt();
        };
        let r = probe.and_then(|(a, second)| {
            for i in 0..first {
                record(i, a.labels[i], a.distances[i], second[i]);
            }
            let rest: Vec<usize> = (first..n).collect();
            top2_rows(backend, x, &rest, c, &mut record)
        });
        Some(r.map(|()| {
            (
                b,
                Pass {
                    distances: dist,
                    recomputed: n,
                },
            )
        }))
    }

    /// Re-assign after the centroids moved by `drift` (Euclidean, per centroid).
    pub fn step(
        &mut self,
        backend: &dyn Backend,
        x: ArrayView2<f32>,
        c: ArrayView2<f32>,
        drift: &[f32],
    ) -> Result<Pass> {
        let (n, k) = (x.nrows(), c.nrows());
        let mut sorted = drift.to_vec();
        sorted.sort_by(f32::total_cmp);
        let delta = sorted[((k - 1) as f64 * SLOW_QUANTILE) as usize];
        let fast: Vec<usize> = (0..k).filter(|&j| drift[j] > delta).collect();
        let cf = c.select(Axis(0), &fast);

        // Exact distance to the current centroid, and the slow-centroid test.
        let labels = &self.labels;
        let mut dist: Vec<f32> = (0..n)
            .into_par_iter()
            .map(|i| {
                let cr = c.row(labels[i] as usize);
                x.row(i)
                    .iter()
                    .zip(cr.iter())
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum()
            })
            .collect();
        for lb in self.lb.iter_mut() {
            *lb -= delta;
        }
        let keeps = |u2: f32, bound: f32| u2.sqrt() * (1.0 + MARGIN) <= bound;
        let (cand, mut redo): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| keeps(dist[i], self.lb[i]));

        // Candidates: measure the fast-moving centroids exactly.
        if !fast.is_empty() {
            let mut fails = Vec::new();
            top2_rows(backend, x, &cand, cf.view(), |i, l, d1, d2| {
                let other = if fast[l as usize] as u32 == self.labels[i] {
                    d2
                } else {
                    d1
                };
                let d_fast = other.max(0.0).sqrt();
                if keeps(dist[i], d_fast) {
                    self.lb[i] = self.lb[i].min(d_fast);
                } else {
                    fails.push(i);
                }
            })?;
            redo.extend(fails);
        }

        let recomputed = redo.len();
        top2_rows(backend, x, &redo, c, |i, l, d1, d2| {
            self.labels[i] = l;
            dist[i] = d1.max(0.0);
            self.lb[i] = d2.max(0.0).sqrt();
        })?;
        Ok(Pass {
            distances: dist,
            recomputed,
        })
    }
}

/// Euclidean distance each centroid moved.
pub fn drift(old: ArrayView2<f32>, new: ArrayView2<f32>) -> Vec<f32> {
    old.outer_iter()
        .zip(new.outer_iter())
        .map(|(a, b)| {
            let s: f64 = a
                .iter()
                .zip(b.iter())
                .map(|(p, q)| ((p - q) as f64).powi(2))
                .sum();
            // Round up so the bound never shrinks by float rounding.
            (s.sqrt() * (1.0 + 1e-6)) as f32
        })
        .collect()
}
