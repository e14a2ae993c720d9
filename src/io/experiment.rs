//! The experiment folder (`logs/<exp>/`) of RVC or Applio, and the names
//! each project gives its index files ([`Layout`]).

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

/// Whose folder layout and file names `train` follows.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// RVC WebUI 20240604 (`infer-web.py`, `train_index`): features in
    /// `3_feature768/` or `3_feature256/`; writes `total_fea.npy`,
    /// `trained_…` and `added_IVF<n>_Flat_nprobe_1_<exp>_<ver>.index`.
    #[default]
    Rvc,
    /// RVC WebUI main branch (`train/train_index.py`): the same folders and
    /// index names, no `total_fea.npy`, and the log `train_index.log`.
    RvcMain,
    /// Applio (`rvc/train/process/extract_index.py`): features in
    /// `extracted/`; writes `<model>.index` only.
    Applio,
}

/// Applio's feature folder.
pub const APPLIO_FEATURES: &str = "extracted";
/// RVC main's log of the index step; its WebUI creates it (empty) before
/// starting the step, which is what tells its folders from 20240604's.
pub const RVC_MAIN_LOG: &str = "train_index.log";

impl Layout {
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Rvc => "rvc",
            Layout::RvcMain => "rvc-main",
            Layout::Applio => "applio",
        }
    }

    pub fn writes_total_fea(self) -> bool {
        self == Layout::Rvc
    }

    pub fn writes_trained(self) -> bool {
        self != Layout::Applio
    }

    /// The layout an RVC folder (`3_feature*/`) has: RVC main when its log
    /// is there, else 20240604.
    fn of_rvc_folder(dir: &Path) -> Layout {
        if dir.join(RVC_MAIN_LOG).is_file() {
            Layout::RvcMain
        } else {
            Layout::Rvc
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one experiment's features are, what its outputs are called and
/// where its index is linked.
#[derive(Clone, Debug)]
pub struct Experiment {
    pub dir: PathBuf,
    pub name: String,
    pub version: Version,
    pub feature_dir: PathBuf,
    pub layout: Layout,
    /// `--output`: the index file's name instead of the layout's.
    pub output: Option<String>,
    /// `--link`: the folder the index is linked into (RVC's
    /// `outside_index_root`).
    pub link_dir: Option<PathBuf>,
}

pub fn has_npy(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "npy"))
    })
}

/// Whether `dir` holds features of `layout` (for RVC's, in either version).
pub fn has_features(dir: &Path, layout: Layout) -> bool {
    match layout {
        Layout::Applio => has_npy(&dir.join(APPLIO_FEATURES)),
        Layout::Rvc | Layout::RvcMain => [Version::V2, Version::V1]
            .iter()
            .any(|v| has_npy(&dir.join(v.feature_folder()))),
    }
}

/// v1 when the first feature file (in read order) is 256 wide, else v2:
/// Applio keeps both widths in `extracted/`. A file that cannot be read is
/// reported later, when the features are loaded.
fn version_by_width(feature_dir: &Path) -> Version {
    let first = std::fs::read_dir(feature_dir).ok().and_then(|rd| {
        rd.flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "npy"))
            .min_by(|a, b| {
                let a = a.file_name().unwrap_or_default().as_encoded_bytes();
                let b = b.file_name().unwrap_or_default().as_encoded_bytes();
                a.cmp(b)
            })
    });
    match first.map(|p| crate::io::features::inspect_npy(&p)) {
        Some(Ok(f)) if f.cols == 256 => Version::V1,
        _ => Version::V2,
    }
}

/// `--output`: a `.index` file name inside the experiment folder.
pub fn check_output_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && !name.contains(['/', '\\'])
        && Path::new(name).file_name().is_some_and(|n| n == name);
    if !plain {
        return Err(Error::Invalid(format!(
            "--output takes a file name, written into the experiment folder; got {name:?}"
        )));
    }
    if name.starts_with('.') {
        return Err(Error::Invalid(format!(
            "--output {name:?}: names starting with a dot are kept for rvc-index's own files"
        )));
    }
    if !name.ends_with(".index") || name == ".index" {
        return Err(Error::Invalid(format!(
            "--output {name:?}: the name must end in .index (RVC and Applio list only .index files)"
        )));
    }
    Ok(())
}

impl Experiment {
    /// Resolve an experiment folder, its layout detected (see [`Experiment::open_layout`]).
    pub fn open(dir: &Path, version: Option<Version>, feature_dir: Option<&Path>) -> Result<Self> {
        Self::open_layout(dir, None, version, feature_dir)
    }

    /// Resolve an experiment folder. Without `layout` it is detected:
    /// `extracted/` holding `.npy` files is Applio's, `3_feature768/` or
    /// `3_feature256/` RVC's (RVC main's when `train_index.log` is there);
    /// both kinds of folder holding features is an error. For RVC's layouts
    /// `version` picks the feature folder; without it the one that holds
    /// `.npy` files is used (an error if both or neither do). Applio keeps
    /// both versions in `extracted/`: the width decides. `feature_dir`
    /// overrides the folder (then `version` defaults to the matching folder
    /// name, else v2, and a folder named `extracted` means Applio).
    pub fn open_layout(
        dir: &Path,
        layout: Option<Layout>,
        version: Option<Version>,
        feature_dir: Option<&Path>,
    ) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::bad_input(dir, "experiment folder not found"));
        }
        let name = std::fs::canonicalize(dir)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
            .ok_or_else(|| Error::bad_input(dir, "cannot tell the experiment name"))?;
        let layout = match (layout, feature_dir) {
            (Some(l), _) => l,
            (None, Some(fd)) if fd.file_name().is_some_and(|n| n == APPLIO_FEATURES) => {
                Layout::Applio
            }
            (None, Some(_)) => Layout::of_rvc_folder(dir),
            (None, None) => {
                match (
                    has_features(dir, Layout::Applio),
                    has_features(dir, Layout::Rvc),
                ) {
                    (true, false) => Layout::Applio,
                    (false, true) => Layout::of_rvc_folder(dir),
                    (true, true) => {
                        return Err(Error::bad_input(
                            dir,
                            "both extracted/ (Applio) and 3_feature768/ or 3_feature256/ (RVC) hold features; \
                             choose one with --layout applio|rvc|rvc-main",
                        ));
                    }
                    // `--version` names an RVC folder, which says what is wrong.
                    (false, false) if version.is_some() => Layout::of_rvc_folder(dir),
                    (false, false) => {
                        return Err(Error::bad_input(
                            dir,
                            "no features: neither extracted/ (Applio) nor 3_feature768/ or 3_feature256/ (RVC) \
                             holds .npy files (run feature extraction first)",
                        ));
                    }
                }
            }
        };
        let (version, feature_dir) = match (layout, version, feature_dir) {
            (Layout::Applio, v, fd) => {
                let fd = fd.map_or_else(|| dir.join(APPLIO_FEATURES), Path::to_path_buf);
                if !fd.is_dir() {
                    return Err(Error::bad_input(
                        &fd,
                        "feature folder not found (Applio keeps its features in extracted/; run feature extraction first)",
                    ));
                }
                (v.unwrap_or_else(|| version_by_width(&fd)), fd)
            }
            (_, v, Some(fd)) => {
                let v = v.unwrap_or_else(|| {
                    if fd.file_name().is_some_and(|n| n == "3_feature256") {
                        Version::V1
                    } else {
                        Version::V2
                    }
                });
                (v, fd.to_path_buf())
            }
            (_, Some(v), None) => (v, dir.join(v.feature_folder())),
            (_, None, None) => {
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
            layout,
            output: None,
            link_dir: None,
        })
    }

    /// Name the index `name` (checked: a `.index` file name) instead of the
    /// layout's name.
    pub fn with_output(mut self, name: Option<&str>) -> Result<Self> {
        if let Some(n) = name {
            check_output_name(n)?;
        }
        self.output = name.map(String::from);
        Ok(self)
    }

    /// Link the index into `dir` once it is committed.
    pub fn with_link(mut self, dir: Option<&Path>) -> Result<Self> {
        if dir.is_some_and(|d| d.as_os_str().is_empty()) {
            return Err(Error::Invalid(
                "--link needs a folder, not an empty path".into(),
            ));
        }
        self.link_dir = dir.map(Path::to_path_buf);
        Ok(self)
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

    /// The index inference loads: `--output`, else `<model>.index`
    /// (Applio) or `added_<kind>_nprobe_<p>_<exp>_<ver>.index` (RVC).
    pub fn added_path(&self, kind: &str, nprobe: usize) -> PathBuf {
        match (&self.output, self.layout) {
            (Some(n), _) => self.dir.join(n),
            (None, Layout::Applio) => self.dir.join(self.applio_name()),
            (None, _) => self.index_path_for("added", kind, nprobe),
        }
    }

    /// The trained (empty) index, for RVC's layouts.
    pub fn trained_path(&self, kind: &str, nprobe: usize) -> Option<PathBuf> {
        self.layout
            .writes_trained()
            .then(|| self.index_path_for("trained", kind, nprobe))
    }

    /// Applio's index name, `<model>.index`.
    pub fn applio_name(&self) -> String {
        format!("{}.index", self.name)
    }

    /// Where RVC 20240604 saves the shuffled rows (whatever the layout;
    /// never read back as features).
    pub fn total_fea_path(&self) -> PathBuf {
        self.dir.join("total_fea.npy")
    }

    /// RVC main's log, for that layout.
    pub fn log_path(&self) -> Option<PathBuf> {
        (self.layout == Layout::RvcMain).then(|| self.dir.join(RVC_MAIN_LOG))
    }

    /// The name of the link to the index `added` in `--link DIR`, as each
    /// project names it there: RVC main `<exp>_<added name>`, RVC 20240604
    /// `<exp>_<added name without "added_">`, Applio (which links nothing)
    /// the index name itself.
    pub fn link_name(&self, added: &Path) -> String {
        let n = added
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        match self.layout {
            Layout::RvcMain => format!("{}_{n}", self.name),
            Layout::Rvc => format!("{}_{}", self.name, n.strip_prefix("added_").unwrap_or(&n)),
            Layout::Applio => n,
        }
    }

    /// Where the link to `added` goes, with `--link`.
    pub fn link_path(&self, added: &Path) -> Option<PathBuf> {
        self.link_dir
            .as_ref()
            .map(|d| d.join(self.link_name(added)))
    }

    /// The index that `--skip-existing` finds: the `--output` file, Applio's
    /// `<model>.index`, or (RVC) the newest `added_…_<exp>_<ver>.index` of
    /// the folder; RVC main also looks for its link in `--link DIR`, as it
    /// does in `outside_index_root`.
    pub fn existing_index(&self) -> Option<PathBuf> {
        let file = |p: PathBuf| p.is_file().then_some(p);
        match (&self.output, self.layout) {
            (Some(n), _) => file(self.dir.join(n)),
            (None, Layout::Applio) => file(self.dir.join(self.applio_name())),
            (None, layout) => {
                let tail = format!("_{}_{}.index", self.name, self.version.as_str());
                let in_dir = newest(&self.dir, |n| {
                    n.starts_with("added_") && n.contains("_nprobe_") && n.ends_with(&tail)
                });
                let head = format!("{}_", self.name);
                in_dir.or_else(|| match (&self.link_dir, layout) {
                    (Some(d), Layout::RvcMain) => newest(d, |n| {
                        n.strip_prefix(&head).is_some_and(|r| r.contains("added_"))
                            && n.contains("_nprobe_")
                            && n.ends_with(&tail)
                    }),
                    _ => None,
                })
            }
        }
    }

    /// The feature files, never counting what `train` writes itself: with
    /// `--feature-dir` pointing at the experiment folder, `total_fea.npy`
    /// would otherwise be read back and the rows doubled on every rerun.
    pub fn feature_files(&self) -> Result<Vec<crate::io::features::NpyFile>> {
        crate::io::features::scan_dir_except(&self.feature_dir, &[self.total_fea_path()])
    }
}

/// The most recently modified regular file of `dir` whose name `matches`.
fn newest(dir: &Path, matches: impl Fn(&str) -> bool) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| matches(&e.file_name().to_string_lossy()))
        .filter_map(|e| {
            let m = std::fs::metadata(e.path()).ok()?;
            m.is_file().then(|| (m.modified().ok(), e.path()))
        })
        .max()
        .map(|(_, p)| p)
}
