//! Progress bars and status lines on stderr. Bars show only on a terminal
//! (indicatif hides them when stderr is piped); `quiet` silences everything
//! but warnings.

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub quiet: bool,
    pub verbose: bool,
}

impl Progress {
    pub fn new(quiet: bool, verbose: bool) -> Self {
        Progress { quiet, verbose }
    }

    /// A silent instance, for library callers and tests.
    pub fn hidden() -> Self {
        Progress {
            quiet: true,
            verbose: false,
        }
    }

    pub fn bar(&self, len: u64, stage: &str) -> ProgressBar {
        if self.quiet {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>8} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta} {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar.set_prefix(stage.to_string());
        bar
    }

    pub fn info(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }

    pub fn verbose(&self, msg: &str) {
        if self.verbose && !self.quiet {
            eprintln!("{msg}");
        }
    }

    pub fn warn(&self, msg: &str) {
        eprintln!("warning: {msg}");
    }
}
