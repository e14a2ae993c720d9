//! Running library work from Python: off the GIL, interruptible, with the
//! progress reported to a Python callable on the calling thread.
//!
//! The work runs on a worker thread while the calling thread, with the GIL
//! released, waits for its progress reports. Every [`TICK`] (and between
//! reports) it takes the GIL to run Python's signal handlers: a Ctrl-C
//! (`KeyboardInterrupt`), or an exception raised by the progress callback,
//! sets the run's cancellation token, so the library stops at its next
//! progress point and its unfinished outputs are removed; the call then
//! raises that exception.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::exceptions::{PyKeyboardInterrupt, PyRuntimeError};
use pyo3::prelude::*;
use rvc_index::progress::{self, Cancel, Cancelled, Progress, Sink};

use crate::errors::to_py;

/// How often the waiting thread looks at Python's signals.
const TICK: Duration = Duration::from_millis(50);

enum Event {
    Step(String, u64, u64),
    Done,
}

/// Run `work` with a [`Progress`] (silent, reporting to `callback` if
/// given, cancellable) and return its result, or raise.
pub fn run<T, F>(py: Python<'_>, callback: Option<&Bound<'_, PyAny>>, work: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce(&Progress) -> rvc_index::Result<T> + Send,
{
    let cancel = Cancel::new();
    let (tx, rx) = mpsc::channel::<Event>();
    // Shared with the closures that run off the GIL (a receiver alone is not Sync).
    let rx = Mutex::new(rx);
    let sink: Option<Arc<dyn Sink>> = callback.map(|_| {
        let tx = tx.clone();
        Arc::new(move |stage: &str, done: u64, total: u64| {
            let _ = tx.send(Event::Step(stage.to_string(), done, total));
        }) as Arc<dyn Sink>
    });
    std::thread::scope(|s| {
        let worker = {
            let cancel = cancel.clone();
            s.spawn(move || {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    progress::catch_cancel(|| {
                        // Progress::new also picks up the hooks, for the
                        // subcommands that make their own.
                        progress::scoped(sink, Some(cancel), || work(&Progress::new(true, false)))
                    })
                }));
                let _ = tx.send(Event::Done);
                r
            })
        };
        let mut raised: Option<PyErr> = None;
        let fail = |e: PyErr, raised: &mut Option<PyErr>| {
            if raised.is_none() {
                cancel.cancel();
                *raised = Some(e);
            }
        };
        'wait: loop {
            let first = py.detach(|| lock(&rx).recv_timeout(TICK));
            let mut steps = Vec::new();
            let mut done = false;
            match first {
                Ok(Event::Step(st, d, t)) => steps.push((st, d, t)),
                Ok(Event::Done) | Err(RecvTimeoutError::Disconnected) => done = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
            // Reports that came meanwhile: only the latest of each run of
            // one stage is passed on, so a slow callback never lags behind.
            while !done {
                match lock(&rx).try_recv() {
                    Ok(Event::Step(st, d, t)) => {
                        if steps.last().is_some_and(|l: &(String, u64, u64)| l.0 == st) {
                            steps.pop();
                        }
                        steps.push((st, d, t));
                    }
                    Ok(Event::Done) | Err(mpsc::TryRecvError::Disconnected) => done = true,
                    Err(mpsc::TryRecvError::Empty) => break,
                }
                if steps.len() > 64 {
                    break;
                }
            }
            if let (Some(cb), None) = (callback, &raised) {
                for (st, d, t) in steps {
                    if let Err(e) = cb.call1((st, d, t)) {
                        fail(e, &mut raised);
                        break;
                    }
                }
            }
            if let Err(e) = py.check_signals() {
                fail(e, &mut raised);
            }
            if done {
                break 'wait;
            }
        }
        let joined = py.detach(|| worker.join());
        let outcome = match joined {
            Ok(r) => r,
            Err(p) => Err(p),
        };
        if let Some(e) = raised {
            return Err(e);
        }
        match outcome {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(to_py(&e)),
            Ok(Err(Cancelled)) => Err(PyKeyboardInterrupt::new_err("interrupted")),
            Err(p) => Err(PyRuntimeError::new_err(format!(
                "rvc-index: internal error: {}",
                panic_message(&p)
            ))),
        }
    })
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
