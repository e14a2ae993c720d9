//! Compressing a large feature set to K centres (RVC replaces every set
//! above 200 000 rows by the 10 000 centres of scikit-learn's
//! `MiniBatchKMeans`).
//!
//! scikit-learn's `MiniBatchKMeans` as RVC calls it (random init, batches of
//! 256·n_cpu, early stop after 10 batches without improvement of a smoothed
//! batch inertia) stops on noise: on the same data it ends after 12 steps
//! with centres barely moved from random rows, or runs for a minute. A flat
//! k-means iteration costs N·K distances (one "pass"). This fit is a
//! two-level k-means with a fixed, seeded schedule whose levels cost about
//! N·√K distances each, 0.16–0.30 passes in all at RVC's sizes:
//!
//! 1. **Coarse level.** G = 2·√K groups (200 for K = 10 000): Lloyd
//!    (`coarse_iters`) on a seeded sample of `coarse_sample`·G rows from G
//!    random rows, then every row goes to its nearest group (N·G distances).
//! 2. **Fine level.** The K centres are split among the groups in
//!    proportion to rows^(1−β)·inertia^β of each group (β = 1: its inertia
//!    to its coarse centre; Sainte-Laguë rounding, at least one centre per
//!    group, at most its rows). Each group runs `fine_iters` Lloyd iterations
//!    on its own rows from random rows of its own (≈ N·K/G distances per
//!    iteration, groups in parallel).
//! 3. **Refinement.** First the `rescue` share of rows farthest from their
//!    centre (2 %) is searched among all centres: a cluster the coarse
//!    partition cut leaves a few rows on a far centre of the wrong group.
//!    Then `refine_iters` Lloyd iterations over all rows, in which the rows
//!    of a group (the group owning a row's centre: rows move with their
//!    centre) are compared with the centres they use and each such centre's
//!    `neighbours` nearest centres (one K×K neighbour search, then ≈ N·3K/G
//!    distances per iteration on structured data; more on data without
//!    structure, where it matters). A row's centre is always among its
//!    candidates, so no iteration raises the inertia.
//!
//! On the benchmark's RVC-like data (heavy-tailed, Zipf-weighted clusters)
//! this lands at or below faiss's 10-iteration k-means on all rows, for a
//! fiftieth of its work; k-means++ seeding was worse than random rows there
//! (it spends centres on outliers), hence random rows within each group.
//! Centres left empty are re-seeded at rows drawn with probability
//! proportional to their squared distance, as k-means++ places a centre.
//! There is no early stop, so the result depends only on the data, the seed,
//! the parameters and the backend (not on the thread count). Every distance
//! goes through `Backend::assign` (the neighbour lists through
//! `Backend::knn_self`) and every mean through `Backend::centroid_sums`;
//! rows are gathered group by group into bounded buffers, never into a
//! second copy of the matrix.

mod lloyd;
mod measure;
mod refine;
mod rule;
mod types;

pub use measure::{duplicate_centres, find_non_finite, inertia};
pub use rule::Compress;
pub use types::{
    CompressParams, FitResult, FitSummary, MiniBatchParams, RVC_CENTRES, Stages, StepStats,
    defaults,
};

use std::time::{Duration, Instant};

use ndarray::{Array2, ArrayView2, s};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::compute::Backend;
use crate::{Error, Result};
use lloyd::{LloydRun, Subset, allocate, assign_all, gather, lloyd};
use refine::Refiner;

/// About 3 groups' worth of centres per row in the refinement: what the
/// union of neighbour lists came to on structured data (more where the data
/// has no structure).
const REFINE_GROUPS_GUESS: f64 = 3.0;

/// Distances the fit will compute with `p` on `n` rows, before the groups
/// are known (each group's share of rows and centres taken as equal).
pub fn planned_evaluations(n: usize, p: &CompressParams) -> u64 {
    let k = p.k.min(n);
    let g = p.groups_for(k);
    let sample = n.min(g * p.coarse_sample.max(1)).max(g);
    let per_group = k as f64 / g as f64;
    let coarse = if g > 1 {
        (sample * g * p.coarse_iters + n * g) as f64
    } else {
        0.0
    };
    let fine = n as f64 * per_group * p.fine_iters.max(1) as f64;
    (coarse + fine + refine_guess(n, k, per_group, p)) as u64
}

fn refine_guess(n: usize, k: usize, per_group: f64, p: &CompressParams) -> f64 {
    if p.refine_iters == 0 || per_group >= k as f64 {
        return 0.0;
    }
    let cand = (per_group * REFINE_GROUPS_GUESS).min(k as f64);
    let rescue = (n as f64 * p.rescue).round() * k as f64;
    (k * k) as f64 + rescue + n as f64 * cand * p.refine_iters as f64
}

fn validate(x: ArrayView2<f32>, p: &CompressParams) -> Result<()> {
    let (n, d) = x.dim();
    let k = p.k;
    if k == 0 {
        return Err(Error::Invalid(
            "the number of centres must be at least 1".into(),
        ));
    }
    if n < k {
        return Err(Error::Invalid(format!(
            "cannot compress {n} rows to {k} centres: K must not exceed the number of rows"
        )));
    }
    if d == 0 {
        return Err(Error::Invalid("the rows have no columns".into()));
    }
    if n > u32::MAX as usize {
        return Err(Error::Unsupported(format!(
            "{n} rows; at most {} are supported",
            u32::MAX
        )));
    }
    if p.batch_size == 0 {
        return Err(Error::Invalid("the batch size must be at least 1".into()));
    }
    if !(p.rescue.is_finite() && (0.0..=1.0).contains(&p.rescue)) {
        return Err(Error::Invalid(format!(
            "the rescued share of rows must be between 0 and 1, got {}",
            p.rescue
        )));
    }
    if !(p.alloc_power.is_finite() && (0.0..=1.0).contains(&p.alloc_power)) {
        return Err(Error::Invalid(format!(
            "the allocation power must be between 0 and 1, got {}",
            p.alloc_power
        )));
    }
    if let Some((i, j)) = find_non_finite(x) {
        return Err(Error::Invalid(format!(
            "row {i}, column {j} is {} (rows must be finite)",
            x[[i, j]]
        )));
    }
    Ok(())
}

/// Fit `params.k` centres to the rows of `x` (L2).
pub fn fit(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    params: &CompressParams,
    mut on_step: impl FnMut(&StepStats),
) -> Result<FitResult> {
    let t0 = Instant::now();
    validate(x, params)?;
    let (n, d) = x.dim();
    let k = params.k;
    let b = params.batch_size;
    let ng = params.groups_for(k);

    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let mut perm: Vec<u32> = (0..n as u32).collect();
    perm.shuffle(&mut rng);

    let mut summary = FitSummary {
        n,
        d,
        params: params.clone(),
        groups: ng,
        group_rows_max: 0,
        group_rows_min: 0,
        steps: 0,
        distance_evaluations: 0,
        rows_assigned: 0,
        passes: 0.0,
        reseeded: 0,
        stopped_by_time: false,
        fit_seconds: 0.0,
        coarse_inertia_per_row: Vec::new(),
        fine_inertia_per_row: Vec::new(),
        refine_inertia_per_row: Vec::new(),
        stage_seconds: Stages::default(),
        stage_evaluations: Stages::default(),
    };
    let mut history = Vec::new();
    let mut evals = 0u64;
    let mut planned = planned_evaluations(n, params);

    // K = N: every row is its own centre, nothing to learn.
    if n == k {
        let mut centroids = Array2::<f32>::zeros((k, d));
        gather(x, &perm, &mut centroids);
        summary.fit_seconds = t0.elapsed().as_secs_f64();
        return Ok(FitResult {
            centroids,
            summary,
            history,
        });
    }

    let mut emit = |phase: &'static str,
                    rows: usize,
                    inertia: f64,
                    reseeded: usize,
                    evals: u64,
                    planned: u64,
                    summary: &mut FitSummary,
                    history: &mut Vec<StepStats>| {
        summary.steps += 1;
        summary.reseeded += reseeded;
        let s = StepStats {
            phase,
            step: summary.steps,
            rows,
            distance_evaluations: evals,
            planned_evaluations: planned.max(evals),
            inertia_per_row: inertia / rows.max(1) as f64,
            reseeded,
            seconds: t0.elapsed().as_secs_f64(),
        };
        on_step(&s);
        history.push(s);
    };

    // 1. Coarse level: train on a sample, then put every row in its group.
    let (t, e0) = (Instant::now(), evals);
    // Rows of each group in the permutation's order, and each group's inertia.
    let (groups, sse) = if ng == 1 {
        (vec![perm.clone()], vec![1.0])
    } else {
        let sample = &perm[..n.min(ng.saturating_mul(params.coarse_sample)).max(ng)];
        let sub = Subset::new(x, sample, b);
        let mut coarse = Array2::<f32>::zeros((ng, d));
        gather(x, &perm[..ng], &mut coarse);
        for _ in 0..params.coarse_iters {
            let LloydRun {
                inertia, reseeded, ..
            } = lloyd(backend, &sub, &mut coarse, 1, &mut rng, &mut evals)?;
            summary
                .coarse_inertia_per_row
                .push(inertia[0] / sub.len() as f64);
            emit(
                "coarse",
                sub.len(),
                inertia[0],
                reseeded,
                evals,
                planned,
                &mut summary,
                &mut history,
            );
        }
        summary.stage_seconds.coarse = t.elapsed().as_secs_f64();
        summary.stage_evaluations.coarse = evals - e0;
        let (t, e0) = (Instant::now(), evals);
        let (of_row, dist) = assign_all(backend, x, coarse.view(), b.max(65_536), &mut evals)?;
        let mut rows = vec![Vec::new(); ng];
        for &r in &perm {
            rows[of_row[r as usize] as usize].push(r);
        }
        let total: f64 = dist.iter().map(|&v| v as f64).sum();
        emit(
            "groups",
            n,
            total,
            0,
            evals,
            planned,
            &mut summary,
            &mut history,
        );
        summary.stage_seconds.groups = t.elapsed().as_secs_f64();
        summary.stage_evaluations.groups = evals - e0;
        // Keep the coarse inertia per group for the split of the centres.
        let mut sse = vec![0f64; ng];
        for (&g, &v) in of_row.iter().zip(&dist) {
            sse[g as usize] += v as f64;
        }
        (rows, sse)
    };
    let sizes: Vec<usize> = groups.iter().map(Vec::len).collect();
    summary.group_rows_max = sizes.iter().copied().max().unwrap_or(0);
    summary.group_rows_min = sizes.iter().copied().min().unwrap_or(0);
    let beta = params.alloc_power;
    let weights: Vec<f64> = (0..ng)
        .map(|g| (sizes[g] as f64).powf(1.0 - beta) * sse[g].max(0.0).powf(beta))
        .collect();
    let alloc = allocate(k, &sizes, &weights);
    let refine_iters = if ng > 1 { params.refine_iters } else { 0 };
    let fine_work: u64 = (0..ng)
        .map(|g| (sizes[g] * alloc[g] * params.fine_iters.max(1)) as u64)
        .sum();
    planned = evals + fine_work + refine_guess(n, k, k as f64 / ng as f64, params) as u64;

    // 2. Fine level: each group's share of the centres, by Lloyd on its rows,
    // several groups at once (each with its own random stream).
    let (t, e0) = (Instant::now(), evals);
    let mut centroids = Array2::<f32>::zeros((k, d));
    let mut labels = vec![0u32; n];
    let mut fine = vec![0f64; params.fine_iters];
    let mut offsets = Vec::with_capacity(ng + 1);
    offsets.push(0);
    for &a in &alloc {
        offsets.push(offsets.last().unwrap() + a);
    }
    // Groups in flight: a few per thread on the CPU backend (one group's
    // calls are too small to keep every thread busy); one at a time on a
    // device, whose calls are queued anyway.
    let parallel = if backend.info().kind == "cpu" {
        2 * rayon::current_num_threads()
    } else {
        1
    };
    for lo in (0..ng).step_by(parallel) {
        let hi = (lo + parallel).min(ng);
        let runs: Vec<Option<(Array2<f32>, LloydRun, u64)>> = (lo..hi)
            .into_par_iter()
            .map(|g| {
                let (rows, kg) = (&groups[g], alloc[g]);
                if kg == 0 {
                    return Ok(None);
                }
                let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
                rng.set_stream(1 + g as u64);
                let sub = Subset::new(x, rows, b);
                let mut c = Array2::<f32>::zeros((kg, d));
                gather(x, &rows[..kg], &mut c);
                let mut ev = 0;
                let run = lloyd(backend, &sub, &mut c, params.fine_iters, &mut rng, &mut ev)?;
                Ok(Some((c, run, ev)))
            })
            .collect::<Result<_>>()?;
        for (g, run) in (lo..hi).zip(runs) {
            let Some((c, run, ev)) = run else { continue };
            let (rows, off) = (&groups[g], offsets[g]);
            evals += ev;
            for (acc, v) in fine.iter_mut().zip(&run.inertia) {
                *acc += v;
            }
            centroids.slice_mut(s![off..off + alloc[g], ..]).assign(&c);
            for (&r, &l) in rows.iter().zip(&run.labels) {
                labels[r as usize] = off as u32 + l;
            }
            emit(
                "fine",
                rows.len(),
                run.inertia.last().copied().unwrap_or(f64::NAN),
                run.reseeded,
                evals,
                planned,
                &mut summary,
                &mut history,
            );
        }
    }
    summary.fine_inertia_per_row = fine.iter().map(|v| v / n as f64).collect();
    summary.stage_seconds.fine = t.elapsed().as_secs_f64();
    summary.stage_evaluations.fine = evals - e0;

    // 3. Refinement over all rows, each among its nearby groups' centres.
    let (t, e0) = (Instant::now(), evals);
    let deadline = params.max_seconds.map(Duration::from_secs_f64);
    drop(groups);
    let mut owner = vec![0u32; k];
    for g in 0..ng {
        owner[offsets[g]..offsets[g + 1]].fill(g as u32);
    }
    let mut r = Refiner::new(ng, labels, owner, params.neighbours, b, parallel);
    r.rescue = params.rescue;
    for _ in 0..refine_iters {
        if deadline.is_some_and(|t| t0.elapsed() >= t) {
            summary.stopped_by_time = true;
            break;
        }
        let before = evals;
        let p = r.pass(backend, x, &mut centroids, &mut rng, &mut evals)?;
        summary.refine_inertia_per_row.push(p.inertia / n as f64);
        // The rest of the plan: as many more iterations like this one.
        let left = refine_iters - summary.refine_inertia_per_row.len();
        planned = evals + left as u64 * (evals - before);
        emit(
            "refine",
            n,
            p.inertia,
            p.reseeded,
            evals,
            planned,
            &mut summary,
            &mut history,
        );
    }
    summary.stage_seconds.refine = t.elapsed().as_secs_f64();
    summary.stage_evaluations.refine = evals - e0;

    debug_assert!(centroids.iter().all(|v| v.is_finite()));
    summary.distance_evaluations = evals;
    summary.rows_assigned = evals / k as u64;
    summary.passes = evals as f64 / (n as f64 * k as f64);
    summary.fit_seconds = t0.elapsed().as_secs_f64();
    Ok(FitResult {
        centroids,
        summary,
        history,
    })
}

/// `fit` with a progress bar over the distances to compute, showing the
/// stage and its inertia per row.
pub fn fit_with_progress(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    params: &CompressParams,
    progress: &crate::progress::Progress,
) -> Result<FitResult> {
    let bar = progress.bar(planned_evaluations(x.nrows(), params), "compress");
    let r = fit(backend, x, params, |s| {
        bar.set_length(s.planned_evaluations);
        bar.set_position(s.distance_evaluations);
        bar.set_message(format!("{} inertia/row {:.4}", s.phase, s.inertia_per_row));
        progress.verbose(&format!(
            "step {} ({}, {:.2} s): {} rows, inertia/row {:.4}, {} re-seeded, {:.3e} distances",
            s.step,
            s.phase,
            s.seconds,
            s.rows,
            s.inertia_per_row,
            s.reseeded,
            s.distance_evaluations as f64
        ));
    });
    bar.finish_and_clear();
    r
}
