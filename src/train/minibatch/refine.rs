//! Lloyd iterations over all rows in which a row is compared only with the
//! centres of the few groups nearest its own: the rows of group g against
//! the centres owned by g's `probe` nearest coarse centres, one backend call
//! per chunk of g's rows. A row's current centre is always among its
//! candidates, so no iteration raises the inertia.

use ndarray::{Array2, ArrayView2};
use rand_chacha::ChaCha8Rng;

use super::lloyd::{far_rows, gather, update};
use crate::compute::Backend;
use crate::{Metric, Result};

/// The coarse level: every row's group and every group's rows.
pub(super) struct Groups {
    pub coarse: Array2<f32>,
    /// Group of every row.
    pub of_row: Vec<u32>,
    /// Rows of each group, in the seeded permutation's order.
    pub rows: Vec<Vec<u32>>,
}

/// For every group, itself and its `probe − 1` nearest other groups (by the
/// distance between coarse centres).
pub(super) fn neighbour_groups(
    backend: &dyn Backend,
    coarse: ArrayView2<f32>,
    probe: usize,
) -> Result<Vec<Vec<u32>>> {
    let g = coarse.nrows();
    let probe = probe.clamp(1, g);
    if probe == g {
        return Ok((0..g).map(|_| (0..g as u32).collect()).collect());
    }
    let nb = backend.knn_self(coarse, probe, Metric::L2)?;
    Ok((0..g)
        .map(|i| {
            // Itself first (a duplicate coarse centre may tie with it).
            let mut v = vec![i as u32];
            v.extend(
                nb.ids
                    .row(i)
                    .iter()
                    .filter(|&&j| j >= 0 && j as usize != i)
                    .map(|&j| j as u32),
            );
            v.truncate(probe);
            v
        })
        .collect())
}

/// One restricted Lloyd iteration's outcome.
pub(super) struct Pass {
    /// Σ over all rows of the squared distance to the best candidate, before the update.
    pub inertia: f64,
    pub reseeded: usize,
}

/// State kept across iterations.
pub(super) struct Refiner<'a> {
    pub groups: &'a Groups,
    pub near: Vec<Vec<u32>>,
    /// Group that owns each centre (its candidates' lists are built from it).
    pub owner: Vec<u32>,
    pub chunk: usize,
}

impl Refiner<'_> {
    /// One iteration: assign every row among its candidates, move every
    /// centre to the mean of its rows, re-seed the empty ones at far rows
    /// (they then belong to that row's group).
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
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); ng];
        for (j, &g) in self.owner.iter().enumerate() {
            members[g as usize].push(j as u32);
        }
        let mut sums = vec![0f64; k * d];
        let mut counts = vec![0u64; k];
        let mut dist = vec![0f32; x.nrows()];
        let mut xb = Array2::<f32>::zeros((0, d));
        let mut cb = Array2::<f32>::zeros((0, d));
        let all: Vec<u32> = (0..k as u32).collect();
        for g in 0..ng {
            let rows = &self.groups.rows[g];
            if rows.is_empty() {
                continue;
            }
            let mut cand: Vec<u32> = self.near[g]
                .iter()
                .flat_map(|&h| members[h as usize].iter().copied())
                .collect();
            if cand.is_empty() {
                // Every nearby centre was re-seeded elsewhere: search them all.
                cand.clone_from(&all);
            }
            gather(centroids.view(), &cand, &mut cb);
            for chunk in rows.chunks(self.chunk.max(1)) {
                gather(x, chunk, &mut xb);
                let a = backend.assign(xb.view(), cb.view(), Metric::L2)?;
                let (bs, bc) = backend.centroid_sums(xb.view(), &a.labels, cand.len())?;
                for (l, &c) in bc.iter().enumerate() {
                    if c == 0 {
                        continue;
                    }
                    let j = cand[l] as usize;
                    counts[j] += c;
                    for (acc, &v) in sums[j * d..(j + 1) * d].iter_mut().zip(bs.row(l)) {
                        *acc += v as f64;
                    }
                }
                for (&r, &v) in chunk.iter().zip(&a.distances) {
                    dist[r as usize] = v.max(0.0);
                }
                *evals += (chunk.len() * cand.len()) as u64;
            }
        }
        let inertia = dist.iter().map(|&v| v as f64).sum();
        let dead = update(centroids, &sums, &counts);
        let mut reseeded = 0;
        if !dead.is_empty() {
            let far = far_rows(rng, &dist, dead.len());
            for (&c, &r) in dead.iter().zip(&far) {
                centroids.row_mut(c).assign(&x.row(r));
                self.owner[c] = self.groups.of_row[r];
                reseeded += 1;
            }
        }
        Ok(Pass { inertia, reseeded })
    }
}
