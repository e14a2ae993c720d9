//! Opening input files without surprises: a FIFO, a socket or a device would
//! block `open()` or never end, a directory cannot be parsed, and a dangling
//! or looping symlink must be named, not skipped.

use std::fs::File;
use std::path::Path;

use crate::{Error, Result};

/// What kind of thing `path` is, for an error message.
fn kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a named pipe (FIFO)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_block_device() || t.is_char_device() {
            return "a device";
        }
    }
    "not a regular file"
}

/// Check that `path` (after following symlinks) is a regular file, without
/// opening it: opening a FIFO for reading blocks until a writer appears.
pub fn check_regular(path: &Path) -> Result<std::fs::Metadata> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(m),
        Ok(m) => {
            let k = kind(&m);
            let msg = if k.starts_with("not ") {
                k.to_string()
            } else {
                format!("is {k}, not a regular file")
            };
            Err(Error::bad_input(path, msg))
        }
        Err(e) => {
            // A symlink that exists but does not resolve.
            if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
                let target = std::fs::read_link(path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                return Err(Error::bad_input(
                    path,
                    format!("broken symlink: points to {target:?}, which cannot be opened ({e})"),
                ));
            }
            Err(Error::io(path, e))
        }
    }
}

/// Open a regular file for reading (see [`check_regular`]).
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    check_regular(path)?;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    // Swapped for something else between the check and the open.
    if !meta.is_file() {
        return Err(Error::bad_input(path, "not a regular file"));
    }
    Ok((file, meta.len()))
}
