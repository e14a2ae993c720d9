//! The recall curve of one index kind, its chosen nprobe, and which kind
//! `--factory auto` keeps.

use std::collections::BTreeMap;

use super::{Sample, search_excluding, time_search};
use crate::Result;
use crate::compute::Backend;
use crate::faiss::Index;

/// Below this nprobe every value is searched; above it the searched kinds
/// (PQ) step through a doubling grid and bisect.
const LINEAR_UP_TO: usize = 16;
/// Past `LINEAR_UP_TO`, the search stops short of nlist once doubling the
/// probes gains less recall than this.
const PLATEAU: f64 = 0.002;

/// One point of a recall curve.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Point {
    pub nprobe: usize,
    pub recall_at_8: f64,
    /// The real search (k = 8) at this nprobe, where it was timed.
    pub ms_per_1000_queries: Option<f64>,
}

/// One index kind measured: its curve and the nprobe chosen on it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Candidate {
    pub factory: String,
    /// The smallest nprobe whose recall@8 reaches the target (where none
    /// does: the smallest with the highest recall).
    pub nprobe: usize,
    pub reached: bool,
    pub recall_at_8: f64,
    pub ms_per_1000_queries: f64,
    /// Recall never drops as nprobe grows, over the points measured.
    pub monotone: bool,
    /// How the curve was obtained: "exact" (IVF-Flat: from the probe rank of
    /// every true neighbour's list) or "searched" (a search per nprobe).
    pub method: &'static str,
    /// Seconds spent building this kind for the comparison (PQ codebooks and
    /// codes), where it was built only to be compared.
    pub build_seconds: Option<f64>,
    pub curve: Vec<Point>,
}

/// What `train --recall` measured and chose (`--json`: `recall`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RecallReport {
    pub target: f64,
    pub k: usize,
    /// Query rows sampled from the index.
    pub queries: usize,
    /// Which rows each query's results leave out.
    pub excluded: String,
    /// The kind written and its stored nprobe.
    pub factory: String,
    pub nprobe: usize,
    pub recall_at_8: f64,
    pub ms_per_1000_queries: f64,
    /// Every kind measured, side by side (the written one among them).
    pub candidates: Vec<Candidate>,
    /// Seconds of the whole measurement.
    pub seconds: f64,
    /// Of which: the sample's exact k-NN (the ground truth), the in-memory
    /// copies of the indexes searched, the curves and timed searches, and
    /// (`--factory auto`) the PQ codebooks and codes.
    pub stage_seconds: StageSeconds,
}

/// Seconds of each part of the measurement.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct StageSeconds {
    pub exact: f64,
    pub fill: f64,
    pub curves: f64,
    pub pq_build: f64,
}

/// The nprobes reported (and timed): powers of two up to
/// `max(16, 2·chosen)` (at most `nlist`), the chosen one and the one below.
pub fn report_points(chosen: usize, nlist: usize) -> Vec<usize> {
    let cap = nlist.min(LINEAR_UP_TO.max(2 * chosen)).max(1);
    let mut v: Vec<usize> = std::iter::successors(Some(1usize), |p| p.checked_mul(2))
        .take_while(|&p| p <= cap)
        .collect();
    v.extend([chosen.saturating_sub(1).max(1), chosen.min(nlist), cap]);
    v.sort_unstable();
    v.dedup();
    v
}

fn monotone(points: &BTreeMap<usize, f64>) -> bool {
    points
        .values()
        .zip(points.values().skip(1))
        .all(|(a, b)| b >= a)
}

/// The smallest nprobe reaching `r` among `points`, whether one does, and
/// its recall; where none does, the smallest with the highest recall.
fn pick(points: &BTreeMap<usize, f64>, r: f64) -> (usize, bool, f64) {
    if let Some((&p, &v)) = points.iter().find(|&(_, &v)| v >= r) {
        return (p, true, v);
    }
    let best = points.values().copied().fold(f64::NEG_INFINITY, f64::max);
    let (&p, &v) = points
        .iter()
        .find(|&(_, &v)| v == best)
        .expect("at least one point");
    (p, false, v)
}

#[allow(clippy::too_many_arguments)]
fn candidate(
    backend: &dyn Backend,
    index: &Index,
    sample: &Sample,
    factory: &str,
    points: BTreeMap<usize, f64>,
    nlist: usize,
    r: f64,
    method: &'static str,
) -> Result<Candidate> {
    let (nprobe, reached, recall) = pick(&points, r);
    let timed = report_points(nprobe, nlist);
    let mut curve = Vec::with_capacity(points.len());
    let mut ms_chosen = f64::NAN;
    for (&p, &v) in &points {
        let ms = if timed.contains(&p) {
            Some(time_search(backend, index, sample, p)?)
        } else {
            None
        };
        if p == nprobe {
            ms_chosen = ms.unwrap_or(f64::NAN);
        }
        curve.push(Point {
            nprobe: p,
            recall_at_8: v,
            ms_per_1000_queries: ms,
        });
    }
    Ok(Candidate {
        factory: factory.to_string(),
        nprobe,
        reached,
        recall_at_8: recall,
        ms_per_1000_queries: ms_chosen,
        monotone: monotone(&points),
        method,
        build_seconds: None,
        curve,
    })
}

/// IVF-Flat: `curve[p - 1]` is the exact recall at nprobe p (every p up to
/// nlist); the curve is reported up to the last timed point.
pub fn from_curve(
    backend: &dyn Backend,
    index: &Index,
    sample: &Sample,
    factory: &str,
    curve: &[f64],
    r: f64,
) -> Result<Candidate> {
    let nlist = curve.len();
    let all: BTreeMap<usize, f64> = curve.iter().enumerate().map(|(i, &v)| (i + 1, v)).collect();
    let (chosen, _, _) = pick(&all, r);
    let cap = *report_points(chosen, nlist).last().expect("non-empty");
    let points = all.range(..=cap).map(|(&p, &v)| (p, v)).collect();
    let mut c = candidate(backend, index, sample, factory, points, nlist, r, "exact")?;
    c.monotone = monotone(&all);
    Ok(c)
}

/// Any IVF kind, searched: every nprobe up to 16, then a doubling grid up to
/// nlist (stopping where doubling gains less than 0.002) and a bisection
/// between the last point below `r` and the first reaching it (recall taken
/// as monotone there), then the report points.
pub fn searched(
    backend: &dyn Backend,
    index: &Index,
    sample: &Sample,
    factory: &str,
    nlist: usize,
    r: f64,
) -> Result<Candidate> {
    let mut points = BTreeMap::new();
    let eval = |p: usize, points: &mut BTreeMap<usize, f64>| -> Result<f64> {
        if let Some(&v) = points.get(&p) {
            return Ok(v);
        }
        let v = sample.recall_of(search_excluding(backend, index, sample, p)?.view());
        points.insert(p, v);
        Ok(v)
    };
    let mut reached = None;
    for p in 1..=LINEAR_UP_TO.min(nlist) {
        if eval(p, &mut points)? >= r {
            reached = Some(p);
            break;
        }
    }
    if reached.is_none() && nlist > LINEAR_UP_TO {
        let mut lo = LINEAR_UP_TO;
        let mut p = LINEAR_UP_TO;
        let mut last = points.get(&lo).copied().unwrap_or(0.0);
        while p < nlist {
            p = (2 * p).min(nlist);
            let v = eval(p, &mut points)?;
            if v >= r {
                let mut hi = p;
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if eval(mid, &mut points)? >= r {
                        hi = mid;
                    } else {
                        lo = mid;
                    }
                }
                reached = Some(hi);
                break;
            }
            // A plateau: twice the probes gained less than PLATEAU, more
            // will not reach r.
            if v - last < PLATEAU {
                break;
            }
            last = v;
            lo = p;
        }
    }
    let chosen = reached.unwrap_or_else(|| pick(&points, r).0);
    for p in report_points(chosen, nlist) {
        eval(p, &mut points)?;
    }
    candidate(
        backend, index, sample, factory, points, nlist, r, "searched",
    )
}

/// The candidate to keep: of those reaching the target, the fastest search
/// at its chosen nprobe (the first on a tie); where none reaches it, the
/// highest recall.
pub fn winner(c: &[Candidate]) -> usize {
    let reached: Vec<usize> = (0..c.len()).filter(|&i| c[i].reached).collect();
    if !reached.is_empty() {
        return reached
            .into_iter()
            .min_by(|&a, &b| {
                c[a].ms_per_1000_queries
                    .total_cmp(&c[b].ms_per_1000_queries)
                    .then(a.cmp(&b))
            })
            .expect("non-empty");
    }
    (0..c.len())
        .max_by(|&a, &b| {
            c[a].recall_at_8
                .total_cmp(&c[b].recall_at_8)
                .then(b.cmp(&a))
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_points_hold_the_chosen_and_the_one_below() {
        assert_eq!(report_points(1, 256), vec![1, 2, 4, 8, 16]);
        assert_eq!(report_points(11, 256), vec![1, 2, 4, 8, 10, 11, 16, 22]);
        assert_eq!(report_points(3, 4), vec![1, 2, 3, 4]);
        assert_eq!(report_points(1, 1), vec![1]);
    }

    #[test]
    fn pick_takes_the_smallest_reaching_or_the_best() {
        let pts: BTreeMap<usize, f64> = [(1, 0.5), (2, 0.9), (3, 0.89), (4, 0.95)].into();
        assert_eq!(pick(&pts, 0.9), (2, true, 0.9));
        assert_eq!(pick(&pts, 0.99), (4, false, 0.95));
        assert!(!monotone(&pts));
    }
}
