use std::path::{Path, PathBuf};

use super::{CommonArgs, JsonArgs, QeArgs, VerboseArgs};
use crate::faiss::{self, Index};
use crate::index::search::{StageTimes, search_index_timed};
use crate::io::features;
use crate::{Error, Result, qe};

#[derive(clap::Args, Debug)]
#[command(
    mut_arg("query_expansion", |a| a.help(
        "Expand every query first, as `train --query-expansion` expanded the indexed rows: the \
         normalised, similarity^alpha-weighted sum of its k nearest stored vectors (exact \
         inner-product search over the index's own vectors, or with `factory=F,nprobe=N` an \
         index of kind F built over them). Without a value: alpha=3,k=16"
    )),
    mut_arg("verbose", |a| a.help(
        "Also print per-iteration k-means statistics (of the index a query expansion with \
         factory= builds)"
    )),
    after_help = "Example:\n  rvc-index search my.index queries.npy -k 8 --nprobe 4 -o result\n\n\
Writes result_distances.npy (float32, n×k: squared L2 distances ascending, or inner products \
descending) and result_ids.npy (int64, n×k). Where fewer than k vectors are found the id is -1 \
and the distance 3.4028235e38 (-3.4028235e38 for inner product), as faiss reports."
)]
pub struct SearchArgs {
    pub index: PathBuf,
    /// Queries: a 2-D .npy matrix.
    pub queries: PathBuf,
    /// Neighbours per query, 1 to 2048.
    #[arg(short, default_value_t = 8, value_parser = crate::limits::parse_bounded(crate::limits::MAX_K))]
    pub k: usize,
    /// Lists probed per query (default: the value stored in the file).
    #[arg(long)]
    pub nprobe: Option<usize>,
    /// Candidates re-ranked per result for RFlat indexes (default: stored k_factor).
    #[arg(long)]
    pub k_factor: Option<f32>,
    /// Normalise the queries to unit length first (for indexes built with --metric cosine).
    #[arg(long)]
    pub normalize_queries: bool,
    #[command(flatten)]
    pub qe: QeArgs,
    /// Output prefix: <prefix>_distances.npy and <prefix>_ids.npy.
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub verbose: VerboseArgs,
    #[command(flatten)]
    pub json: JsonArgs,
}

/// `<prefix>_<what>.npy` beside the prefix.
pub fn with_suffix(prefix: &Path, what: &str) -> PathBuf {
    let mut name = prefix.file_name().unwrap_or_default().to_os_string();
    name.push(format!("_{what}.npy"));
    prefix.with_file_name(name)
}

/// Override the stored k_factor of a refine index.
pub fn set_k_factor(index: &mut Index, k_factor: Option<f32>) -> Result<()> {
    let Some(f) = k_factor else { return Ok(()) };
    if !(1.0..=1000.0).contains(&f) {
        return Err(Error::Invalid(format!(
            "--k-factor must be within 1..1000, got {f}"
        )));
    }
    match index {
        Index::Refine(r) => r.k_factor = f,
        _ => {
            return Err(Error::Invalid(
                "--k-factor applies only to RFlat (refine) indexes".into(),
            ));
        }
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct Summary {
    queries: usize,
    k: usize,
    load_seconds: f64,
    search_seconds: f64,
    queries_per_second: f64,
    /// Seconds per search stage: coarse, scan, refine.
    stage_seconds: StageTimes,
    backend: crate::compute::BackendInfo,
}

pub fn run(a: &SearchArgs) -> Result<()> {
    a.json.check()?;
    let progress = a.common.progress(&a.verbose);
    let qe_params = a.qe.given()?;
    if a.k == 0 {
        return Err(Error::Invalid("-k must be at least 1".into()));
    }
    if a.nprobe == Some(0) {
        return Err(Error::Invalid("--nprobe must be at least 1".into()));
    }
    let t = std::time::Instant::now();
    let mut index = faiss::read_index(&a.index)?;
    index.check_searchable(&a.index)?;
    set_k_factor(&mut index, a.k_factor)?;
    let mut q = features::load_matrix(&a.queries)?;
    if a.normalize_queries {
        qe::normalize_rows(&mut q);
    }
    let load_seconds = t.elapsed().as_secs_f64();
    let backend = a.common.backend(&progress)?;
    let t = std::time::Instant::now();
    if let Some(p) = &qe_params {
        if q.ncols() != index.d() {
            return Err(Error::bad_input(
                &a.queries,
                format!(
                    "queries have {} columns, the index {}",
                    q.ncols(),
                    index.d()
                ),
            ));
        }
        let mut db =
            ndarray::Array2::from_shape_vec((index.ntotal(), index.d()), index.reconstruct_all())
                .map_err(|e| Error::bad_input(&a.index, e.to_string()))?;
        qe::normalize_rows(&mut db);
        q = qe::expand_against(backend.as_ref(), q, db.view(), p, &progress)?;
    }
    let mut stage_seconds = StageTimes::default();
    let nn = search_index_timed(
        backend.as_ref(),
        &index,
        q.view(),
        a.k,
        a.nprobe,
        &mut stage_seconds,
    )
    .map_err(|e| match e {
        Error::Invalid(m) => Error::bad_input(&a.queries, m),
        e => e,
    })?;
    let search_seconds = t.elapsed().as_secs_f64();
    features::write_any_npy_atomic(&with_suffix(&a.output, "distances"), nn.scores.view())?;
    features::write_any_npy_atomic(&with_suffix(&a.output, "ids"), nn.ids.view())?;
    progress.info(&format!(
        "{} queries in {search_seconds:.3} s ({:.0} queries/s)",
        q.nrows(),
        q.nrows() as f64 / search_seconds.max(1e-9)
    ));
    a.json.emit(&Summary {
        queries: q.nrows(),
        k: a.k,
        load_seconds,
        search_seconds,
        queries_per_second: q.nrows() as f64 / search_seconds.max(1e-9),
        stage_seconds,
        backend: backend.info(),
    })
}
