//! `train --recall R`: measure recall@8 of a built IVF index on a seeded
//! sample of its own rows and choose the smallest nprobe that reaches R.
//!
//! RVC's inference retrieves the 8 nearest indexed frames of every frame it
//! converts and blends them, so recall@8 (the mean overlap of the IVF top-8
//! with the exact top-8) is the figure that matters.
//!
//! The queries are indexed rows that stand in for unseen speech: each
//! query's own row and the rows within [`WINDOW`] of it in its feature file
//! (neighbouring frames, near-copies of it) are excluded from both the exact
//! and the IVF results, as a frame of new speech has no such copy in the
//! index. Where rows have no place in a file (compressed centres) only the
//! query's own row is excluded.
//!
//! For IVF-Flat the whole curve is exact without a search per nprobe: the
//! IVF top-8 at nprobe p holds exactly those true top-8 neighbours whose list
//! is among the query's first p probes (they beat every other candidate), so
//! one exact k-NN of the sample and the rank of each neighbour's list in the
//! query's probe order give recall@8 for every p at once. Other kinds
//! (fast-scan PQ + RFlat) are searched at each nprobe. The real search is
//! timed at the reported nprobes (ms per 1 000 queries).

use std::time::Instant;

use ndarray::{Array2, ArrayView2};
use rayon::prelude::*;

use super::build::{self, Added, BuildTimes, Trained};
use super::factory::{Codec, Factory, Nlist};
use super::search::{self, k_base};
use crate::compute::Backend;
use crate::compute::cpu::{Isa, gemm, list_search};
use crate::faiss::Index;
use crate::progress::Progress;
use crate::{Error, Metric, Result};

mod sample;
mod sweep;

pub use sample::{Sample, Timeline, keep_first};
pub use sweep::{Candidate, Point, RecallReport, StageSeconds};

/// Neighbours RVC's inference retrieves per frame.
pub const K: usize = 8;
/// Rows of a query's feature file on either side of it that are excluded
/// with it (0.64 s of speech at RVC's 50 frames per second).
pub const WINDOW: usize = 32;
/// Query rows sampled: a tenth of the list count, at least 500 and at
/// most 1 000 (all rows where the index holds fewer). The exact k-NN of the
/// sample costs `nq · n · d`; the pruned k-means does about a sixteenth of
/// its brute-force `niter · n · nlist · d` at RVC's sizes, so a tenth of
/// nlist keeps the measurement near a tenth of `train`. 500 queries × 8
/// neighbours put the standard error of recall@8 near 0.005 at R = 0.95.
pub fn sample_size(n: usize, nlist: usize) -> usize {
    (nlist / 10).clamp(500, 1000).min(n)
}

/// What `--recall` asks for.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecallTarget {
    /// Recall@8 to reach, 0 < R ≤ 1.
    pub recall: f64,
    /// `--factory auto`: also try `IVF<n>,PQ<M>x4fs,RFlat` and keep the
    /// kind that reaches R at the lower search time.
    pub compare_pq: bool,
}

/// `--recall R`: a number above 0 and at most 1.
pub fn parse_recall(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(r) if r > 0.0 && r <= 1.0 => Ok(r),
        _ => Err(format!(
            "expected a recall above 0 and at most 1 (e.g. 0.95), got {s:?}"
        )),
    }
}

/// Whether `--recall` applies to the index kind `factory` (None: RVC's).
pub fn check(target: Option<&RecallTarget>, factory: Option<Factory>) -> Result<()> {
    let Some(t) = target else { return Ok(()) };
    if !(t.recall > 0.0 && t.recall <= 1.0) {
        return Err(Error::Invalid(format!(
            "--recall {}: expected a recall above 0 and at most 1",
            t.recall
        )));
    }
    match factory {
        Some(Factory::Flat) => Err(Error::Invalid(
            "--recall needs an IVF index kind: a Flat index is exact, it has no nprobe".into(),
        )),
        Some(
            f @ Factory::Ivf {
                codec: Codec::Pq4FastScan { .. },
                ..
            }
            | f @ Factory::Ivf { refine: true, .. },
        ) if t.compare_pq => Err(Error::Invalid(format!(
            "--factory auto compares RVC's IVF-Flat with IVF-PQ; it cannot be combined with {f}"
        ))),
        _ => Ok(()),
    }
}

/// The fast-scan PQ kind `--factory auto` tries beside IVF-Flat: the same
/// lists, `M` = the largest divisor of d not above d/2 (2 dimensions per
/// 4-bit sub-quantizer for RVC's 768 and 256), exact re-ranking.
pub fn pq_factory(d: usize, nlist: usize) -> Factory {
    let m = (1..=(d / 2).max(1))
        .rev()
        .find(|m| d.is_multiple_of(*m))
        .unwrap_or(1);
    Factory::Ivf {
        nlist: Nlist::Fixed(nlist),
        codec: Codec::Pq4FastScan { m },
        refine: true,
    }
}

/// IVF-Flat recall@K at every nprobe 1..=nlist from the probe rank of each
/// true neighbour's list: `curve[p - 1]` = recall at nprobe p. `labels[j]`
/// is row j's list.
///
/// With `held_out` (the indexed rows), each query ranks the lists as if its
/// excluded rows had not been in the k-means: the centroid of every list
/// holding some of them is their list's mean without them (k-means'
/// centroids are means of their lists, and a row it trained on pulls its
/// own centroid towards it by 1/size of its list, ~1/39 with RVC's nlist,
/// which a frame of unseen speech does not do). Without, the ranks are
/// those of the index as it is, which `search_excluding` returns.
pub fn flat_curve(
    centroids: ArrayView2<f32>,
    labels: &[u32],
    sample: &Sample,
    held_out: Option<ArrayView2<f32>>,
) -> Vec<f64> {
    let (nlist, d) = centroids.dim();
    let c = centroids.as_standard_layout();
    let c = c.as_slice().expect("standard layout");
    let norms: Vec<f32> = c.chunks(d).map(|r| r.iter().map(|v| v * v).sum()).collect();
    let mut sizes = vec![0usize; nlist];
    labels.iter().for_each(|&l| sizes[l as usize] += 1);
    let q = sample.queries.as_standard_layout();
    let q = q.as_slice().expect("standard layout");
    const BLOCK: usize = 32;
    let nq = sample.len();
    // Histogram of the probe rank of every true neighbour's list.
    let (hist, all) = (0..nq.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let q0 = b * BLOCK;
            let rows = BLOCK.min(nq - q0);
            let mut dots = vec![0f32; rows * nlist];
            gemm::abt(rows, nlist, d, &q[q0 * d..], c, &mut dots);
            let mut hist = vec![0u64; nlist];
            let mut all = 0u64;
            for r in 0..rows {
                // ‖q − c‖² less the query's own norm: same order.
                let mut key: Vec<f32> = (0..nlist)
                    .map(|l| norms[l] - 2.0 * dots[r * nlist + l])
                    .collect();
                if let Some(x) = held_out {
                    let qr = &q[(q0 + r) * d..(q0 + r + 1) * d];
                    leave_out(&mut key, qr, c, &sizes, labels, x, &sample.excluded[q0 + r]);
                }
                for &id in sample.truth.row(q0 + r).iter().filter(|&&id| id >= 0) {
                    let l = labels[id as usize] as usize;
                    let s = key[l];
                    let rank = key
                        .iter()
                        .enumerate()
                        .filter(|&(m, &v)| v < s || (v == s && m < l))
                        .count();
                    hist[rank] += 1;
                    all += 1;
                }
            }
            (hist, all)
        })
        .reduce(
            || (vec![0u64; nlist], 0u64),
            |(mut h, a), (g, b)| {
                h.iter_mut().zip(&g).for_each(|(x, y)| *x += y);
                (h, a + b)
            },
        );
    let mut cum = 0u64;
    hist.iter()
        .map(|&h| {
            cum += h;
            if all == 0 {
                1.0
            } else {
                cum as f64 / all as f64
            }
        })
        .collect()
}

/// Replace `key[l]` (`‖c_l‖² − 2 q·c_l`) of every list holding some of the
/// `excluded` rows by that of the list's mean without them.
fn leave_out(
    key: &mut [f32],
    q: &[f32],
    centroids: &[f32],
    sizes: &[usize],
    labels: &[u32],
    x: ArrayView2<f32>,
    excluded: &[i64],
) {
    let d = q.len();
    let mut lists: Vec<(usize, usize)> = excluded
        .iter()
        .map(|&e| (labels[e as usize] as usize, e as usize))
        .collect();
    lists.sort_unstable();
    for group in lists.chunk_by(|a, b| a.0 == b.0) {
        let l = group[0].0;
        let (n, m) = (sizes[l] as f64, group.len() as f64);
        if n <= m {
            continue;
        }
        let mut sum = vec![0f64; d];
        for &(_, e) in group {
            sum.iter_mut()
                .zip(x.row(e))
                .for_each(|(s, &v)| *s += v as f64);
        }
        let (mut norm, mut dot) = (0f64, 0f64);
        for j in 0..d {
            let cj = (n * centroids[l * d + j] as f64 - sum[j]) / (n - m);
            norm += cj * cj;
            dot += cj * q[j] as f64;
        }
        key[l] = (norm - 2.0 * dot) as f32;
    }
}

/// The ids `index` returns for the sample at nprobe `p`, with every query's
/// excluded rows taken out as if they were not indexed: the search asks for
/// as many more results as rows are excluded (for RFlat, more base
/// candidates, which are filtered before the exact re-ranking).
pub fn search_excluding(
    backend: &dyn Backend,
    index: &Index,
    sample: &Sample,
    p: usize,
) -> Result<Array2<i64>> {
    let q = sample.queries.view();
    let extra = sample.max_excluded;
    match index {
        Index::Refine(r) => {
            let kb = k_base(K, r.k_factor);
            let cand = search::search_index(backend, &r.base, q, kb + extra, Some(p))?;
            let cand = keep_first(cand.ids.view(), &sample.excluded, kb);
            let v = ArrayView2::from_shape((r.refine.ntotal(), r.refine.d), &r.refine.xb)
                .map_err(|e| Error::Invalid(format!("refine vectors: {e}")))?;
            let found = backend
                .refine(q, v, cand.view(), K, Metric::L2)
                .unwrap_or_else(|| {
                    list_search::refine(Isa::detected(), q, v, cand.view(), K, Metric::L2)
                })?;
            Ok(found.ids)
        }
        _ => {
            let r = search::search_index(backend, index, q, K + extra, Some(p))?;
            Ok(keep_first(r.ids.view(), &sample.excluded, K))
        }
    }
}

/// Milliseconds per 1 000 queries of the real search (k = 8) of the
/// sample at nprobe `p`.
pub fn time_search(backend: &dyn Backend, index: &Index, sample: &Sample, p: usize) -> Result<f64> {
    let t = Instant::now();
    search::search_index(backend, index, sample.queries.view(), K, Some(p))?;
    Ok(t.elapsed().as_secs_f64() * 1e6 / sample.len().max(1) as f64)
}

/// The in-memory index of `trained` + `added` (a copy of the rows), to
/// search while the files are still to be written.
fn filled(trained: &Trained, added: &Added, x: ArrayView2<f32>) -> Index {
    let copy = Added {
        lists: added.lists.clone(),
        objective: added.objective,
        codes: added.codes.clone(),
        labels_from_training: added.labels_from_training,
    };
    build::fill(trained, copy, x, &mut BuildTimes::default())
}

/// The recall curve of a built IVF index over the rows `x` it holds and
/// the smallest nprobe reaching `r`: exact for IVF-Flat (the lists ranked as
/// if each query's excluded rows had not been in the k-means), searched per
/// nprobe for the other kinds.
pub fn measure(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    index: &Index,
    sample: &Sample,
    r: f64,
) -> Result<Candidate> {
    let factory = crate::faiss::info::IndexInfo::new(index, None).factory;
    match index {
        Index::IvfFlat(ix) => {
            let nlist = ix.lists.len();
            let c = ArrayView2::from_shape((nlist, ix.ivf.d), &ix.ivf.quantizer.xb)
                .map_err(|e| Error::Invalid(format!("coarse quantizer: {e}")))?;
            let mut labels = vec![0u32; x.nrows()];
            for (l, list) in ix.lists.iter().enumerate() {
                for &id in &list.ids {
                    if let Some(v) = labels.get_mut(id as usize) {
                        *v = l as u32;
                    }
                }
            }
            let curve = flat_curve(c, &labels, sample, Some(x));
            sweep::from_curve(backend, index, sample, &factory, &curve, r)
        }
        Index::IvfPqFastScan(ix) => {
            sweep::searched(backend, index, sample, &factory, ix.lists.len(), r)
        }
        Index::Refine(rf) => match &rf.base {
            Index::IvfFlat(ix) => {
                sweep::searched(backend, index, sample, &factory, ix.lists.len(), r)
            }
            Index::IvfPqFastScan(ix) => {
                sweep::searched(backend, index, sample, &factory, ix.lists.len(), r)
            }
            _ => Err(Error::Invalid("--recall needs an IVF index kind".into())),
        },
        Index::Flat(_) => Err(Error::Invalid(
            "--recall needs an IVF index kind: a Flat index is exact, it has no nprobe".into(),
        )),
    }
}

/// What `choose` decided: the kind to write (its trained and added parts,
/// nprobe set) and the measurements.
pub struct Choice {
    pub trained: Trained,
    pub added: Added,
    pub nprobe: usize,
    pub report: RecallReport,
}

/// Measure the built index (`trained` + `added` over the rows `x`) and
/// choose the smallest nprobe whose recall@8 reaches `target`; with
/// `compare_pq` also build and measure [`pq_factory`] on the same lists and
/// keep the kind that reaches it with the faster search.
#[allow(clippy::too_many_arguments)]
pub fn choose(
    backend: &dyn Backend,
    x: ArrayView2<f32>,
    trained: Trained,
    added: Added,
    target: &RecallTarget,
    timeline: &Timeline,
    seed: u64,
    progress: &Progress,
) -> Result<Choice> {
    check(Some(target), Some(trained.factory))?;
    let t = Instant::now();
    let (n, d) = x.dim();
    let km = trained
        .kmeans
        .as_ref()
        .ok_or_else(|| Error::Invalid("--recall needs an IVF index kind".into()))?;
    let nlist = km.centroids.nrows();
    let mut secs = StageSeconds::default();
    let ts = Instant::now();
    let sample = Sample::draw(backend, x, timeline, seed, sample_size(n, nlist))?;
    secs.exact = ts.elapsed().as_secs_f64();
    let r = target.recall;

    let first = {
        let ts = Instant::now();
        let index = filled(&trained, &added, x);
        secs.fill += ts.elapsed().as_secs_f64();
        let ts = Instant::now();
        let c = measure(backend, x, &index, &sample, r)?;
        secs.curves += ts.elapsed().as_secs_f64();
        c
    };
    let mut candidates = vec![first];
    let mut pq = None;
    if target.compare_pq {
        let factory = pq_factory(d, nlist);
        let Factory::Ivf {
            codec: Codec::Pq4FastScan { m },
            ..
        } = factory
        else {
            unreachable!("pq_factory builds PQ kinds")
        };
        progress.info(&format!(
            "--factory auto: training {factory} on the same lists"
        ));
        let mut t_pq = BuildTimes::default();
        let tp = Instant::now();
        let trained_pq = Trained {
            factory,
            d,
            metric: trained.metric,
            nprobe: trained.nprobe,
            kmeans: trained.kmeans.clone(),
            pq: Some(build::train_pq(backend, x, m)?),
        };
        let added_pq = Added {
            lists: added.lists.clone(),
            objective: added.objective,
            codes: Some(build::encode(
                backend,
                trained_pq.pq.as_ref().expect("set"),
                x,
            )?),
            labels_from_training: added.labels_from_training,
        };
        t_pq.pq_train = tp.elapsed().as_secs_f64();
        secs.pq_build = t_pq.pq_train;
        let ts = Instant::now();
        let index = filled(&trained_pq, &added_pq, x);
        secs.fill += ts.elapsed().as_secs_f64();
        let ts = Instant::now();
        let mut c = measure(backend, x, &index, &sample, r)?;
        secs.curves += ts.elapsed().as_secs_f64();
        c.build_seconds = Some(t_pq.pq_train);
        candidates.push(c);
        pq = Some((trained_pq, added_pq));
    }
    let best = sweep::winner(&candidates);
    let chosen = &candidates[best];
    let nprobe = chosen.nprobe;
    if !chosen.reached {
        progress.warn(&format!(
            "recall@{K} reaches only {:.4} (at nprobe {nprobe}), below --recall {r}",
            chosen.recall_at_8
        ));
    }
    let report = RecallReport {
        target: r,
        k: K,
        queries: sample.len(),
        excluded: if timeline.has_files() {
            format!("each query's row and the rows within {WINDOW} of it in its feature file")
        } else {
            "each query's own row".into()
        },
        factory: chosen.factory.clone(),
        nprobe,
        recall_at_8: chosen.recall_at_8,
        ms_per_1000_queries: chosen.ms_per_1000_queries,
        candidates: candidates.clone(),
        seconds: t.elapsed().as_secs_f64(),
        stage_seconds: secs,
    };
    let (mut trained, added) = match (best, pq) {
        (1, Some(p)) => p,
        _ => (trained, added),
    };
    trained.nprobe = nprobe;
    Ok(Choice {
        trained,
        added,
        nprobe,
        report,
    })
}
