//! Progress bars and status lines on stderr, and progress reports to a
//! caller. Bars show only on a terminal (indicatif hides them when stderr is
//! piped); `quiet` silences everything but warnings.
//!
//! An embedding program (the Python module, a GUI) can also follow the work
//! and stop it:
//!
//! * a [`Sink`] receives `(stage, done, total)` at every step of every bar
//!   (`load` rows, `compress` row updates, `k-means` iterations, `add` rows,
//!   `expand` rows, …), whether or not the bars are shown;
//! * a [`Cancel`] token, once set, makes the run stop at its next progress
//!   point: the step unwinds with a [`Cancelled`] payload, dropping (and so
//!   removing) every unfinished output, and [`catch_cancel`] turns that into
//!   `Err(Cancelled)`. Nothing is committed after the token is set.
//!
//! Both travel with the [`Progress`] (its clones included). Code that builds
//! its own `Progress` with [`Progress::new`] (the subcommands) picks up the
//! sink and the token installed for the current thread by [`scoped`].

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

/// Receives the progress of every stage: `done` of `total` units.
pub trait Sink: Send + Sync {
    fn update(&self, stage: &str, done: u64, total: u64);
}

impl<F: Fn(&str, u64, u64) + Send + Sync> Sink for F {
    fn update(&self, stage: &str, done: u64, total: u64) {
        self(stage, done, total)
    }
}

/// A shared stop request; clones refer to the same flag.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Ask the run to stop at its next progress point.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The unwind payload of a cancelled run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Cancelled {}

/// Run `f`; a cancellation inside it becomes `Err(Cancelled)`. Any other
/// panic goes on unwinding.
pub fn catch_cancel<T>(f: impl FnOnce() -> T) -> Result<T, Cancelled> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => Ok(v),
        Err(payload) if payload.is::<Cancelled>() => Err(Cancelled),
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

#[derive(Clone, Default)]
struct Hooks {
    sink: Option<Arc<dyn Sink>>,
    cancel: Option<Cancel>,
}

thread_local! {
    static AMBIENT: RefCell<Hooks> = RefCell::new(Hooks::default());
}

/// Run `f` with `sink` and `cancel` attached to every [`Progress::new`]
/// made on this thread meanwhile (the previous ones come back afterwards,
/// also when `f` unwinds).
pub fn scoped<T>(sink: Option<Arc<dyn Sink>>, cancel: Option<Cancel>, f: impl FnOnce() -> T) -> T {
    struct Restore(Hooks);
    impl Drop for Restore {
        fn drop(&mut self) {
            let old = std::mem::take(&mut self.0);
            AMBIENT.with(|a| *a.borrow_mut() = old);
        }
    }
    let old = AMBIENT.with(|a| std::mem::replace(&mut *a.borrow_mut(), Hooks { sink, cancel }));
    let _restore = Restore(old);
    f()
}

#[derive(Clone, Default)]
pub struct Progress {
    pub quiet: bool,
    pub verbose: bool,
    hooks: Hooks,
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("quiet", &self.quiet)
            .field("verbose", &self.verbose)
            .field("sink", &self.hooks.sink.is_some())
            .field("cancel", &self.hooks.cancel)
            .finish()
    }
}

impl Progress {
    /// Bars and status lines as asked, with the sink and the token that
    /// [`scoped`] installed for this thread (none outside it).
    pub fn new(quiet: bool, verbose: bool) -> Self {
        Progress {
            quiet,
            verbose,
            hooks: AMBIENT.with(|a| a.borrow().clone()),
        }
    }

    /// A silent instance, for library callers and tests.
    pub fn hidden() -> Self {
        Progress {
            quiet: true,
            verbose: false,
            hooks: Hooks::default(),
        }
    }

    /// Also report every step to `sink`.
    pub fn with_sink(mut self, sink: Arc<dyn Sink>) -> Self {
        self.hooks.sink = Some(sink);
        self
    }

    /// Stop at the next progress point once `cancel` is set.
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.hooks.cancel = Some(cancel);
        self
    }

    /// Unwind with [`Cancelled`] if the run was asked to stop. Called at
    /// every step of every bar; long loops without a bar may call it too.
    pub fn checkpoint(&self) {
        checkpoint(self.hooks.cancel.as_ref());
    }

    pub fn bar(&self, len: u64, stage: &str) -> Bar {
        let bar = if self.quiet {
            ProgressBar::hidden()
        } else {
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
        };
        let bar = Bar {
            bar,
            stage: stage.to_string(),
            len: AtomicU64::new(len),
            pos: AtomicU64::new(0),
            hooks: self.hooks.clone(),
        };
        bar.report(0);
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

fn checkpoint(cancel: Option<&Cancel>) {
    if cancel.is_some_and(Cancel::is_cancelled) {
        // No panic hook runs (nothing is printed): this is a planned stop.
        std::panic::resume_unwind(Box::new(Cancelled));
    }
}

/// One stage's progress: a terminal bar (hidden when quiet) and the
/// reports to the sink. Every update is a cancellation point.
pub struct Bar {
    bar: ProgressBar,
    stage: String,
    len: AtomicU64,
    pos: AtomicU64,
    hooks: Hooks,
}

impl Bar {
    pub fn inc(&self, delta: u64) {
        self.bar.inc(delta);
        let pos = self.pos.fetch_add(delta, Ordering::Relaxed) + delta;
        self.report(pos);
    }

    pub fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
        self.pos.store(pos, Ordering::Relaxed);
        self.report(pos);
    }

    /// A new total (a stage whose amount of work is known only once it started).
    pub fn set_length(&self, len: u64) {
        self.bar.set_length(len);
        self.len.store(len, Ordering::Relaxed);
        self.report(self.position());
    }

    pub fn set_message(&self, msg: impl Into<Cow<'static, str>>) {
        self.bar.set_message(msg);
    }

    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }

    pub fn position(&self) -> u64 {
        self.pos.load(Ordering::Relaxed)
    }

    fn report(&self, pos: u64) {
        if let Some(s) = &self.hooks.sink {
            let len = self.len.load(Ordering::Relaxed);
            s.update(&self.stage, pos.min(len), len);
        }
        checkpoint(self.hooks.cancel.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Log = Arc<Mutex<Vec<(String, u64, u64)>>>;

    fn recorder() -> (Log, Arc<dyn Sink>) {
        let log: Log = Arc::default();
        let l = log.clone();
        let sink = move |s: &str, d: u64, t: u64| l.lock().unwrap().push((s.to_string(), d, t));
        (log, Arc::new(sink))
    }

    #[test]
    fn sink_gets_every_step_even_when_quiet() {
        let (log, sink) = recorder();
        let p = Progress::hidden().with_sink(sink);
        let b = p.bar(10, "add");
        b.inc(3);
        b.inc(4);
        b.set_position(12);
        b.finish_and_clear();
        let got = log.lock().unwrap().clone();
        let want: Vec<(String, u64, u64)> = [(0, 10), (3, 10), (7, 10), (10, 10)]
            .iter()
            .map(|&(d, t)| ("add".to_string(), d, t))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn cancel_stops_at_the_next_step_and_drops_what_was_live() {
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let cancel = Cancel::new();
        let p = Progress::hidden().with_cancel(cancel.clone());
        let dropped = Arc::new(AtomicBool::new(false));
        let mut steps = 0;
        let r = catch_cancel(|| {
            let _live = Flag(dropped.clone());
            let b = p.bar(100, "k-means");
            for i in 0..100 {
                if i == 5 {
                    cancel.cancel();
                }
                b.inc(1);
                steps += 1;
            }
            "finished"
        });
        assert_eq!(r, Err(Cancelled));
        assert_eq!(steps, 5, "the step after the request must not complete");
        assert!(dropped.load(Ordering::SeqCst));
        // Without a request the same work runs to its end.
        let p = Progress::hidden().with_cancel(Cancel::new());
        assert_eq!(catch_cancel(|| p.bar(3, "x").inc(3)), Ok(()));
    }

    #[test]
    fn other_panics_are_not_taken_for_a_cancellation() {
        let r =
            std::panic::catch_unwind(|| catch_cancel(|| std::panic::resume_unwind(Box::new(7u8))));
        assert_eq!(*r.unwrap_err().downcast::<u8>().unwrap(), 7);
    }

    #[test]
    fn scoped_hooks_reach_progress_new_and_are_restored() {
        let (log, sink) = recorder();
        let cancel = Cancel::new();
        scoped(Some(sink), Some(cancel.clone()), || {
            let p = Progress::new(true, false);
            p.bar(2, "load").inc(2);
            cancel.cancel();
            assert_eq!(catch_cancel(|| p.checkpoint()), Err(Cancelled));
        });
        assert_eq!(log.lock().unwrap().len(), 2);
        // Outside the scope: no sink, no token.
        let p = Progress::new(true, false);
        p.bar(1, "load").inc(1);
        p.checkpoint();
        assert_eq!(log.lock().unwrap().len(), 2);
        // Restored after an unwind too.
        let (_, sink) = recorder();
        let _ = catch_cancel(|| {
            scoped(Some(sink), Some(cancel.clone()), || {
                Progress::new(true, false).checkpoint()
            })
        });
        assert!(Progress::new(true, false).hooks.sink.is_none());
    }
}
