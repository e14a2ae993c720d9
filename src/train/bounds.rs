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
use crate::compute::cpu::pruned::{Centroids, Pruner, Rows, sq_distance};
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

/// Where the (label, best distance, lower bound on the second-best
/// distance) of a set of rows comes from.
pub trait Top2Source {
    /// For the rows `rows` of the matrix being clustered, against all
    /// centroids (`cols = None`) or the centroids `cols` (labels then index
    /// into `cols`), call `each(row, label, best, second)`.
    fn top2(
        &self,
        rows: &[usize],
        cols: Option<&[usize]>,
        each: &mut dyn FnMut(usize, u32, f32, f32),
    ) -> Result<()>;
}

/// A backend's `assign_top2` on gathered chunks of rows.
pub struct BackendTop2<'a> {
    pub backend: &'a dyn Backend,
    pub x: ArrayView2<'a, f32>,
    pub c: ArrayView2<'a, f32>,
}

impl BackendTop2<'_> {
    /// Whether the backend has a second-best assignment at all.
    pub fn supported(&self) -> bool {
        let probe = self.x.slice(ndarray::s![..self.x.nrows().min(1), ..]);
        self.backend.assign_top2(probe, self.c).is_some()
    }
}

impl Top2Source for BackendTop2<'_> {
    fn top2(
        &self,
        rows: &[usize],
        cols: Option<&[usize]>,
        each: &mut dyn FnMut(usize, u32, f32, f32),
    ) -> Result<()> {
        let sel;
        let c = match cols {
            Some(cols) => {
                sel = self.c.select(Axis(0), cols);
                sel.view()
            }
            None => self.c,
        };
        for chunk in rows.chunks(CHUNK) {
            let sub = self.x.select(Axis(0), chunk);
            let (a, second) = match self.backend.assign_top2(sub.view(), c) {
                Some(r) => r?,
                None => {
                    return Err(Error::Unsupported(
                        "second-best assignment on this backend".into(),
                    ));
                }
            };
            for (r, &i) in chunk.iter().enumerate() {
                each(i, a.labels[r], a.distances[r], second[r]);
            }
        }
        Ok(())
    }
}

/// The CPU backend's dimension-pruned assignment (`compute::cpu::pruned`).
pub struct PrunedTop2<'a> {
    pub pruner: &'a Pruner,
    pub x: ArrayView2<'a, f32>,
    pub c: &'a Centroids,
    /// Leading dimensions of the first pass.
    pub m: usize,
}

impl Top2Source for PrunedTop2<'_> {
    fn top2(
        &self,
        rows: &[usize],
        cols: Option<&[usize]>,
        each: &mut dyn FnMut(usize, u32, f32, f32),
    ) -> Result<()> {
        let sel;
        let c = match cols {
            Some(cols) => {
                sel = self.c.select(cols);
                &sel
            }
            None => self.c,
        };
        let t = self.pruner.assign(self.x, Rows::Some(rows), c, self.m);
        for (r, &i) in rows.iter().enumerate() {
            each(i, t.labels[r], t.distances[r], t.second[r]);
        }
        Ok(())
    }
}

impl Bounds {
    /// A full assignment that also records the bounds.
    pub fn full(src: &dyn Top2Source, n: usize) -> Result<(Bounds, Pass)> {
        let mut b = Bounds {
            labels: vec![0; n],
            lb: vec![0.0; n],
        };
        let mut dist = vec![0f32; n];
        let all: Vec<usize> = (0..n).collect();
        src.top2(&all, None, &mut |i, l, d1, d2| {
            b.labels[i] = l;
            dist[i] = d1.max(0.0);
            b.lb[i] = d2.max(0.0).sqrt();
        })?;
        Ok((
            b,
            Pass {
                distances: dist,
                recomputed: n,
            },
        ))
    }

    /// Re-assign after the centroids moved by `drift` (Euclidean, per centroid).
    pub fn step(
        &mut self,
        src: &dyn Top2Source,
        x: ArrayView2<f32>,
        c: ArrayView2<f32>,
        drift: &[f32],
    ) -> Result<Pass> {
        let (n, k) = (x.nrows(), c.nrows());
        let mut sorted = drift.to_vec();
        sorted.sort_by(f32::total_cmp);
        let delta = sorted[((k - 1) as f64 * SLOW_QUANTILE) as usize];
        let fast: Vec<usize> = (0..k).filter(|&j| drift[j] > delta).collect();

        // Exact distance to the current centroid, and the slow-centroid test.
        let labels = &self.labels;
        let mut dist: Vec<f32> = (0..n)
            .into_par_iter()
            .map(|i| {
                let (xr, cr) = (x.row(i), c.row(labels[i] as usize));
                match (xr.as_slice(), cr.as_slice()) {
                    (Some(a), Some(b)) => sq_distance(a, b),
                    _ => xr
                        .iter()
                        .zip(cr.iter())
                        .map(|(a, b)| (a - b) * (a - b))
                        .sum(),
                }
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
            src.top2(&cand, Some(&fast), &mut |i, l, d1, d2| {
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
        src.top2(&redo, None, &mut |i, l, d1, d2| {
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
