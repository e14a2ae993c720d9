use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use crate::Result;

/// Write `path` through a temporary file in the same folder, renamed into
/// place only once `fill` has succeeded and the data is synced: an
/// interrupted or failed run never leaves a half-written file, and an
/// existing file is replaced whole or not at all. The temporary file is
/// removed on error, on Ctrl-C and on SIGTERM (see `io::signals`); files
/// that must change together go through [`super::OutputSet`] instead.
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<&mut File>) -> std::io::Result<()>,
) -> Result<()> {
    super::Target::Direct.write(path, fill)
}
