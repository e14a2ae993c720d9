//! The measurement's queries: indexed rows drawn with a seed, each with the
//! rows excluded with it (its own and its neighbouring frames, see
//! [`WINDOW`]) and its exact neighbours among the rest.

use ndarray::{Array2, ArrayView2, Axis};
use rand::SeedableRng;

use super::{K, WINDOW};
use crate::compute::Backend;
use crate::{Metric, Result};

/// Where every indexed row was in the feature files, to exclude a query's
/// neighbouring frames with it.
#[derive(Clone, Debug)]
pub struct Timeline {
    /// Position of row i in the concatenated files (None: no file order).
    origin: Option<Vec<usize>>,
    /// Row at each position of the concatenated files.
    row_at: Vec<usize>,
    /// Start of each file in the concatenation, then the total.
    starts: Vec<usize>,
}

impl Timeline {
    /// Rows with no place in a file: only a query's own row is excluded.
    pub fn rows(_n: usize) -> Self {
        Timeline {
            origin: None,
            row_at: Vec::new(),
            starts: Vec::new(),
        }
    }

    /// Files of `lens` rows, concatenated, then shuffled: row i is position
    /// `perm[i]` of the concatenation (`train`'s shuffle). Positions no row
    /// comes from (rows held out) are skipped; a `perm` naming a position
    /// twice or past the files gives [`Timeline::rows`].
    pub fn of_files(lens: &[usize], perm: &[usize]) -> Self {
        let total: usize = lens.iter().sum();
        let mut starts = Vec::with_capacity(lens.len() + 1);
        let mut at = 0;
        for &l in lens {
            starts.push(at);
            at += l;
        }
        starts.push(at);
        let mut row_at = vec![usize::MAX; total];
        for (i, &p) in perm.iter().enumerate() {
            match row_at.get_mut(p) {
                Some(r) if *r == usize::MAX => *r = i,
                _ => return Timeline::rows(perm.len()),
            }
        }
        Timeline {
            origin: Some(perm.to_vec()),
            row_at,
            starts,
        }
    }

    /// The rows of an experiment as `train` indexes them: its feature files
    /// in reading order, shuffled with `seed`. `rows_are_frames` is false
    /// where the rows were replaced (compressed to centres).
    pub fn of_experiment(
        exp: &crate::io::experiment::Experiment,
        seed: u64,
        n: usize,
        rows_are_frames: bool,
    ) -> Self {
        let files = match exp.feature_files() {
            Ok(f) if rows_are_frames => f,
            _ => return Timeline::rows(n),
        };
        let lens: Vec<usize> = files.iter().map(|f| f.rows).collect();
        Timeline::of_files(&lens, &crate::train::rvc::shuffle_permutation(n, seed))
    }

    /// The rows excluded with query row `i`, ascending.
    pub fn excluded(&self, i: usize) -> Vec<i64> {
        let Some(origin) = &self.origin else {
            return vec![i as i64];
        };
        let c = origin[i];
        let f = self.starts.partition_point(|&s| s <= c) - 1;
        let lo = c.saturating_sub(WINDOW).max(self.starts[f]);
        let hi = (c + WINDOW).min(self.starts[f + 1] - 1);
        let mut ids: Vec<i64> = (lo..=hi)
            .map(|p| self.row_at[p])
            .filter(|&r| r != usize::MAX)
            .map(|r| r as i64)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Whether neighbouring frames are excluded (else the query's row alone).
    pub fn has_files(&self) -> bool {
        self.origin.is_some()
    }
}

/// The sampled queries and their true neighbours among the rows not
/// excluded with them.
pub struct Sample {
    pub rows: Vec<usize>,
    pub queries: Array2<f32>,
    /// Per query, the excluded rows (ascending).
    pub excluded: Vec<Vec<i64>>,
    /// The largest excluded count.
    pub max_excluded: usize,
    /// `nq × K` true neighbours, -1 where fewer rows remain.
    pub truth: Array2<i64>,
}

impl Sample {
    /// `queries` rows (at most n) drawn with `seed`, their exact neighbours.
    pub fn draw(
        backend: &dyn Backend,
        x: ArrayView2<f32>,
        timeline: &Timeline,
        seed: u64,
        queries: usize,
    ) -> Result<Sample> {
        let n = x.nrows();
        let nq = queries.min(n);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0x7265_6361_6c6c_4038);
        let mut rows = rand::seq::index::sample(&mut rng, n, nq).into_vec();
        rows.sort_unstable();
        let q = x.select(Axis(0), &rows);
        let excluded: Vec<Vec<i64>> = rows.iter().map(|&i| timeline.excluded(i)).collect();
        let max_excluded = excluded.iter().map(Vec::len).max().unwrap_or(0);
        let exact = backend.knn(q.view(), x, (K + max_excluded).min(n), Metric::L2)?;
        let truth = keep_first(exact.ids.view(), &excluded, K);
        Ok(Sample {
            rows,
            queries: q,
            excluded,
            max_excluded,
            truth,
        })
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Recall@K of `found` (`nq × K` ids): found true neighbours over all
    /// true neighbours (K per query where the index holds enough rows).
    pub fn recall_of(&self, found: ArrayView2<i64>) -> f64 {
        let (mut hit, mut all) = (0usize, 0usize);
        for (t, f) in self.truth.rows().into_iter().zip(found.rows()) {
            for &id in t.iter().filter(|&&id| id >= 0) {
                all += 1;
                hit += f.iter().any(|&g| g == id) as usize;
            }
        }
        if all == 0 {
            1.0
        } else {
            hit as f64 / all as f64
        }
    }
}

/// Per row of `ids`, the first `k` ids that are not in the row's (sorted)
/// `excluded` list, -1 padded.
pub fn keep_first(ids: ArrayView2<i64>, excluded: &[Vec<i64>], k: usize) -> Array2<i64> {
    let mut out = Array2::from_elem((ids.nrows(), k), -1i64);
    for (i, row) in ids.rows().into_iter().enumerate() {
        let kept = row
            .iter()
            .filter(|&&id| id >= 0 && excluded[i].binary_search(&id).is_err())
            .take(k);
        for (r, &id) in kept.enumerate() {
            out[[i, r]] = id;
        }
    }
    out
}
