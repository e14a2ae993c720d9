//! Flags more than one subcommand takes, each defined once: the backend and
//! `-q` ([`CommonArgs`]), `--json[=OUT]` ([`JsonArgs`]), `-v` on the
//! commands that run k-means ([`VerboseArgs`]) and the α-query expansion
//! settings ([`QeArgs`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::compute::{self, Backend, DeviceChoice};
use crate::progress::Progress;
use crate::qe::QeParams;
use crate::{Error, Result};

/// Flags every subcommand that computes takes.
#[derive(clap::Args, Clone, Debug)]
pub struct CommonArgs {
    /// Where the arithmetic runs: `auto` takes a real GPU when there is one
    /// (Vulkan, Metal, DX12), else the CPU; `gpu` also accepts software
    /// adapters such as lavapipe (slow, for testing).
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// No progress bars or status lines (warnings and errors still print).
    #[arg(short, long)]
    pub quiet: bool,
}

impl CommonArgs {
    pub fn progress(&self, verbose: &VerboseArgs) -> Progress {
        Progress::new(self.quiet, verbose.verbose)
    }

    /// Open the backend and say which one was chosen.
    pub fn backend(&self, progress: &Progress) -> Result<Box<dyn Backend>> {
        let b = compute::select_backend(self.device)?;
        let info = b.info();
        if info.kind == "gpu" {
            progress.info(&format!(
                "device: gpu ({}, {}, {})",
                info.name, info.device_type, info.api
            ));
        } else {
            progress.info(&format!("device: cpu ({})", info.name));
        }
        Ok(b)
    }
}

/// `-v`, taken only by the commands that run k-means.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct VerboseArgs {
    /// Also print per-iteration k-means statistics.
    #[arg(short, long)]
    pub verbose: bool,
}

/// `--json[=OUT]`: the machine-readable summary, on stdout or in a file.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct JsonArgs {
    /// Print a machine-readable JSON summary on stdout (`--json`; what is
    /// otherwise printed there then goes to stderr), or write it to the
    /// file OUT (`--json=OUT`, whole or not at all).
    #[arg(
        long,
        value_name = "OUT",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "-"
    )]
    pub json: Option<PathBuf>,
}

impl JsonArgs {
    /// The JSON goes to stdout.
    pub fn to_stdout(&self) -> bool {
        self.json.as_deref().is_some_and(|p| p == Path::new("-"))
    }

    /// A JSON file that cannot be written is found before any work is done:
    /// its folder must exist and it must not be a folder itself.
    pub fn check(&self) -> Result<()> {
        let Some(out) = self.json.as_deref().filter(|_| !self.to_stdout()) else {
            return Ok(());
        };
        if out.as_os_str().is_empty() {
            return Err(Error::Invalid("--json=: the file name is empty".into()));
        }
        if out.is_dir() {
            return Err(Error::bad_input(out, "--json names a folder, not a file"));
        }
        let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
        if parent.is_some_and(|p| !p.is_dir()) {
            return Err(Error::bad_input(out, "--json: the folder does not exist"));
        }
        Ok(())
    }

    /// Where the human-readable result (a table, a listing) goes: stdout,
    /// or stderr when the JSON takes stdout.
    pub fn text(&self) -> Box<dyn Write> {
        if self.to_stdout() {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        }
    }

    /// Write `v` where `--json` says, if it was given.
    pub fn emit(&self, v: &impl serde::Serialize) -> Result<()> {
        let Some(out) = &self.json else {
            return Ok(());
        };
        let mut s = serde_json::to_string_pretty(v).map_err(|e| Error::Invalid(e.to_string()))?;
        s.push('\n');
        if self.to_stdout() {
            print_stdout(&s)
        } else {
            crate::io::write_atomic(out, |w| w.write_all(s.as_bytes()))
        }
    }
}

/// Print `s` on stdout; a closed pipe (`| head`) is not an error worth reporting.
pub fn print_stdout(s: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(s.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::io("<stdout>", e)),
        _ => Ok(()),
    }
}

/// α-query expansion, spelled one way for every command. Any of the three
/// flags turns it on where it is optional (`train`, `batch`, `search`);
/// `--alpha` and `--num-expand` override the parts of `--query-expansion`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct QeArgs {
    /// α-query expansion: each vector becomes the normalised,
    /// similarity^alpha-weighted sum of its k nearest rows by inner product
    /// (itself included). Neighbours are exact unless `factory=` names an
    /// index to build over the rows and search instead, e.g.
    /// `alpha=3,k=16,factory=IVF512,PQ128x4fs,RFlat,nprobe=16` (nprobe
    /// default 16). Without a value: alpha=3,k=16.
    #[arg(
        long = "query-expansion",
        visible_alias = "qe",
        num_args = 0..=1,
        default_missing_value = "alpha=3,k=16",
        value_name = "alpha=A,k=K[,factory=F,nprobe=N]"
    )]
    pub query_expansion: Option<QeParams>,
    /// α-query expansion: the exponent of the similarity weights (default 3).
    #[arg(long, value_name = "A")]
    pub alpha: Option<f32>,
    /// α-query expansion: neighbours summed per row, the row itself
    /// included (default 16).
    #[arg(long, value_name = "K")]
    pub num_expand: Option<usize>,
}

impl QeArgs {
    /// The settings, or `None` when no expansion flag was given.
    pub fn given(&self) -> Result<Option<QeParams>> {
        if self.query_expansion.is_none() && self.alpha.is_none() && self.num_expand.is_none() {
            return Ok(None);
        }
        self.params().map(Some)
    }

    /// The settings: the defaults, then `--query-expansion`, then
    /// `--alpha` / `--num-expand`.
    pub fn params(&self) -> Result<QeParams> {
        let mut p = self.query_expansion.clone().unwrap_or_default();
        if let Some(a) = self.alpha {
            p.alpha = a;
        }
        if let Some(k) = self.num_expand {
            p.num_expand = k;
        }
        p.check()?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        qe: QeArgs,
        #[command(flatten)]
        json: JsonArgs,
        file: Option<PathBuf>,
    }

    fn parse(args: &[&str]) -> T {
        T::try_parse_from(std::iter::once("t").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn json_takes_a_file_only_after_an_equals_sign() {
        let t = parse(&["--json", "x.index"]);
        assert!(t.json.to_stdout());
        assert_eq!(t.file.as_deref(), Some(Path::new("x.index")));
        let t = parse(&["--json=out.json", "x.index"]);
        assert!(!t.json.to_stdout());
        assert_eq!(t.json.json.as_deref(), Some(Path::new("out.json")));
        assert!(parse(&[]).json.json.is_none());
    }

    #[test]
    fn qe_flags_combine_and_override() {
        assert_eq!(parse(&[]).qe.given().unwrap(), None);
        let d = parse(&["--query-expansion"]).qe.given().unwrap().unwrap();
        assert_eq!(d, QeParams::default());
        let p = parse(&["--qe", "alpha=2,k=4", "--num-expand", "9"])
            .qe
            .given()
            .unwrap()
            .unwrap();
        assert_eq!((p.alpha, p.num_expand), (2.0, 9));
        let p = parse(&["--alpha", "1.5"]).qe.given().unwrap().unwrap();
        assert_eq!((p.alpha, p.num_expand), (1.5, 16));
        assert!(parse(&["--num-expand", "0"]).qe.given().is_err());
    }
}
