//! The manifest of an experiment's outputs, `.rvc-index-manifest.json`:
//! the settings, a fingerprint of every feature file and of every output
//! (name, size, modification time, BLAKE3 of the content), the row and list
//! counts. `train` commits it last, with its outputs, as one set
//! (`io::OutputSet`), so a manifest always describes whole files; `batch`
//! reads it to skip experiments that are up to date, and the next `train`
//! reads it to remove outputs of older settings (another nlist gives other
//! file names) that the new set does not replace.

use std::path::{Path, PathBuf};

use crate::io::experiment::{Experiment, Layout, Version};
use crate::io::{self, Fingerprint};
use crate::train::rvc::TrainOptions;
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
    // Not `#[serde(flatten)]`: flattened maps cannot carry the u128 time.
    pub fingerprint: Fingerprint,
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
    /// Manifests written before layouts existed are RVC's.
    #[serde(default)]
    pub layout: Layout,
    /// The name of the index inference loads (one of `outputs`).
    #[serde(default)]
    pub index: Option<String>,
    /// Where `--link` linked it (the link is made after the commit).
    #[serde(default)]
    pub link: Option<PathBuf>,
}

pub fn tool_id() -> String {
    format!("rvc-index {}", env!("CARGO_PKG_VERSION"))
}

fn name_of(p: &Path) -> String {
    p.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Whether `name` is one of RVC's output names (`total_fea.npy`,
/// `trained_….index`, `added_….index`) or the manifest.
pub fn is_rvc_output_name(name: &str) -> bool {
    name == "total_fea.npy"
        || name == MANIFEST
        || ((name.starts_with("trained_") || name.starts_with("added_"))
            && name.ends_with(".index"))
}

/// Whether `name` is a file `train` writes into `exp`'s folder (its
/// leftover temporary files are then ours to remove): RVC's names in every
/// layout (a folder may change layout), Applio's `<model>.index` in
/// Applio's, and the `--output` name.
pub fn is_output_name(exp: &Experiment, name: &str) -> bool {
    is_rvc_output_name(name)
        || exp.output.as_deref() == Some(name)
        || (exp.layout == Layout::Applio && name == exp.applio_name())
}

/// The feature files `train` reads, as (name, path, size, mtime) without
/// hashing, in the order it reads them.
fn stat_inputs(exp: &Experiment) -> Result<Vec<(String, PathBuf, u64, u128)>> {
    exp.feature_files()?
        .into_iter()
        .map(|f| {
            let (size, mtime) = io::outputs::stat(&f.path)?;
            Ok((name_of(&f.path), f.path, size, mtime))
        })
        .collect()
}

/// Fingerprint every feature file, content hash included.
pub fn fingerprint_inputs(exp: &Experiment) -> Result<Vec<InputFile>> {
    stat_inputs(exp)?
        .into_iter()
        .map(|(name, path, size, mtime_ns)| {
            Ok(InputFile {
                name,
                size,
                mtime_ns,
                blake3: io::outputs::hash_file(&path)?,
            })
        })
        .collect()
}

pub fn read_manifest(exp_dir: &Path) -> Option<Manifest> {
    let bytes = std::fs::read(exp_dir.join(MANIFEST)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What a set's manifest records besides the settings and the outputs.
pub struct SetFacts<'a> {
    pub inputs: Vec<InputFile>,
    pub rows: usize,
    pub nlist: usize,
    /// The index inference loads.
    pub index: &'a Path,
    /// Where it is linked, once the set is committed.
    pub link: Option<PathBuf>,
}

/// Stage the manifest of a set whose other files are staged in `set` already.
pub fn stage_manifest(
    set: &mut io::OutputSet,
    exp: &Experiment,
    settings: &TrainOptions,
    facts: SetFacts,
) -> Result<()> {
    let SetFacts {
        inputs,
        rows,
        nlist,
        index,
        link,
    } = facts;
    let outputs = set
        .fingerprints()?
        .into_iter()
        .map(|(path, fingerprint)| OutputFile {
            name: name_of(&path),
            fingerprint,
        })
        .collect();
    let m = Manifest {
        tool: tool_id(),
        settings: settings.clone(),
        version: exp.version,
        feature_dir: name_of(&exp.feature_dir),
        inputs,
        outputs,
        rows,
        nlist,
        layout: exp.layout,
        index: Some(name_of(index)),
        link,
    };
    let json = serde_json::to_vec_pretty(&m).map_err(|e| Error::Invalid(e.to_string()))?;
    set.stage(&exp.dir.join(MANIFEST), |w| {
        std::io::Write::write_all(w, &json)
    })
}

/// Why an experiment must be (re)built, or `None` when its outputs are up to
/// date. A file whose size and time are unchanged is trusted; one whose time
/// changed is re-hashed, and an unchanged hash still counts as current.
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
    if m.layout != exp.layout {
        return Ok(Some(format!(
            "layout changed ({} to {})",
            m.layout, exp.layout
        )));
    }
    if m.version != exp.version || m.feature_dir != name_of(&exp.feature_dir) {
        return Ok(Some("feature folder changed".into()));
    }
    let now = stat_inputs(exp)?;
    if now.len() != m.inputs.len() || now.iter().zip(&m.inputs).any(|(a, b)| a.0 != b.name) {
        return Ok(Some("feature files added or removed".into()));
    }
    for ((name, path, size, mtime), old) in now.iter().zip(&m.inputs) {
        if *size != old.size {
            return Ok(Some(format!("{name} changed")));
        }
        if *mtime != old.mtime_ns && io::outputs::hash_file(path)? != old.blake3 {
            return Ok(Some(format!("{name} changed")));
        }
    }
    for o in &m.outputs {
        if o.name == MANIFEST {
            continue;
        }
        if !io::outputs::unchanged(&exp.dir.join(&o.name), &o.fingerprint)? {
            return Ok(Some(format!("{} missing or modified", o.name)));
        }
    }
    Ok(None)
}

/// Outputs of the previous set, to remove with the commit of a new one
/// (which keeps those it replaces): those with one of this layout's names,
/// and those of another name (another `--output` or layout) that are still
/// as the previous run wrote them.
pub fn previous_outputs(exp: &Experiment) -> Vec<PathBuf> {
    read_manifest(&exp.dir)
        .map(|m| {
            m.outputs
                .into_iter()
                .filter(|o| {
                    is_output_name(exp, &o.name)
                        || io::outputs::unchanged(&exp.dir.join(&o.name), &o.fingerprint)
                            .unwrap_or(false)
                })
                .map(|o| exp.dir.join(o.name))
                .collect()
        })
        .unwrap_or_default()
}

/// The previous set's link and the index it pointed to, when the link
/// still points to that index (a link the user replaced is left alone).
pub fn previous_link(exp: &Experiment) -> Option<PathBuf> {
    let m = read_manifest(&exp.dir)?;
    let (link, index) = (m.link?, exp.dir.join(m.index?));
    same_file::is_same_file(&link, &index)
        .unwrap_or(false)
        .then_some(link)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experiment(layout: Layout, output: Option<&str>) -> Experiment {
        Experiment {
            dir: PathBuf::from("logs/voice"),
            name: "voice".into(),
            version: Version::V2,
            feature_dir: PathBuf::from("logs/voice/extracted"),
            layout,
            output: output.map(String::from),
            link_dir: None,
        }
    }

    #[test]
    fn output_names() {
        for layout in [Layout::Rvc, Layout::RvcMain, Layout::Applio] {
            let exp = experiment(layout, None);
            for n in [
                "total_fea.npy",
                MANIFEST,
                "added_IVF256_Flat_nprobe_1_voice_v2.index",
                "trained_IVF4_PQ8x4fs_RFlat_nprobe_3_a_b_v1.index",
            ] {
                assert!(is_output_name(&exp, n), "{layout} {n}");
            }
            for n in [
                "G_2333.pth",
                "0_0.npy",
                "added_x.npy",
                "total_fea.npy.bak",
                "train_index.log",
                "other.index",
                "my.index",
            ] {
                assert!(!is_output_name(&exp, n), "{layout} {n}");
            }
            assert_eq!(
                is_output_name(&exp, "voice.index"),
                layout == Layout::Applio,
                "{layout}"
            );
            assert!(is_output_name(
                &experiment(layout, Some("my.index")),
                "my.index"
            ));
        }
    }
}
