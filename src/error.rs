use std::path::{Path, PathBuf};

/// Every failure the library reports. Each variant names the file (and where
/// it helps the row, field or byte offset) so the binary can print one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A user-supplied file or folder whose content is unusable.
    #[error("{}: {msg}", path.display())]
    BadInput { path: PathBuf, msg: String },
    /// A faiss index file that does not parse.
    #[error("{}: at byte {offset}, {field}: {msg}", path.display())]
    Format {
        path: PathBuf,
        offset: u64,
        field: String,
        msg: String,
    },
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Settings that cannot work together (flags, sizes).
    #[error("{0}")]
    Invalid(String),
    #[error("GPU: {0}")]
    Gpu(String),
    /// Some of many independent jobs failed, each reported where it failed.
    #[error("{0}")]
    Failed(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub fn bad_input(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::BadInput {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
}
