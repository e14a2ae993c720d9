//! `rvc-index bench`: the stages of RVC's index pipeline (load, compress,
//! train, add, search, refine, expand), each timed on one backend, with the
//! figures the faiss baseline harness (`faiss_baseline.py`) reports for the
//! same stages, so that the two can be set side by side.
//!
//! Every backend call returns host data, so a stage's time includes the GPU's
//! final readback: no stage stops its clock on a mere submit.

mod assign_stage;
mod pipeline;
pub mod plot;
mod recall_table;
mod report;
pub mod suite;

pub use pipeline::run;
pub use recall_table::{print_recall_table, recall_series};
pub use report::{Recall, Report, Stage, print_table};

use std::path::PathBuf;

use crate::index::Factory;
use crate::index::factory::{Codec, Nlist};
use crate::qe::QeParams;
use crate::train::minibatch::Compress;
use crate::{Error, Result};

/// Where the rows come from.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataSource {
    /// An experiment folder (`logs/<exp>`), a folder of `.npy` files or one `.npy` file.
    Path(PathBuf),
    /// The harness's synthetic generator.
    Synthetic { n: usize, d: usize, seed: u64 },
}

impl DataSource {
    /// `N,D[,SEED]`.
    pub fn parse_synthetic(s: &str, default_seed: u64) -> Result<Self> {
        let bad = || Error::Invalid(format!("--synthetic {s:?}: expected N,D or N,D,SEED"));
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad());
        }
        let n: usize = parts[0].parse().map_err(|_| bad())?;
        let d: usize = parts[1].parse().map_err(|_| bad())?;
        let seed = match parts.get(2) {
            Some(p) => p.parse().map_err(|_| bad())?,
            None => default_seed,
        };
        if n == 0 || d == 0 {
            return Err(bad());
        }
        if d > crate::io::features::MAX_DIM {
            return Err(Error::Invalid(format!(
                "--synthetic {s:?}: at most {} columns are supported",
                crate::io::features::MAX_DIM
            )));
        }
        let bytes = (n as u128).checked_mul(d as u128).map(|v| v * 4);
        crate::limits::check_fits(
            &format!("--synthetic {n},{d} ({n} rows of {d} float32)"),
            bytes,
        )?;
        Ok(DataSource::Synthetic { n, d, seed })
    }
}

/// Stages that can be left out; load (and compression where it applies) always run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct StageSet {
    /// The assignment kernel alone (`--assign-k`); not implied by the others.
    pub assign: bool,
    pub train: bool,
    pub add: bool,
    pub search: bool,
    pub expand: bool,
}

impl StageSet {
    /// Every stage of the pipeline (the assign stage stands apart: it is
    /// only run when asked for).
    pub const ALL: StageSet = StageSet {
        assign: false,
        train: true,
        add: true,
        search: true,
        expand: true,
    };

    /// A comma-separated subset of `assign,train,add,search,expand`; as in
    /// the harness, search implies add and add implies train.
    pub fn parse(s: &str) -> Result<Self> {
        let mut set = StageSet {
            assign: false,
            train: false,
            add: false,
            search: false,
            expand: false,
        };
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p {
                "assign" => set.assign = true,
                "train" => set.train = true,
                "add" => set.add = true,
                "search" => set.search = true,
                "expand" | "qe" => set.expand = true,
                "load" | "compress" => {}
                _ => {
                    return Err(Error::Invalid(format!(
                        "--stages: unknown stage {p:?} (choose from load, compress, assign, train, add, search, expand)"
                    )));
                }
            }
        }
        set.add |= set.search;
        set.train |= set.add;
        Ok(set)
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchConfig {
    pub data: DataSource,
    /// Index kinds to build; empty: `default_factories(d)`.
    pub factories: Vec<Factory>,
    pub nprobe: Vec<usize>,
    pub k: usize,
    /// Query rows (with `Path` data at most a tenth of the rows are held out).
    pub queries: usize,
    /// Times each stage runs; min and median are reported.
    pub repeat: usize,
    /// Expand only the first rows (the neighbour search still covers all rows).
    pub qe_rows: Option<usize>,
    pub qe: QeParams,
    /// Seed of the row shuffle (and of the compression), as `train --seed`.
    pub seed: u64,
    pub compress: Compress,
    pub stages: StageSet,
    /// `--recall R`: run `train --recall`'s measurement on every IVF index
    /// built and also search at the nprobe it chooses.
    pub recall: Option<f64>,
    /// Centroid counts of the assign stage; empty: RVC's list count for the rows.
    pub assign_k: Vec<usize>,
}

impl BenchConfig {
    pub fn new(data: DataSource) -> Self {
        BenchConfig {
            data,
            factories: Vec::new(),
            nprobe: vec![1, 4, 16],
            k: 8,
            queries: 10_000,
            repeat: 1,
            qe_rows: None,
            qe: QeParams::default(),
            seed: 0,
            compress: Compress::Auto,
            stages: StageSet::ALL,
            recall: None,
            assign_k: Vec::new(),
        }
    }

    pub fn check(&self) -> Result<()> {
        if self.k == 0 {
            return Err(Error::Invalid("-k must be at least 1".into()));
        }
        if self.repeat == 0 {
            return Err(Error::Invalid("--repeat must be at least 1".into()));
        }
        if self.queries == 0 {
            return Err(Error::Invalid("--queries must be at least 1".into()));
        }
        if self.nprobe.is_empty() || self.nprobe.contains(&0) {
            return Err(Error::Invalid(
                "--nprobe needs one or more positive numbers".into(),
            ));
        }
        if self.assign_k.contains(&0) {
            return Err(Error::Invalid("--assign-k needs positive numbers".into()));
        }
        if self.qe_rows == Some(0) {
            return Err(Error::Invalid("--qe-rows must be at least 1".into()));
        }
        self.qe.check()
    }
}

/// RVC's `IVF{auto},Flat` and the harness's variant `IVF{nlist},PQ{D/2}x4fs,RFlat`
/// (the same list count; M the largest divisor of D not above D/2).
pub fn default_factories(d: usize) -> Vec<Factory> {
    let m = (1..=(d / 2).max(1))
        .rev()
        .find(|m| d.is_multiple_of(*m))
        .unwrap_or(1);
    vec![
        Factory::rvc(),
        Factory::Ivf {
            nlist: Nlist::Auto,
            codec: Codec::Pq4FastScan { m },
            refine: true,
        },
    ]
}

/// Peak resident memory of this process (`VmHWM`), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Start a new peak-memory window (Linux: `clear_refs` 5 resets `VmHWM`).
/// Returns false where the peak cannot be reset; it then runs from the start.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Minimum and median (mean of the middle two for an even count).
pub fn min_median(times: &[f64]) -> (f64, f64) {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    let n = t.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let med = if n % 2 == 1 {
        t[n / 2]
    } else {
        0.5 * (t[n / 2 - 1] + t[n / 2])
    };
    (t[0], med)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_median_odd_and_even() {
        assert_eq!(min_median(&[3.0, 1.0, 2.0]), (1.0, 2.0));
        assert_eq!(min_median(&[4.0, 1.0, 2.0, 3.0]), (1.0, 2.5));
    }

    #[test]
    fn stages_imply_their_dependencies() {
        let s = StageSet::parse("search").unwrap();
        assert!(s.train && s.add && s.search && !s.expand);
        assert!(StageSet::parse("bogus").is_err());
    }

    #[test]
    fn synthetic_spec() {
        match DataSource::parse_synthetic("1000,64", 7).unwrap() {
            DataSource::Synthetic { n, d, seed } => assert_eq!((n, d, seed), (1000, 64, 7)),
            _ => unreachable!(),
        }
        assert!(DataSource::parse_synthetic("1000", 0).is_err());
        assert!(DataSource::parse_synthetic("0,5", 0).is_err());
    }

    #[test]
    fn default_pq_m_divides_d() {
        for d in [768, 256, 7, 1, 30] {
            if let Factory::Ivf {
                codec: Codec::Pq4FastScan { m },
                ..
            } = default_factories(d)[1]
            {
                assert_eq!(d % m, 0);
                assert!(m <= d.div_ceil(2).max(1));
            }
        }
    }
}
