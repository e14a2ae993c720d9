//! The fit's parameters (with the default schedule) and what it reports.

use ndarray::Array2;

/// Centres RVC keeps when it compresses a big feature set.
pub const RVC_CENTRES: usize = 10_000;

/// The default schedule (`CompressParams::new`), also the CLI's defaults.
pub mod defaults {
    pub const BATCH_SIZE: usize = 16_384;
    /// Coarse groups per √K.
    pub const GROUPS_PER_SQRT_K: f64 = 2.0;
    pub const COARSE_SAMPLE: usize = 128;
    pub const COARSE_ITERS: usize = 10;
    pub const FINE_ITERS: usize = 8;
    pub const ALLOC_POWER: f64 = 1.0;
    pub const REFINE_ITERS: usize = 4;
    pub const NEIGHBOURS: usize = 16;
    /// Share of rows searched among all centres before the refinement.
    pub const RESCUE: f64 = 0.02;
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct CompressParams {
    /// Number of centres.
    pub k: usize,
    pub seed: u64,
    /// Rows per backend call where rows are streamed.
    pub batch_size: usize,
    /// Coarse groups; None: round(2·√K).
    pub groups: Option<usize>,
    /// Rows per coarse centre in the sample the coarse level is trained on.
    pub coarse_sample: usize,
    pub coarse_iters: usize,
    pub fine_iters: usize,
    /// β of the split of centres among groups: rows^(1−β)·inertia^β.
    pub alloc_power: f64,
    /// Lloyd iterations over all rows, each row among the centres near its own.
    pub refine_iters: usize,
    /// Nearest centres listed per centre: a row in the refinement is
    /// compared with the centres its group's rows use and their neighbours.
    pub neighbours: usize,
    /// Share of rows, the farthest from their centre after the fine level,
    /// searched among all centres before the refinement.
    pub rescue: f64,
    /// Skip the refinement iterations left once this much time has passed
    /// since the start (breaks exact repeatability; off by default).
    pub max_seconds: Option<f64>,
}

/// The former name, from when the fit was a mini-batch k-means.
pub type MiniBatchParams = CompressParams;

impl CompressParams {
    pub fn new(k: usize) -> Self {
        CompressParams {
            k,
            seed: 0,
            batch_size: defaults::BATCH_SIZE,
            groups: None,
            coarse_sample: defaults::COARSE_SAMPLE,
            coarse_iters: defaults::COARSE_ITERS,
            fine_iters: defaults::FINE_ITERS,
            alloc_power: defaults::ALLOC_POWER,
            refine_iters: defaults::REFINE_ITERS,
            neighbours: defaults::NEIGHBOURS,
            rescue: defaults::RESCUE,
            max_seconds: None,
        }
    }

    /// The number of groups used for `k` centres.
    pub fn groups_for(&self, k: usize) -> usize {
        self.groups
            .unwrap_or_else(|| (defaults::GROUPS_PER_SQRT_K * (k as f64).sqrt()).round() as usize)
            .clamp(1, k.max(1))
    }
}

/// One step as the progress bar and `--json` report it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StepStats {
    /// "coarse" (an iteration on the sample), "groups" (every row to its
    /// group), "fine" (one group's Lloyd run) or "refine" (an iteration
    /// over all rows).
    pub phase: &'static str,
    pub step: usize,
    /// Rows this step assigned.
    pub rows: usize,
    /// Row–centre distances computed so far.
    pub distance_evaluations: u64,
    /// Expected total of `distance_evaluations` (exact once the groups are known).
    pub planned_evaluations: u64,
    /// Mean squared distance of this step's rows to their nearest centre
    /// (among those searched), before the step moved the centres.
    pub inertia_per_row: f64,
    pub reseeded: usize,
    pub seconds: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct FitSummary {
    pub n: usize,
    pub d: usize,
    pub params: CompressParams,
    pub groups: usize,
    /// Rows of the largest and smallest group.
    pub group_rows_max: usize,
    pub group_rows_min: usize,
    pub steps: usize,
    /// Row–centre squared distances computed (2·D flops each).
    pub distance_evaluations: u64,
    /// The same work in rows assigned against all K centres.
    pub rows_assigned: u64,
    /// The same work in full assignment passes (N·K distances each).
    pub passes: f64,
    /// Centres re-seeded because no row reached them.
    pub reseeded: usize,
    /// Whether `max_seconds` cut the refinement short.
    pub stopped_by_time: bool,
    pub fit_seconds: f64,
    /// Mean inertia per row of the coarse sample at each coarse iteration.
    pub coarse_inertia_per_row: Vec<f64>,
    /// Mean inertia per row of all rows to their own group's centres, at
    /// each fine iteration (before its update).
    pub fine_inertia_per_row: Vec<f64>,
    /// Mean inertia per row at each refinement iteration (before its
    /// update), the nearest centre taken among the candidates.
    pub refine_inertia_per_row: Vec<f64>,
    pub stage_seconds: Stages<f64>,
    /// Row–centre distances computed per stage.
    pub stage_evaluations: Stages<u64>,
}

/// A figure per stage of the fit.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Stages<T> {
    pub coarse: T,
    pub groups: T,
    pub fine: T,
    pub refine: T,
}

pub struct FitResult {
    pub centroids: Array2<f32>,
    pub summary: FitSummary,
    /// Every step, in order, for inertia-versus-time curves.
    pub history: Vec<StepStats>,
}
