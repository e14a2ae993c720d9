//! The library's errors as Python exceptions, with the message the command
//! line prints after `rvc-index: error: `.
//!
//! * a file or folder that does not exist: `FileNotFoundError`;
//! * a folder where a file is to be written: `IsADirectoryError`;
//! * any other I/O failure: `OSError`;
//! * unusable values, shapes, files and settings: `ValueError`;
//! * a GPU that fails, several failed jobs: `RuntimeError`.

use pyo3::PyErr;
use pyo3::exceptions::{
    PyFileNotFoundError, PyIsADirectoryError, PyOSError, PyRuntimeError, PyValueError,
};
use rvc_index::Error;

pub fn to_py(e: &Error) -> PyErr {
    let msg = e.to_string();
    match e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(msg)
        }
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::IsADirectory => {
            PyIsADirectoryError::new_err(msg)
        }
        Error::Io { .. } => PyOSError::new_err(msg),
        // The library reports a missing input as unusable input naming it.
        Error::BadInput { path, .. } if std::fs::symlink_metadata(path).is_err() => {
            PyFileNotFoundError::new_err(msg)
        }
        Error::BadInput { .. }
        | Error::Format { .. }
        | Error::Unsupported(_)
        | Error::Invalid(_) => PyValueError::new_err(msg),
        Error::Gpu(_) | Error::Failed(_) => PyRuntimeError::new_err(msg),
    }
}

/// A `ValueError` with this message.
pub fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

/// A clap parse error (of the arguments `train` builds) as one line.
pub fn clap_error(e: &clap::Error) -> PyErr {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() == ErrorKind::UnknownArgument
        && let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg)
    {
        let flag = arg.split('=').next().unwrap_or(arg);
        let kw = flag.trim_start_matches('-').replace('-', "_");
        return value_error(format!(
            "{kw}=: not supported by this version of rvc-index (its `train` has no {flag} option)"
        ));
    }
    let text = e.render().to_string();
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string();
    value_error(line)
}
