//! α-query expansion ("Attention-Based Query Expansion Learning"; the
//! "alpha QE" of the RVC faiss tips): each row is replaced by the
//! L2-normalised sum of its `num_expand` nearest neighbours by inner product
//! (itself included), neighbour j weighted by `(x·n_j)^α`.
//!
//! Negative similarities: `(x·n_j)^α` is NaN in NumPy for a non-integer α
//! and a negative base, and flips the sign of a neighbour's pull for odd
//! integer α. We clamp similarities at 0 first, so a neighbour pointing away
//! never contributes; for positive similarities (the usual case, and always
//! the row itself) this is the formula as written. A row whose weights are
//! all 0 (a zero row) stays 0.
//!
//! The neighbours come from `Backend::knn` / `knn_self` (exact) or an index
//! search; the weighting and the sum are the backend's `weighted_sum`
//! primitive.

use std::time::Instant;

use ndarray::{Array2, ArrayView2, s};

use crate::Error;
use rayon::prelude::*;

use crate::compute::cpu::weighted_sum::normalize;
use crate::compute::{Backend, Neighbours};
use crate::index::factory::Factory;
use crate::index::search::search_index;
use crate::progress::Progress;
use crate::{Metric, Result};

/// Lists probed by the approximate neighbour search unless told otherwise.
pub const DEFAULT_NPROBE: usize = 16;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct QeParams {
    pub alpha: f32,
    pub num_expand: usize,
    /// Rows expanded per step; bounds the memory of the neighbour search.
    pub batch_size: usize,
    /// Approximate neighbours: build this index over the (normalised)
    /// neighbour set with `index::build` and search it, instead of the exact
    /// search. `None`: exact.
    pub factory: Option<Factory>,
    /// Lists probed per query when `factory` is an IVF index.
    pub nprobe: usize,
}

impl std::str::FromStr for QeParams {
    type Err = Error;

    /// `alpha=3,k=16[,factory=IVF512,PQ128x4fs,RFlat,nprobe=16]` (any part
    /// may be left out; `num_expand=` is a synonym of `k=`). The factory
    /// string runs up to the next `key=` part, so its own commas need no quoting.
    fn from_str(s: &str) -> Result<Self> {
        let mut p = QeParams::default();
        let bad = || {
            Error::Invalid(format!(
                "query expansion {s:?}: expected alpha=<number>,k=<count>[,factory=<index factory>,nprobe=<count>]"
            ))
        };
        let mut factory: Option<String> = None;
        let mut in_factory = false;
        for part in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let Some((key, value)) = part.split_once('=') else {
                match (&mut factory, in_factory) {
                    (Some(f), true) => {
                        f.push(',');
                        f.push_str(part);
                        continue;
                    }
                    _ => return Err(bad()),
                }
            };
            in_factory = false;
            match key.trim() {
                "alpha" => p.alpha = value.trim().parse().map_err(|_| bad())?,
                "k" | "num_expand" => p.num_expand = value.trim().parse().map_err(|_| bad())?,
                "nprobe" => p.nprobe = value.trim().parse().map_err(|_| bad())?,
                "factory" => {
                    factory = Some(value.trim().to_string());
                    in_factory = true;
                }
                _ => return Err(bad()),
            }
        }
        if let Some(f) = factory {
            p.factory = Some(f.parse()?);
        }
        p.check()?;
        Ok(p)
    }
}

impl QeParams {
    pub fn check(&self) -> Result<()> {
        if !self.alpha.is_finite() || self.alpha < 0.0 {
            return Err(Error::Invalid(format!(
                "alpha must be a finite number ≥ 0, got {}",
                self.alpha
            )));
        }
        if self.num_expand == 0 {
            return Err(Error::Invalid(
                "the number of neighbours to expand with must be at least 1".into(),
            ));
        }
        if self.num_expand > crate::limits::MAX_K {
            return Err(Error::Invalid(format!(
                "the number of neighbours to expand with must be at most {}, got {}",
                crate::limits::MAX_K,
                self.num_expand
            )));
        }
        if self.nprobe == 0 {
            return Err(Error::Invalid(
                "query expansion: nprobe must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

impl Default for QeParams {
    fn default() -> Self {
        QeParams {
            alpha: 3.0,
            num_expand: 16,
            batch_size: 4096,
            factory: None,
            nprobe: DEFAULT_NPROBE,
        }
    }
}

/// `x / max(‖x‖, 1e-9)` for every row, in place.
pub fn normalize_rows(x: &mut Array2<f32>) {
    let d = x.ncols().max(1);
    if let Some(s) = x.as_slice_mut() {
        s.par_chunks_mut(d).for_each(normalize);
    } else {
        for mut r in x.rows_mut() {
            let mut v: Vec<f32> = r.iter().copied().collect();
            normalize(&mut v);
            r.iter_mut().zip(v).for_each(|(o, v)| *o = v);
        }
    }
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct QeSeconds {
    pub normalize: f64,
    /// Building the approximate index (`factory`), 0 for exact search.
    pub index_build: f64,
    pub knn: f64,
    pub weighted_sum: f64,
    pub total: f64,
}

/// Expand the rows of `q` against the (normalised) rows of `db`.
pub fn expand_against(
    backend: &dyn Backend,
    mut q: Array2<f32>,
    db: ArrayView2<f32>,
    p: &QeParams,
    progress: &Progress,
) -> Result<Array2<f32>> {
    normalize_rows(&mut q);
    let mut secs = QeSeconds::default();
    let source = Source::new(backend, db, p, progress, &mut secs)?;
    expand_normalized(backend, q.view(), db, &source, None, p, progress, &mut secs)
}

/// Expand every row of `x` against the rows of `x` itself. `x` is
/// normalised in place, so the peak is two matrices (input and output).
/// With exact search, the neighbours of all rows come from one
/// `Backend::knn_self` call (which may exploit the symmetry); only the
/// n × num_expand ids are kept from it.
pub fn expand(
    backend: &dyn Backend,
    mut xn: Array2<f32>,
    p: &QeParams,
    progress: &Progress,
) -> Result<(Array2<f32>, QeSeconds)> {
    let t_all = Instant::now();
    let mut secs = QeSeconds::default();
    let t = Instant::now();
    normalize_rows(&mut xn);
    secs.normalize = t.elapsed().as_secs_f64();
    let source = Source::new(backend, xn.view(), p, progress, &mut secs)?;
    let all = match source {
        Source::Exact => {
            let t = Instant::now();
            let nn = backend.knn_self(xn.view(), p.num_expand, Metric::InnerProduct)?;
            secs.knn += t.elapsed().as_secs_f64();
            Some(nn.ids)
        }
        Source::Index(_) => None,
    };
    let out = expand_normalized(
        backend,
        xn.view(),
        xn.view(),
        &source,
        all.as_ref().map(|a| a.view()),
        p,
        progress,
        &mut secs,
    )?;
    secs.total = t_all.elapsed().as_secs_f64();
    Ok((out, secs))
}

/// Where the neighbours come from.
enum Source {
    /// `Backend::knn` over the rows.
    Exact,
    /// An index built over the rows (`QeParams::factory`).
    Index(crate::faiss::Index),
}

impl Source {
    fn new(
        backend: &dyn Backend,
        db: ArrayView2<f32>,
        p: &QeParams,
        progress: &Progress,
        secs: &mut QeSeconds,
    ) -> Result<Source> {
        let Some(factory) = p.factory else {
            return Ok(Source::Exact);
        };
        let t = Instant::now();
        let built = crate::index::build::build(
            backend,
            db,
            factory,
            Metric::InnerProduct,
            p.nprobe,
            progress,
        )?;
        secs.index_build = t.elapsed().as_secs_f64();
        progress.verbose(&format!(
            "query expansion: built {factory} over {} rows in {:.2} s",
            db.nrows(),
            secs.index_build
        ));
        Ok(Source::Index(built.index))
    }

    fn search(
        &self,
        backend: &dyn Backend,
        q: ArrayView2<f32>,
        db: ArrayView2<f32>,
        p: &QeParams,
    ) -> Result<Neighbours> {
        match self {
            Source::Exact => backend.knn(q, db, p.num_expand, Metric::InnerProduct),
            Source::Index(ix) => search_index(backend, ix, q, p.num_expand, Some(p.nprobe)),
        }
    }
}

/// Batches of `p.batch_size` query rows: neighbours in `db` (taken from
/// `all` when given), then the weighted sum.
#[allow(clippy::too_many_arguments)]
fn expand_normalized(
    backend: &dyn Backend,
    q: ArrayView2<f32>,
    db: ArrayView2<f32>,
    source: &Source,
    all: Option<ArrayView2<i64>>,
    p: &QeParams,
    progress: &Progress,
    secs: &mut QeSeconds,
) -> Result<Array2<f32>> {
    let n = q.nrows();
    let mut out = Array2::<f32>::zeros(q.dim());
    let bar = progress.bar(n as u64, "expand");
    let batch = p.batch_size.max(1);
    for lo in (0..n).step_by(batch) {
        let hi = (lo + batch).min(n);
        let qb = q.slice(s![lo..hi, ..]);
        let searched;
        let ids = match all {
            Some(a) => a.slice_move(s![lo..hi, ..]),
            None => {
                let t = Instant::now();
                searched = source.search(backend, qb, db, p)?;
                secs.knn += t.elapsed().as_secs_f64();
                searched.ids.view()
            }
        };
        let t = Instant::now();
        let y = backend.weighted_sum(qb, db, ids, p.alpha)?;
        secs.weighted_sum += t.elapsed().as_secs_f64();
        out.slice_mut(s![lo..hi, ..]).assign(&y);
        bar.inc((hi - lo) as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}
