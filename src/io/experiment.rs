//! The RVC experiment folder (`logs/<exp>/`) and the file names RVC gives
//! its index files.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// RVC model version: v1 features are 256-wide, v2 768-wide.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

impl Version {
    pub fn feature_folder(self) -> &'static str {
        match self {
            Version::V1 => "3_feature256",
            Version::V2 => "3_feature768",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        }
    }
}

/// Where one experiment's features are and what its outputs are called.
#[derive(Clone, Debug)]
pub struct Experiment {
    pub dir: PathBuf,
    pub name: String,
    pub version: Version,
    pub feature_dir: PathBuf,
}

pub fn has_npy(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "npy"))
    })
}

impl Experiment {
    /// Resolve an experiment folder. `version` picks the feature folder; without
    /// it the one that holds `.npy` files is used (an error if both or neither do).
    /// `feature_dir` overrides the folder (then `version` defaults to the
    /// matching folder name, else v2).
    pub fn open(dir: &Path, version: Option<Version>, feature_dir: Option<&Path>) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::bad_input(dir, "experiment folder not found"));
        }
        let name = std::fs::canonicalize(dir)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .ok_or_else(|| Error::bad_input(dir, "cannot tell the experiment name"))?;
        let (version, feature_dir) = match (version, feature_dir) {
            (v, Some(fd)) => {
                let v = v.unwrap_or_else(|| {
                    if fd.file_name().is_some_and(|n| n == "3_feature256") {
                        Version::V1
                    } else {
                        Version::V2
                    }
                });
                (v, fd.to_path_buf())
            }
            (Some(v), None) => (v, dir.join(v.feature_folder())),
            (None, None) => {
                let v2 = dir.join(Version::V2.feature_folder());
                let v1 = dir.join(Version::V1.feature_folder());
                match (has_npy(&v2), has_npy(&v1)) {
                    (true, false) => (Version::V2, v2),
                    (false, true) => (Version::V1, v1),
                    (true, true) => {
                        return Err(Error::bad_input(
                            dir,
                            "both 3_feature768 and 3_feature256 hold features; choose one with --version v1|v2",
                        ));
                    }
                    (false, false) => {
                        return Err(Error::bad_input(
                            dir,
                            "no features: neither 3_feature768/ nor 3_feature256/ holds .npy files (run feature extraction first)",
                        ));
                    }
                }
            }
        };
        if !feature_dir.is_dir() {
            return Err(Error::bad_input(&feature_dir, "feature folder not found"));
        }
        Ok(Experiment {
            dir: dir.to_path_buf(),
            name,
            version,
            feature_dir,
        })
    }

    /// `IVF<n>_Flat_nprobe_<p>_<exp>_<ver>.index` with the given prefix
    /// (`trained` or `added`), exactly as RVC names it.
    pub fn index_path(&self, prefix: &str, nlist: usize, nprobe: usize) -> PathBuf {
        self.index_path_for(prefix, &format!("IVF{nlist}_Flat"), nprobe)
    }

    /// `<prefix>_<kind>_nprobe_<p>_<exp>_<ver>.index` for another index kind
    /// (see `Factory::file_stem`).
    pub fn index_path_for(&self, prefix: &str, kind: &str, nprobe: usize) -> PathBuf {
        self.dir.join(format!(
            "{prefix}_{kind}_nprobe_{nprobe}_{}_{}.index",
            self.name,
            self.version.as_str()
        ))
    }

    pub fn total_fea_path(&self) -> PathBuf {
        self.dir.join("total_fea.npy")
    }

    /// The feature files, never counting what `train` writes itself: with
    /// `--feature-dir` pointing at the experiment folder, `total_fea.npy`
    /// would otherwise be read back and the rows doubled on every rerun.
    pub fn feature_files(&self) -> Result<Vec<crate::io::features::NpyFile>> {
        crate::io::features::scan_dir_except(&self.feature_dir, &[self.total_fea_path()])
    }
}
