//! Re-index many experiments (`logs/*/`), skipping those whose index is up
//! to date, resumable after a crash.
//!
//! Each built experiment gets a manifest, `.rvc-index-manifest.json`, beside
//! its index: the settings, a fingerprint of every feature file (name, size,
//! modification time, BLAKE3 of the content) and the outputs with their
//! sizes. It is removed before a rebuild starts and written only after every
//! output is in place, so an interrupted build is never taken as up to date.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Instant, UNIX_EPOCH};

use crate::compute::Backend;
use crate::io::experiment::{Experiment, Version};
use crate::progress::Progress;
use crate::train::rvc::{self, TrainOptions, TrainSummary};
use crate::{Error, Result};

pub const MANIFEST: &str = ".rvc-index-manifest.json";

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputFile {
    pub name: String,
    pub size: u64,
    pub mtime_ns: u128,
    pub blake3: String,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputFile {
    pub name: String,
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub tool: String,
    pub settings: TrainOptions,
    pub version: Version,
    pub feature_dir: String,
    pub inputs: Vec<InputFile>,
    pub outputs: Vec<OutputFile>,
    pub rows: usize,
    pub nlist: usize,
}

fn tool_id() -> String {
    format!("rvc-index {}", env!("CARGO_PKG_VERSION"))
}

/// Feature files as (name, size, mtime) without hashing, in sorted order.
fn stat_inputs(feature_dir: &Path) -> Result<Vec<(String, PathBuf, u64, u128)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(feature_dir).map_err(|e| Error::io(feature_dir, e))? {
        let e = e.map_err(|e| Error::io(feature_dir, e))?;
        let p = e.path();
        if p.extension().is_none_or(|x| x != "npy") || !p.is_file() {
            continue;
        }
        let m = e.metadata().map_err(|e| Error::io(&p, e))?;
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        v.push((
            e.file_name().to_string_lossy().into_owned(),
            p,
            m.len(),
            mtime,
        ));
    }
    v.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(v)
}

fn hash_file(path: &Path) -> Result<String> {
    let mut h = blake3::Hasher::new();
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    h.update_reader(f).map_err(|e| Error::io(path, e))?;
    Ok(h.finalize().to_hex().to_string())
}

/// Fingerprint every feature file, content hash included.
pub fn fingerprint_inputs(feature_dir: &Path) -> Result<Vec<InputFile>> {
    stat_inputs(feature_dir)?
        .into_iter()
        .map(|(name, path, size, mtime_ns)| {
            Ok(InputFile {
                name,
                size,
                mtime_ns,
                blake3: hash_file(&path)?,
            })
        })
        .collect()
}

pub fn read_manifest(exp_dir: &Path) -> Option<Manifest> {
    let bytes = std::fs::read(exp_dir.join(MANIFEST)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_manifest(exp_dir: &Path, m: &Manifest) -> Result<()> {
    let path = exp_dir.join(MANIFEST);
    let json = serde_json::to_vec_pretty(m).map_err(|e| Error::Invalid(e.to_string()))?;
    crate::io::write_atomic(&path, |w| std::io::Write::write_all(w, &json))
}

/// Why an experiment must be (re)built, or `None` when its index is up to date.
/// A feature file whose size and time are unchanged is trusted; one whose
/// time changed is re-hashed, and an unchanged hash still counts as current.
pub fn stale_reason(exp: &Experiment, settings: &TrainOptions) -> Result<Option<String>> {
    let Some(m) = read_manifest(&exp.dir) else {
        return Ok(Some("not built yet".into()));
    };
    if m.tool != tool_id() {
        return Ok(Some(format!("built by {}", m.tool)));
    }
    if &m.settings != settings {
        return Ok(Some("settings changed".into()));
    }
    let fd = exp
        .feature_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    if m.version != exp.version || Some(&m.feature_dir) != fd.as_ref() {
        return Ok(Some("feature folder changed".into()));
    }
    let now = stat_inputs(&exp.feature_dir)?;
    if now.len() != m.inputs.len() || now.iter().zip(&m.inputs).any(|(a, b)| a.0 != b.name) {
        return Ok(Some("feature files added or removed".into()));
    }
    for ((name, path, size, mtime), old) in now.iter().zip(&m.inputs) {
        if *size != old.size {
            return Ok(Some(format!("{name} changed")));
        }
        if *mtime != old.mtime_ns && hash_file(path)? != old.blake3 {
            return Ok(Some(format!("{name} changed")));
        }
    }
    for o in &m.outputs {
        match std::fs::metadata(exp.dir.join(&o.name)) {
            Ok(md) if md.len() == o.size => {}
            _ => return Ok(Some(format!("{} missing or modified", o.name))),
        }
    }
    Ok(None)
}

/// Experiment folders directly under `root` that hold features, by name.
pub fn discover(root: &Path) -> Result<Vec<PathBuf>> {
    if !root.is_dir() {
        return Err(Error::bad_input(root, "folder not found"));
    }
    let mut v = Vec::new();
    for e in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let p = e.map_err(|e| Error::io(root, e))?.path();
        if p.is_dir()
            && [Version::V2, Version::V1]
                .iter()
                .any(|v| crate::io::experiment::has_npy(&p.join(v.feature_folder())))
        {
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
    pub version: Option<Version>,
    pub only: Vec<String>,
    pub exclude: Vec<String>,
    pub force: bool,
    pub dry_run: bool,
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
    let mut dirs = discover(root)?;
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
        let exp = match Experiment::open(d, opts.version, None) {
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
                let prepared = fingerprint_inputs(&exp.feature_dir).and_then(|fp| {
                    rvc::prepare(&exp, settings, &Progress::hidden()).map(|p| (fp, p))
                });
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
            let r = prepared.and_then(|(fp, p)| build_one(backend, exp, fp, p, settings, progress));
            let o = &mut outcomes[*slot];
            o.seconds = load_s + t.elapsed().as_secs_f64();
            match r {
                Ok(sum) => {
                    o.status = Status::Built;
                    o.reason = reason.clone();
                    o.rows = Some(sum.n);
                    o.nlist = Some(sum.nlist);
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

fn build_one(
    backend: &dyn Backend,
    exp: &Experiment,
    inputs: Vec<InputFile>,
    p: rvc::Prepared,
    settings: &TrainOptions,
    progress: &Progress,
) -> Result<TrainSummary> {
    let old = read_manifest(&exp.dir);
    let mpath = exp.dir.join(MANIFEST);
    if mpath.exists() {
        std::fs::remove_file(&mpath).map_err(|e| Error::io(&mpath, e))?;
    }
    remove_leftover_temps(&exp.dir);
    let sum = rvc::build(backend, p, settings, progress)?;
    let mut outputs = Vec::new();
    for path in [&sum.total_fea, &sum.trained_index, &sum.added_index] {
        let size = std::fs::metadata(path)
            .map_err(|e| Error::io(path, e))?
            .len();
        outputs.push(OutputFile {
            name: name_of(path),
            size,
        });
    }
    // Outputs of the previous settings (another nlist gives other names) go,
    // so no stale index stays beside the new one.
    for o in old.iter().flat_map(|m| &m.outputs) {
        if !outputs.iter().any(|n| n.name == o.name) {
            let _ = std::fs::remove_file(exp.dir.join(&o.name));
        }
    }
    crate::testing::pause_point("before-manifest");
    write_manifest(
        &exp.dir,
        &Manifest {
            tool: tool_id(),
            settings: settings.clone(),
            version: exp.version,
            feature_dir: name_of(&exp.feature_dir),
            inputs,
            outputs,
            rows: sum.n,
            nlist: sum.nlist,
        },
    )?;
    Ok(sum)
}

/// Temporary files of a killed earlier run (`write_atomic` names them
/// `.<output name>.<random>.tmp`); a clean exit never leaves any.
fn remove_leftover_temps(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = name.starts_with(".total_fea.npy.")
            || name.starts_with(".trained_IVF")
            || name.starts_with(".added_IVF")
            || name.starts_with(&format!("{MANIFEST}."));
        if ours && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}
