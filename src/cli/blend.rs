use std::path::PathBuf;

use ndarray::ArrayView2;

use super::{CommonArgs, VerboseArgs};
use crate::faiss;
use crate::index::{blend, search::search_index};
use crate::io::features;
use crate::{Error, Metric, Result};

/// Neighbours RVC's inference blends (`k = 8`, hard-coded there).
const RVC_K: usize = 8;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  rvc-index blend added_IVF256_Flat_nprobe_1_voice_v2.index feats.npy --index-rate 0.75 -o blended.npy\n\n\
RVC's retrieval step at inference: each frame's 8 nearest stored vectors (searched with the \
nprobe stored in the file, as RVC does) are averaged with weights 1/distance², normalised, and \
blended in: f = rate·retrieved + (1 − rate)·f. Unlike RVC's formula this never gives NaN: an \
exact match (distance 0) takes the whole weight, and a frame whose probed list is empty is \
left unchanged."
)]
pub struct BlendArgs {
    /// An L2 index whose stored vectors are the features (e.g. RVC's added_… file).
    pub index: PathBuf,
    /// Frames to convert: a 2-D .npy matrix (T × d).
    pub features: PathBuf,
    /// Share of the retrieved features, 0..1 (RVC's "index rate", default 0.75).
    #[arg(long, default_value_t = 0.75)]
    pub index_rate: f32,
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub fn run(a: &BlendArgs) -> Result<()> {
    let progress = a.common.progress(&VerboseArgs::default());
    let index = faiss::read_index(&a.index)?;
    index.check_searchable(&a.index)?;
    if index.metric() != Metric::L2 {
        return Err(Error::bad_input(
            &a.index,
            "RVC's blend needs an L2 index (its weights are 1/distance²)",
        ));
    }
    let feats = features::load_matrix(&a.features)?;
    let backend = a.common.backend(&progress)?;
    let nn =
        search_index(backend.as_ref(), &index, feats.view(), RVC_K, None).map_err(|e| match e {
            Error::Invalid(m) => Error::bad_input(&a.features, m),
            e => e,
        })?;
    let vectors = index.reconstruct_all();
    let db = ArrayView2::from_shape((index.ntotal(), index.d()), &vectors)
        .map_err(|e| Error::bad_input(&a.index, e.to_string()))?;
    let out = blend::blend(
        feats.view(),
        nn.scores.view(),
        nn.ids.view(),
        db,
        a.index_rate,
    )?;
    features::write_npy_atomic(&a.output, out.view())?;
    progress.info(&format!(
        "blended {} frames -> {}",
        out.nrows(),
        a.output.display()
    ));
    Ok(())
}
