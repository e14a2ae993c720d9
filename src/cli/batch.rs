use std::path::PathBuf;

use super::CommonArgs;
use super::train::SettingsArgs;
use crate::batch::{self, BatchOptions, Status};
use crate::io::experiment::Version;
use crate::{Error, Result};

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  rvc-index batch logs/ --exclude mute\n\n\
Every folder under LOGS that holds 3_feature768/ or 3_feature256/ with .npy files is an \
experiment. Each built experiment records a manifest (.rvc-index-manifest.json) of its \
settings and feature files (names, sizes, modification times, content hashes); a later run \
skips experiments whose features and settings are unchanged and whose outputs are intact. \
A failed experiment is reported and the others go on; the exit code is 1 if any failed. \
Interrupted runs resume: outputs are written atomically and the manifest last.")]
pub struct BatchArgs {
    /// Folder of experiments, e.g. logs/.
    pub logs: PathBuf,
    /// Only these experiments (comma-separated folder names).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Skip these experiments (comma-separated folder names).
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Rebuild even when up to date.
    #[arg(long)]
    pub force: bool,
    /// Only say what would be built, and why.
    #[arg(long)]
    pub dry_run: bool,
    /// Feature version for every experiment (needed where both feature folders exist).
    #[arg(long, value_enum)]
    pub version: Option<Version>,
    /// Write the results table as JSON to this file.
    #[arg(long = "json-out", value_name = "FILE")]
    pub json_out: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(flatten)]
    pub common: CommonArgs,
}

pub fn run(a: &BatchArgs) -> Result<bool> {
    let progress = a.common.progress();
    let opts = BatchOptions {
        settings: a.settings.options(),
        version: a.version,
        only: a.only.clone(),
        exclude: a.exclude.clone(),
        force: a.force,
        dry_run: a.dry_run,
    };
    // The backend (GPU context or CPU thread pool) is opened once for the batch.
    let backend = a.common.backend(&progress)?;
    let outcomes = batch::run(backend.as_ref(), &a.logs, &opts, &progress)?;

    let w = outcomes
        .iter()
        .map(|o| o.experiment.len())
        .max()
        .unwrap_or(10)
        .max(10);
    println!(
        "{:w$}  {:>8}  {:>6}  {:>8}  status",
        "experiment", "rows", "nlist", "seconds"
    );
    for o in &outcomes {
        let status = match o.status {
            Status::Built => format!("built ({})", o.reason),
            Status::UpToDate => "up to date".into(),
            Status::WouldBuild => format!("would build ({})", o.reason),
            Status::Failed => format!("failed: {}", o.reason),
        };
        let opt = |v: Option<usize>| v.map_or("-".into(), |v| v.to_string());
        println!(
            "{:w$}  {:>8}  {:>6}  {:>8.2}  {status}",
            o.experiment,
            opt(o.rows),
            opt(o.nlist),
            o.seconds
        );
    }
    if let Some(path) = &a.json_out {
        let json =
            serde_json::to_vec_pretty(&outcomes).map_err(|e| Error::Invalid(e.to_string()))?;
        crate::io::write_atomic(path, |w| std::io::Write::write_all(w, &json))?;
    }
    if a.common.json {
        super::print_json(&outcomes)?;
    }
    Ok(outcomes.iter().all(|o| !matches!(o.status, Status::Failed)))
}
