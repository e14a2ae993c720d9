//! Re-index many experiments (`logs/*/`), skipping those whose index is up
//! to date, resumable after a crash.
//!
//! `train` commits a manifest (`train::manifest`) with every experiment's
//! outputs: the settings and fingerprints of the feature files and of the
//! outputs. An experiment is up to date when its manifest matches the
//! settings, the features and the outputs on disk. Each experiment is built
//! under its lock, so two runs over one `logs/` folder never interleave.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use crate::compute::Backend;
use crate::io::experiment::{Experiment, Layout, Version, has_features};
use crate::progress::Progress;
use crate::train::manifest::{read_manifest, stale_reason};
use crate::train::rvc::{self, TrainOptions, TrainSummary};
use crate::{Error, Result};

/// Experiment folders directly under `root` that hold features, by name:
/// RVC's (`3_feature768/`, `3_feature256/`) and Applio's (`extracted/`), or
/// only those of `layout`.
pub fn discover(root: &Path, layout: Option<Layout>) -> Result<Vec<PathBuf>> {
    if !root.is_dir() {
        return Err(Error::bad_input(root, "folder not found"));
    }
    let mut v = Vec::new();
    for e in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let p = e.map_err(|e| Error::io(root, e))?.path();
        let layouts = match layout {
            Some(l) => vec![l],
            None => vec![Layout::Rvc, Layout::Applio],
        };
        if p.is_dir() && layouts.into_iter().any(|l| has_features(&p, l)) {
            v.push(p);
        }
    }
    v.sort_by(|a, b| {
        a.as_os_str()
            .as_encoded_bytes()
            .cmp(b.as_os_str().as_encoded_bytes())
    });
    Ok(v)
}

#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Built,
    UpToDate,
    WouldBuild,
    Failed,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Outcome {
    pub experiment: String,
    pub status: Status,
    /// Why it was built, or what failed.
    pub reason: String,
    pub rows: Option<usize>,
    pub nlist: Option<usize>,
    pub seconds: f64,
}

pub struct BatchOptions {
    pub settings: TrainOptions,
    /// Every experiment's layout; `None`: detected per experiment.
    pub layout: Option<Layout>,
    pub version: Option<Version>,
    pub only: Vec<String>,
    pub exclude: Vec<String>,
    pub force: bool,
    pub dry_run: bool,
    /// `(i, n)`: only the experiments at positions `i - 1`, `i - 1 + n`, …
    /// of the name-sorted list (after `only` and `exclude`), `1 ≤ i ≤ n`.
    pub shard: Option<(usize, usize)>,
}

/// Parse `I/N` (`1 ≤ I ≤ N`).
pub fn parse_shard(s: &str) -> std::result::Result<(usize, usize), String> {
    let bad = || format!("expected I/N with 1 <= I <= N, e.g. 1/4, got {s:?}");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if i == 0 || i > n {
        return Err(bad());
    }
    Ok((i, n))
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Index every experiment under `root`. One experiment's failure is recorded
/// and the rest go on. The next experiment's features load on a second thread
/// while the current one trains.
pub fn run(
    backend: &dyn Backend,
    root: &Path,
    opts: &BatchOptions,
    progress: &Progress,
) -> Result<Vec<Outcome>> {
    let mut dirs = discover(root, opts.layout)?;
    for n in &opts.only {
        if !dirs.iter().any(|d| &name_of(d) == n) {
            return Err(Error::bad_input(
                root.join(n),
                "--only names no experiment with features",
            ));
        }
    }
    dirs.retain(|d| {
        let n = name_of(d);
        (opts.only.is_empty() || opts.only.contains(&n)) && !opts.exclude.contains(&n)
    });
    if let Some((i, n)) = opts.shard {
        dirs = dirs
            .into_iter()
            .enumerate()
            .filter(|(j, _)| j % n == i - 1)
            .map(|(_, d)| d)
            .collect();
    }

    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut todo: Vec<(usize, Experiment, String)> = Vec::new();
    for d in &dirs {
        let name = name_of(d);
        let failed = |e: Error| Outcome {
            experiment: name.clone(),
            status: Status::Failed,
            reason: e.to_string(),
            rows: None,
            nlist: None,
            seconds: 0.0,
        };
        let exp = match Experiment::open_layout(d, opts.layout, opts.version, None) {
            Ok(e) => e,
            Err(e) => {
                outcomes.push(failed(e));
                continue;
            }
        };
        let reason = if opts.force {
            Some("--force".to_string())
        } else {
            match stale_reason(&exp, &opts.settings) {
                Ok(r) => r,
                Err(e) => {
                    outcomes.push(failed(e));
                    continue;
                }
            }
        };
        let m = read_manifest(d);
        match reason {
            None => outcomes.push(Outcome {
                experiment: name,
                status: Status::UpToDate,
                reason: String::new(),
                rows: m.as_ref().map(|m| m.rows),
                nlist: m.as_ref().map(|m| m.nlist),
                seconds: 0.0,
            }),
            Some(r) if opts.dry_run => outcomes.push(Outcome {
                experiment: name,
                status: Status::WouldBuild,
                reason: r,
                rows: None,
                nlist: None,
                seconds: 0.0,
            }),
            Some(r) => {
                outcomes.push(Outcome {
                    experiment: name,
                    status: Status::Failed,
                    reason: "not run".into(),
                    rows: None,
                    nlist: None,
                    seconds: 0.0,
                });
                todo.push((outcomes.len() - 1, exp, r));
            }
        }
    }

    let total = todo.len();
    std::thread::scope(|s| {
        // Rendezvous channel: the loader holds at most one prepared experiment
        // while the current one trains, so at most two matrices are in memory.
        let (tx, rx) = mpsc::sync_channel(0);
        let settings = &opts.settings;
        let jobs: Vec<Experiment> = todo.iter().map(|t| t.1.clone()).collect();
        s.spawn(move || {
            for exp in jobs {
                let t = Instant::now();
                let prepared = rvc::prepare(&exp, settings, &Progress::hidden());
                if tx.send((prepared, t.elapsed().as_secs_f64())).is_err() {
                    break;
                }
            }
        });
        for (i, (slot, exp, reason)) in todo.iter().enumerate() {
            let (prepared, load_s) = rx.recv().expect("one result per experiment");
            progress.info(&format!(
                "[{}/{total}] {}: building ({reason})",
                i + 1,
                exp.name
            ));
            let t = Instant::now();
            let r =
                prepared.and_then(|p| build_one(backend, exp, p, settings, opts.force, progress));
            let o = &mut outcomes[*slot];
            o.seconds = load_s + t.elapsed().as_secs_f64();
            match r {
                Ok(Some(sum)) => {
                    o.status = Status::Built;
                    o.reason = reason.clone();
                    o.rows = Some(sum.n);
                    o.nlist = Some(sum.nlist);
                }
                Ok(None) => {
                    let m = read_manifest(&exp.dir);
                    o.status = Status::UpToDate;
                    o.reason = "built meanwhile by another run".into();
                    o.rows = m.as_ref().map(|m| m.rows);
                    o.nlist = m.as_ref().map(|m| m.nlist);
                }
                Err(e) => {
                    progress.warn(&format!("{}: {e}", exp.name));
                    o.reason = e.to_string();
                }
            }
        }
    });
    Ok(outcomes)
}

/// Build one experiment under its lock. Another run may have built it while
/// this one waited for the lock: then it is up to date and left alone.
fn build_one(
    backend: &dyn Backend,
    exp: &Experiment,
    p: rvc::Prepared,
    settings: &TrainOptions,
    force: bool,
    progress: &Progress,
) -> Result<Option<TrainSummary>> {
    let lock = rvc::lock_experiment(exp, progress)?;
    if !force && stale_reason(exp, settings)?.is_none() {
        return Ok(None);
    }
    rvc::build(backend, p, settings, progress, &lock).map(Some)
}

#[cfg(test)]
mod tests {
    #[test]
    fn shard_syntax() {
        assert_eq!(super::parse_shard("1/4"), Ok((1, 4)));
        assert_eq!(super::parse_shard("4/4"), Ok((4, 4)));
        for bad in ["0/4", "5/4", "1", "a/b", "1/0", "-1/3"] {
            assert!(super::parse_shard(bad).is_err(), "{bad}");
        }
    }
}
