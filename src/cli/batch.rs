use std::path::PathBuf;

use std::io::Write;

use super::train::SettingsArgs;
use super::{CommonArgs, JsonArgs, VerboseArgs};
use crate::batch::{self, BatchOptions, Status};
use crate::io::experiment::{Layout, Version};
use crate::{Error, Result};

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  rvc-index batch logs/ --exclude mute\n\n\
Every folder under LOGS that holds 3_feature768/ or 3_feature256/ (RVC) or extracted/ \
(Applio) with .npy files is an experiment, built in its layout (see train --layout). Each built experiment records a manifest (.rvc-index-manifest.json) of its \
settings, feature files and outputs (names, sizes, modification times, content hashes); a \
later run skips experiments whose features and settings are unchanged and whose outputs are \
intact (a file whose time changed is re-hashed). A failed experiment is reported and the \
others go on; the exit code is 1 if any failed. Each experiment is built under a lock and its \
outputs are committed as one set, so runs may overlap (--shard spreads one logs/ folder over \
a job array) and an interrupted run resumes where it stopped.")]
pub struct BatchArgs {
    /// Folder of experiments, e.g. logs/.
    pub logs: PathBuf,
    /// Only these experiments (comma-separated folder names).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Skip these experiments (comma-separated folder names).
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Only a stable share of the experiments: the I-th of every N in name
    /// order (1 <= I <= N), for a job array sharing one logs/ folder, e.g.
    /// `--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT`. Overlapping
    /// shards are safe: each experiment is built under its own lock.
    #[arg(long, value_name = "I/N", value_parser = batch::parse_shard)]
    pub shard: Option<(usize, usize)>,
    /// Rebuild even when up to date.
    #[arg(long)]
    pub force: bool,
    /// Only say what would be built, and why.
    #[arg(long)]
    pub dry_run: bool,
    /// Feature version for every experiment (needed where both feature folders exist).
    #[arg(long, value_enum)]
    pub version: Option<Version>,
    /// Layout of every experiment (see `train --layout`); only folders with
    /// features of that layout are experiments then. Default: detected per
    /// experiment.
    #[arg(long, value_enum)]
    pub layout: Option<Layout>,
    /// The same as `--json=FILE` (kept for older scripts).
    #[arg(
        long = "json-out",
        value_name = "FILE",
        hide = true,
        conflicts_with = "json"
    )]
    pub json_out: Option<PathBuf>,
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub verbose: VerboseArgs,
    #[command(flatten)]
    pub json: JsonArgs,
}

pub fn run(a: &BatchArgs) -> Result<()> {
    let json = match &a.json_out {
        Some(p) => JsonArgs {
            json: Some(p.clone()),
        },
        None => a.json.clone(),
    };
    json.check()?;
    let progress = a.common.progress(&a.verbose);
    let opts = BatchOptions {
        settings: a.settings.options()?,
        layout: a.layout,
        version: a.version,
        only: a.only.clone(),
        exclude: a.exclude.clone(),
        force: a.force,
        dry_run: a.dry_run,
        shard: a.shard,
    };
    // The backend (GPU context or CPU thread pool) is opened once for the batch.
    let backend = a.common.backend(&progress)?;
    let outcomes = batch::run(backend.as_ref(), &a.logs, &opts, &progress)?;

    let mut out = json.text();
    // A closed pipe (`| head`) ends the table, not the command.
    let _ = print_table(&outcomes, &mut out);
    json.emit(&outcomes)?;
    let failed = outcomes
        .iter()
        .filter(|o| matches!(o.status, Status::Failed))
        .count();
    if failed > 0 {
        return Err(Error::Failed(format!(
            "{failed} of {} experiments failed (see the table)",
            outcomes.len()
        )));
    }
    Ok(())
}

fn print_table(outcomes: &[batch::Outcome], out: &mut dyn Write) -> std::io::Result<()> {
    let w = outcomes
        .iter()
        .map(|o| o.experiment.len())
        .max()
        .unwrap_or(10)
        .max(10);
    writeln!(
        out,
        "{:w$}  {:>8}  {:>6}  {:>8}  status",
        "experiment", "rows", "nlist", "seconds"
    )?;
    for o in outcomes {
        let status = match o.status {
            Status::Built => format!("built ({})", o.reason),
            Status::UpToDate => "up to date".into(),
            Status::WouldBuild => format!("would build ({})", o.reason),
            Status::Failed => format!("failed: {}", o.reason),
        };
        let opt = |v: Option<usize>| v.map_or("-".into(), |v| v.to_string());
        writeln!(
            out,
            "{:w$}  {:>8}  {:>6}  {:>8.2}  {status}",
            o.experiment,
            opt(o.rows),
            opt(o.nlist),
            o.seconds
        )?;
    }
    out.flush()
}
