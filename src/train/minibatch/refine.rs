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

/// State kept across iterations. The rows are batched by group: a row
/// belongs to the group that owns its current centre (rows move with their
/// centre after every iteration, so a group's candidate list stays local).
pub(super) struct Refiner {
    /// Rows of each group, ascending.
    rows: Vec<Vec<u32>>,
    /// Every row's current centre.
    labels: Vec<u32>,
    /// Group owning each centre: where it was fitted, or where it was re-seeded.
    owner: Vec<u32>,
    /// Nearest centres listed per centre.
    pub neighbours: usize,
    /// Rows per backend call.
    pub chunk: usize,
    /// Groups handled at once (each group's calls run in parallel with the others').
    pub parallel: usize,
    /// Share of rows, the farthest from their centre, searched among all
    /// centres before the first iteration.
    pub rescue: f64,
    /// Each centre's nearest centres (itself included), made on the first iteration.
    knn: Option<Array2<i64>>,
    /// Centres re-seeded into each group since the lists were made.
    extra: Vec<Vec<u32>>,
}

impl Refiner {
    /// `labels`: every row's centre; `owner`: every centre's group (< `groups`).
    pub fn new(
        groups: usize,
        labels: Vec<u32>,
        owner: Vec<u32>,
        neighbours: usize,
        chunk: usize,
        parallel: usize,
    ) -> Self {
        let mut r = Refiner {
            rows: vec![Vec::new(); groups],
            extra: vec![Vec::new(); groups],
            labels,
            owner,
            neighbours,
            chunk: chunk.max(1),
            parallel: parallel.max(1),
            knn: None,
            rescue: 0.0,
        };
        r.rehome();
        r
    }

    /// Put every row in the group that owns its centre.
    fn rehome(&mut self) {
        self.rows.iter_mut().for_each(Vec::clear);
        for (r, &l) in self.labels.iter().enumerate() {
            self.rows[self.owner[l as usize] as usize].push(r as u32);
        }
    }

    /// Move the `rescue` share of rows farthest from their centre to their
    /// nearest centre among all: rows whose cluster the coarse partition cut
    /// off from its group sit on a far centre whose neighbours do not
    /// include the right one.
    fn rescue_far_rows(
        &mut self,
        backend: &dyn Backend,
        x: ArrayView2<f32>,
        c: ArrayView2<f32>,
        evals: &mut u64,
    ) -> Result<()> {
        let n = x.nrows();
        let m = ((n as f64 * self.rescue).round() as usize).min(n);
        if m == 0 {
            return Ok(());
        }
        let labels = &self.labels;
        let dist: Vec<f32> = (0..n)
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
        let mut order: Vec<u32> = (0..n as u32).collect();
        let far = |a: &u32, b: &u32| {
            dist[*b as usize]
                .total_cmp(&dist[*a as usize])
                .then(a.cmp(b))
        };
        if m < n {
            order.select_nth_unstable_by(m, far);
        }
        let mut pick = order[..m].to_vec();
        pick.sort_unstable();
        let mut xb = Array2::<f32>::zeros((0, x.ncols()));
        for chunk in pick.chunks(self.chunk) {
            gather(x, chunk, &mut xb);
            let a = crate::compute::assign_l2(backend, xb.view(), c)?;
            for (&r, &l) in chunk.iter().zip(&a.labels) {
                self.labels[r as usize] = l;
            }
        }
        *evals += (m * c.nrows()) as u64;
        self.rehome();
        Ok(())
    }

    /// Candidates of group `g`'s rows, ascending: the centres they use now,
    /// those centres' neighbours, and centres re-seeded into the group.
    fn candidates(&self, g: usize, k: usize) -> Vec<u32> {
        let knn = self.knn.as_ref().expect("neighbour lists made");
        let mut used = vec![false; k];
        let mut take = vec![false; k];
        for &r in &self.rows[g] {
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
        let rows = &self.rows[g];
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
        let ng = self.rows.len();
        if self.knn.is_none() && self.rescue > 0.0 {
            self.rescue_far_rows(backend, x, centroids.view(), evals)?;
        }
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
                for ((&r, &l), &v) in self.rows[g].iter().zip(&p.labels).zip(&p.dist) {
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
                // It joins the group of the row it now sits on.
                let g = self.owner[self.labels[r] as usize];
                self.owner[c] = g;
                self.extra[g as usize].push(c as u32);
                reseeded += 1;
            }
        }
        self.rehome();
        Ok(Pass { inertia, reseeded })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::cpu::{CpuBackend, reference};
    use rand::{RngExt, SeedableRng};

    #[test]
    fn rescue_moves_the_farthest_rows_to_their_nearest_centre_and_rehomes_them() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (n, k, d) = (400, 20, 6);
        let x = Array2::from_shape_fn((n, d), |_| rng.random::<f32>());
        let c = Array2::from_shape_fn((k, d), |_| rng.random::<f32>());
        let exact = reference::assign(x.view(), c.view(), Metric::L2);
        // Everyone on its nearest centre except every 10th row, put on the
        // centre after it; centres 0..10 in group 0, the rest in group 1.
        let labels: Vec<u32> = (0..n)
            .map(|i| {
                let l = exact.labels[i];
                if i % 10 == 0 { (l + 1) % k as u32 } else { l }
            })
            .collect();
        let owner: Vec<u32> = (0..k as u32).map(|j| (j >= 10) as u32).collect();
        let mut r = Refiner::new(2, labels.clone(), owner, 4, 64, 2);
        r.rescue = 0.25;
        let mut evals = 0;
        r.rescue_far_rows(&CpuBackend::new(), x.view(), c.view(), &mut evals)
            .unwrap();
        assert_eq!(evals, 100 * k as u64);
        // The 100 rows farthest from their given centre, by an independent measure.
        let far = |i: usize| -> f32 {
            let cr = c.row(labels[i] as usize);
            x.row(i)
                .iter()
                .zip(cr)
                .map(|(a, b)| (a - b) * (a - b))
                .sum()
        };
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| far(b).total_cmp(&far(a)).then(a.cmp(&b)));
        for (rank, &i) in order.iter().enumerate() {
            let want = if rank < 100 {
                exact.labels[i]
            } else {
                labels[i]
            };
            assert_eq!(r.labels[i], want, "row {i}, rank {rank}");
        }
        // Every row is batched with the group owning its centre.
        for (g, rows) in r.rows.iter().enumerate() {
            for &i in rows {
                assert_eq!(r.owner[r.labels[i as usize] as usize], g as u32);
            }
        }
        assert_eq!(r.rows.iter().map(Vec::len).sum::<usize>(), n);
    }
}
