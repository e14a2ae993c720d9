//! `train` for each project's layout (`io::experiment::Layout`): the skip
//! of `--skip-existing`, RVC main's `train_index.log`, the `--link` of the
//! committed index, and the outcome `train --json` prints.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::rvc::{self, TrainOptions, TrainSummary};
use crate::compute::Backend;
use crate::io::experiment::{Experiment, Layout};
use crate::io::link::{self, LinkKind};
use crate::progress::Progress;
use crate::{Error, Result};

/// What `train` did: built the index, or found it and left it (`--skip-existing`).
#[derive(Clone, Debug, serde::Serialize)]
#[serde(untagged)]
pub enum TrainOutcome {
    Built(Box<TrainSummary>),
    Skipped(Skipped),
}

/// `train --json` when `--skip-existing` found the index.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Skipped {
    pub experiment: String,
    pub layout: Layout,
    /// Always true here.
    pub skipped: bool,
    /// The index that was found (inference loads it).
    pub added_index: PathBuf,
    pub link: Option<PathBuf>,
    pub link_kind: Option<LinkKind>,
    pub log: Option<PathBuf>,
}

/// RVC main's `train_index.log`: emptied when a run starts, then one line
/// per stage, flushed at once (RVC main's WebUI shows the file while the
/// step runs), ending with the index written, the skip, or the error. Other
/// layouts have none, and every call does nothing.
pub struct RunLog {
    file: Option<File>,
}

impl RunLog {
    pub fn none() -> Self {
        RunLog { file: None }
    }

    /// Start the log of `exp`'s layout (emptying an older one).
    pub fn open(exp: &Experiment) -> Result<Self> {
        let Some(path) = exp.log_path() else {
            return Ok(Self::none());
        };
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(RunLog { file: Some(file) })
    }

    /// One line. A log that can no longer be written is not an error: the
    /// outputs, not the log, are what the run is for.
    pub fn line(&mut self, msg: &str) {
        if let Some(f) = &mut self.file
            && writeln!(f, "{msg}").and_then(|()| f.flush()).is_err()
        {
            self.file = None;
        }
    }

    pub fn failed(&mut self, e: &Error) {
        self.line(&format!("failed: {e}"));
    }
}

/// Train `exp` as its layout asks, holding its lock: with `skip_existing`,
/// an index already there (see `Experiment::existing_index`) is left as it
/// is (and linked, with `--link`), as RVC main and Applio do; else the
/// features are read, checked, indexed and committed (`rvc::build`).
pub fn train(
    backend: &dyn Backend,
    exp: &Experiment,
    opts: &TrainOptions,
    skip_existing: bool,
    progress: &Progress,
) -> Result<TrainOutcome> {
    match begin(exp, skip_existing, progress)? {
        Begun::Skipped(s) => Ok(TrainOutcome::Skipped(s)),
        Begun::Build(lock) => build_locked(backend, exp, opts, progress, &lock)
            .map(|s| TrainOutcome::Built(Box::new(s))),
    }
}

/// The first half of [`train`]: the lock, then the skip or not.
pub enum Begun {
    Skipped(Skipped),
    /// Build now ([`build_locked`]), holding this lock.
    Build(crate::io::FolderLock),
}

/// Take `exp`'s lock and, with `skip_existing`, skip it when its index
/// exists, before anything slow (such as opening a GPU) happens.
pub fn begin(exp: &Experiment, skip_existing: bool, progress: &Progress) -> Result<Begun> {
    let lock = rvc::lock_experiment(exp, progress)?;
    if skip_existing && let Some(found) = exp.existing_index() {
        return skip(exp, found, progress).map(Begun::Skipped);
    }
    Ok(Begun::Build(lock))
}

/// Read, check, index and commit `exp`, holding its `lock`, with RVC main's
/// log from the start (a bad input is logged too).
pub fn build_locked(
    backend: &dyn Backend,
    exp: &Experiment,
    opts: &TrainOptions,
    progress: &Progress,
    lock: &crate::io::FolderLock,
) -> Result<TrainSummary> {
    let mut log = RunLog::open(exp)?;
    log.line(&format!(
        "{}: indexing {} ({}, layout {}) from {}",
        super::manifest::tool_id(),
        exp.name,
        exp.version.as_str(),
        exp.layout,
        exp.feature_dir.display()
    ));
    let p = match rvc::prepare(exp, opts, progress) {
        Ok(p) => p,
        Err(e) => {
            log.failed(&e);
            return Err(e);
        }
    };
    rvc::build_logged(backend, p, opts, progress, lock, &mut log)
}

fn skip(exp: &Experiment, found: PathBuf, progress: &Progress) -> Result<Skipped> {
    let mut log = RunLog::open(exp)?;
    progress.info(&format!(
        "{}: the index exists; skipped (--skip-existing)",
        found.display()
    ));
    log.line(&format!(
        "skipped: the index exists: {}",
        found.file_name().unwrap_or_default().to_string_lossy()
    ));
    let link = exp
        .link_path(&found)
        .map(|l| std::path::absolute(&l).unwrap_or(l));
    let link_kind = match &link {
        Some(l) => Some(make_link(&found, l, &mut log).inspect_err(|e| log.failed(e))?),
        None => None,
    };
    let link = link.filter(|_| link_kind != Some(LinkKind::Inside));
    Ok(Skipped {
        experiment: exp.name.clone(),
        layout: exp.layout,
        skipped: true,
        added_index: found,
        link,
        link_kind,
        log: exp.log_path(),
    })
}

/// JSON `null` for an empty path (an output the layout does not write).
pub(crate) fn path_or_null<S: serde::Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    if p.as_os_str().is_empty() {
        s.serialize_none()
    } else {
        s.serialize_some(p)
    }
}

/// `--output` must not be the trained file's name, and `--link` must be a
/// folder (or not exist yet).
pub(crate) fn check_names(exp: &Experiment, stem: &str, nprobe: usize) -> Result<()> {
    if let (Some(o), Some(t)) = (&exp.output, exp.trained_path(stem, nprobe))
        && t.file_name().is_some_and(|n| n == o.as_str())
    {
        return Err(Error::Invalid(format!(
            "--output {o:?} is the name of the trained index this layout also writes"
        )));
    }
    if exp
        .link_dir
        .as_ref()
        .is_some_and(|d| d.as_os_str().is_empty())
    {
        return Err(Error::Invalid(
            "--link needs a folder, not an empty path".into(),
        ));
    }
    if let Some(d) = &exp.link_dir
        && d.symlink_metadata().is_ok()
        && !d.is_dir()
    {
        return Err(Error::bad_input(
            d,
            "--link needs a folder, and this is not one",
        ));
    }
    Ok(())
}

/// Where to link `index`: into `--link DIR`, else into the folder of the
/// previous run's link `prev` (see `manifest::previous_link`), else
/// nowhere. Absolute, as the manifest records it.
pub(crate) fn link_to_make(exp: &Experiment, index: &Path, prev: Option<&Path>) -> Option<PathBuf> {
    let link = exp
        .link_path(index)
        .or_else(|| Some(prev?.parent()?.join(exp.link_name(index))))?;
    Some(std::path::absolute(&link).unwrap_or(link))
}

/// Link the committed `index` at `link` (`--link`); a failure says that the
/// index itself is in place.
pub fn make_link(index: &Path, link: &Path, log: &mut RunLog) -> Result<LinkKind> {
    let dir = link.parent().unwrap_or(link);
    match link::link_index(index, link) {
        Ok(k) => {
            log.line(&match k {
                LinkKind::Inside => format!(
                    "the index is inside {} already; no link made",
                    dir.display()
                ),
                LinkKind::Existing => format!("the link is in place: {}", link.display()),
                LinkKind::Hard => format!("linked the index (hard link): {}", link.display()),
                LinkKind::Symbolic => {
                    format!("linked the index (symbolic link): {}", link.display())
                }
            });
            Ok(k)
        }
        Err(e) => Err(Error::Failed(format!(
            "{e} (the index itself is in place: {}; linking it into {} failed)",
            index.display(),
            dir.display()
        ))),
    }
}
