//! Lloyd iterations over all rows in which a row is compared only with the
//! centres near the one it has: for every centre the rows of a group use,
//! that centre and its `neighbours` nearest centres. A group's rows are one
//! backend call (per chunk) against the union of those lists, so structured
//! data, where a group's rows share neighbours, costs few candidates, and
//! data without structure costs more but keeps the quality. A row's current
//! centre is always among its candidates, so no iteration raises the
//! inertia.

use ndarray::{Array2, ArrayView2};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::lloyd::{far_rows, gather, update};
use crate::compute::Backend;
use crate::{Metric, Result};

/// The coarse level: every row's group and every group's rows.
pub(super) struct Groups {
    /// Group of every row.
    pub of_row: Vec<u32>,
    /// Rows of each group, in the seeded permutation's order.
    pub rows: Vec<Vec<u32>>,
}

/// One iteration's outcome.
pub(super) struct Pass {
    /// Σ over all rows of the squared distance to the best candidate, before the update.
    pub inertia: f64,
    pub reseeded: usize,
}

/// One group's share of an iteration, merged in group order afterwards.
struct Part {
    cand: Vec<u32>,
    /// Per candidate: sum of its rows (f32 per chunk, f64 across chunks) and count.
    sums: Vec<f64>,
    counts: Vec<u64>,
    /// Per row of the group: its centre (global id) and squared distance.
    labels: Vec<u32>,
    dist: Vec<f32>,
    evals: u64,
}

/// State kept across iterations.
pub(super) struct Refiner<'a> {
    pub groups: &'a Groups,
    /// Every row's current centre.
    pub labels: Vec<u32>,
    /// Nearest centres listed per centre.
    pub neighbours: usize,
    /// Rows per backend call.
    pub chunk: usize,
    /// Groups handled at once (each group's calls run in parallel with the others').
    pub parallel: usize,
    /// Each centre's nearest centres (itself included), made on the first iteration.
    knn: Option<Array2<i64>>,
    /// Centres re-seeded into each group since the lists were made.
    extra: Vec<Vec<u32>>,
}

impl<'a> Refiner<'a> {
    pub fn new(
        groups: &'a Groups,
        labels: Vec<u32>,
        neighbours: usize,
        chunk: usize,
        parallel: usize,
    ) -> Self {
        Refiner {
            extra: vec![Vec::new(); groups.rows.len()],
            groups,
            labels,
            neighbours,
            chunk: chunk.max(1),
            parallel: parallel.max(1),
            knn: None,
        }
    }

    /// Candidates of group `g`'s rows, ascending: the centres they use now,
    /// those centres' neighbours, and centres re-seeded into the group.
    fn candidates(&self, g: usize, k: usize) -> Vec<u32> {
        let knn = self.knn.as_ref().expect("neighbour lists made");
        let mut used = vec![false; k];
        let mut take = vec![false; k];
        for &r in &self.groups.rows[g] {
            let l = self.labels[r as usize] as usize;
            if std::mem::replace(&mut used[l], true) {
                continue;
            }
            take[l] = true;
            for &j in knn.row(l) {
                if j >= 0 {
                    take[j as usize] = true;
                }
            }
        }
        for &j in &self.extra[g] {
            take[j as usize] = true;
        }
        (0..k as u32).filter(|&j| take[j as usize]).collect()
    }

    fn part(
        &self,
        backend: &dyn Backend,
        x: ArrayView2<f32>,
        centroids: ArrayView2<f32>,
        g: usize,
    ) -> Result<Part> {
        let (k, d) = centroids.dim();
        let rows = &self.groups.rows[g];
        let cand = self.candidates(g, k);
        let mut p = Part {
            sums: vec![0f64; cand.len() * d],
            counts: vec![0u64; cand.len()],
            labels: Vec::with_capacity(rows.len()),
            dist: Vec::with_capacity(rows.len()),
            evals: (rows.len() * cand.len()) as u64,
            cand,
        };
        if rows.is_empty() {
            return Ok(p);
        }
        let mut cb = Array2::<f32>::zeros((0, d));
        gather(centroids, &p.cand, &mut cb);
        let mut xb = Array2::<f32>::zeros((0, d));
        for chunk in rows.chunks(self.chunk) {
            gather(x, chunk, &mut xb);
            let a = backend.assign(xb.view(), cb.view(), Metric::L2)?;
            let (bs, bc) = backend.centroid_sums(xb.view(), &a.labels, p.cand.len())?;
            for (acc, &v) in p.sums.iter_mut().zip(bs.iter()) {
                *acc += v as f64;
            }
            for (acc, &c) in p.counts.iter_mut().zip(&bc) {
                *acc += c;
            }
            p.labels
                .extend(a.labels.iter().map(|&l| p.cand[l as usize]));
            p.dist.extend(a.distances.iter().map(|v| v.max(0.0)));
        }
        Ok(p)
    }

    /// One iteration: assign every row among its candidates, move every
    /// centre to the mean of its rows, re-seed the empty ones at rows drawn
    /// ∝ distance² (they join that row's group's candidates).
    pub fn pass(
        &mut self,
        backend: &dyn Backend,
        x: ArrayView2<f32>,
        centroids: &mut Array2<f32>,
        rng: &mut ChaCha8Rng,
        evals: &mut u64,
    ) -> Result<Pass> {
        let (k, d) = centroids.dim();
        let ng = self.groups.rows.len();
        if self.knn.is_none() {
            let m = (self.neighbours + 1).min(k);
            self.knn = Some(backend.knn_self(centroids.view(), m, Metric::L2)?.ids);
            *evals += (k * k) as u64;
        }
        let mut sums = vec![0f64; k * d];
        let mut counts = vec![0u64; k];
        let mut dist = vec![0f32; x.nrows()];
        let mut new_labels = self.labels.clone();
        for lo in (0..ng).step_by(self.parallel) {
            let hi = (lo + self.parallel).min(ng);
            let c = centroids.view();
            let parts: Vec<Part> = (lo..hi)
                .into_par_iter()
                .map(|g| self.part(backend, x, c, g))
                .collect::<Result<_>>()?;
            for (g, p) in (lo..hi).zip(parts) {
                for (l, &j) in p.cand.iter().enumerate() {
                    let j = j as usize;
                    counts[j] += p.counts[l];
                    for (acc, &v) in sums[j * d..(j + 1) * d]
                        .iter_mut()
                        .zip(&p.sums[l * d..(l + 1) * d])
                    {
                        *acc += v;
                    }
                }
                for ((&r, &l), &v) in self.groups.rows[g].iter().zip(&p.labels).zip(&p.dist) {
                    new_labels[r as usize] = l;
                    dist[r as usize] = v;
                }
                *evals += p.evals;
            }
        }
        self.labels = new_labels;
        let inertia = dist.iter().map(|&v| v as f64).sum();
        let dead = update(centroids, &sums, &counts);
        let mut reseeded = 0;
        if !dead.is_empty() {
            let far = far_rows(rng, &dist, dead.len());
            for (&c, &r) in dead.iter().zip(&far) {
                centroids.row_mut(c).assign(&x.row(r));
                self.extra[self.groups.of_row[r] as usize].push(c as u32);
                reseeded += 1;
            }
        }
        Ok(Pass { inertia, reseeded })
    }
}
