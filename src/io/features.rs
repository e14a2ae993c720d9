//! Feature matrices from `.npy` files: one file, or a folder of them read in
//! Python `sorted()` order, as RVC's `train_index` does.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use ndarray::Array2;
use ndarray_npy::npy::header::{Header, Layout};

use crate::{Error, Result};

/// Element types accepted in feature files. float32 is read as is; the
/// others are converted (RVC itself only ever writes little-endian float32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    F16,
    F32,
    F64,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F16 => 2,
            Dtype::F32 => 4,
            Dtype::F64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F16 => "float16",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }
}

/// Widest rows any command accepts (faiss stores the dimension as an `int`;
/// RVC's features are 256 or 768 wide). Bounding it keeps a hostile header
/// such as shape `(0, 2^60)` from sizing buffers.
pub const MAX_DIM: usize = 1 << 16;

/// One `.npy` file whose header has been read and checked against its size.
#[derive(Clone, Debug)]
pub struct NpyFile {
    pub path: PathBuf,
    pub rows: usize,
    pub cols: usize,
    pub dtype: Dtype,
    big_endian: bool,
    data_offset: u64,
}

/// Read and validate the header of one `.npy` file without loading its data.
pub fn inspect_npy(path: &Path) -> Result<NpyFile> {
    let (file, len) = super::open_regular(path)?;
    let mut r = BufReader::new(file);
    let header = Header::from_reader(&mut r)
        .map_err(|e| Error::bad_input(path, format!("not a valid .npy file ({e})")))?;
    let data_offset = r.stream_position().map_err(|e| Error::io(path, e))?;
    let descr = header.type_descriptor.to_string();
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let (dtype, big_endian) = match descr {
        "<f4" | "=f4" | "f4" => (Dtype::F32, false),
        ">f4" => (Dtype::F32, true),
        "<f2" | "=f2" | "f2" => (Dtype::F16, false),
        ">f2" => (Dtype::F16, true),
        "<f8" | "=f8" | "f8" => (Dtype::F64, false),
        ">f8" => (Dtype::F64, true),
        other => {
            return Err(Error::bad_input(
                path,
                format!("unsupported dtype {other:?}: expected float32 (or float16/float64)"),
            ));
        }
    };
    if header.layout == Layout::Fortran && header.shape.iter().filter(|&&s| s > 1).count() > 1 {
        return Err(Error::bad_input(
            path,
            "Fortran-ordered arrays are not supported; save with np.ascontiguousarray",
        ));
    }
    let (rows, cols) = match header.shape[..] {
        [r, c] => (r, c),
        _ => {
            return Err(Error::bad_input(
                path,
                format!(
                    "expected a 2-D array (frames, channels), found shape {:?}",
                    header.shape
                ),
            ));
        }
    };
    if cols == 0 {
        return Err(Error::bad_input(path, "array has 0 columns"));
    }
    if cols > MAX_DIM {
        return Err(Error::bad_input(
            path,
            format!("{cols} columns per row; at most {MAX_DIM} are supported"),
        ));
    }
    let need = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(dtype.size()))
        .and_then(|n| (n as u64).checked_add(data_offset))
        .ok_or_else(|| Error::bad_input(path, "shape is too large"))?;
    if len < need {
        return Err(Error::bad_input(
            path,
            format!(
                "truncated: shape ({rows}, {cols}) {} needs {need} bytes, file has {len}",
                dtype.name()
            ),
        ));
    }
    Ok(NpyFile {
        path: path.to_path_buf(),
        rows,
        cols,
        dtype,
        big_endian,
        data_offset,
    })
}

/// The `.npy` files of a folder in Python `sorted()` order (code-point order,
/// which for UTF-8 names is byte order), headers checked, column counts equal.
/// Every `*.npy` entry counts: one that is not a readable regular file (a
/// dangling or looping symlink, a directory, a FIFO) is an error naming it,
/// never silently skipped.
pub fn scan_dir(dir: &Path) -> Result<Vec<NpyFile>> {
    scan_dir_except(dir, &[])
}

/// [`scan_dir`] leaving out the files in `exclude` (compared after resolving
/// symlinks), e.g. the outputs a command writes into the same folder.
pub fn scan_dir_except(dir: &Path, exclude: &[PathBuf]) -> Result<Vec<NpyFile>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let excluded: Vec<PathBuf> = exclude
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    let mut paths = Vec::new();
    for e in entries {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let p = e.path();
        if p.extension().is_none_or(|x| x != "npy") {
            continue;
        }
        if std::fs::canonicalize(&p).is_ok_and(|c| excluded.contains(&c)) {
            continue;
        }
        super::check_regular(&p)?;
        paths.push(p);
    }
    if paths.is_empty() {
        return Err(Error::bad_input(
            dir,
            "no .npy feature files in this folder",
        ));
    }
    paths.sort_by(|a, b| {
        let a = a.file_name().unwrap_or_default().as_encoded_bytes();
        let b = b.file_name().unwrap_or_default().as_encoded_bytes();
        a.cmp(b)
    });
    let files: Vec<NpyFile> = paths
        .iter()
        .map(|p| inspect_npy(p))
        .collect::<Result<_>>()?;
    check_same_cols(&files)?;
    Ok(files)
}

fn check_same_cols(files: &[NpyFile]) -> Result<()> {
    let first = &files[0];
    for f in &files[1..] {
        if f.cols != first.cols {
            return Err(Error::bad_input(
                &f.path,
                format!(
                    "has {} columns but {} has {}",
                    f.cols,
                    first.path.file_name().unwrap_or_default().to_string_lossy(),
                    first.cols
                ),
            ));
        }
    }
    Ok(())
}

/// Load `files` into one `[N, D]` float32 matrix, allocated once.
///
/// Row `j` of the concatenation is written to row `dest[j]` (a permutation of
/// `0..N`), so a shuffle costs no second copy of the matrix. Every value is
/// checked to be finite; the error names the file and its row.
pub fn load_into(
    files: &[NpyFile],
    dest: Option<&[usize]>,
    mut progress: impl FnMut(u64),
) -> Result<Array2<f32>> {
    let n: usize = files.iter().map(|f| f.rows).sum();
    let d = files.first().map_or(0, |f| f.cols);
    if let Some(dest) = dest {
        assert_eq!(
            dest.len(),
            n,
            "destination permutation has one entry per row"
        );
    }
    let mut out = Array2::<f32>::zeros((n, d));
    let data = out.as_slice_mut().expect("fresh arrays are contiguous");
    let mut raw = Vec::new();
    let mut row = vec![0f32; d];
    let mut j = 0usize;
    for f in files {
        let (mut file, _) = super::open_regular(&f.path)?;
        file.seek(SeekFrom::Start(f.data_offset))
            .map_err(|e| Error::io(&f.path, e))?;
        let mut r = BufReader::with_capacity(1 << 20, file);
        raw.resize(d * f.dtype.size(), 0u8);
        for t in 0..f.rows {
            let target = dest.map_or(j, |p| p[j]);
            let slot = &mut data[target * d..(target + 1) * d];
            if f.dtype == Dtype::F32 && !f.big_endian {
                r.read_exact(bytemuck::cast_slice_mut(slot))
            } else {
                r.read_exact(&mut raw).map(|_| {
                    convert(&raw, f.dtype, f.big_endian, &mut row);
                    slot.copy_from_slice(&row);
                })
            }
            .map_err(|e| Error::io(&f.path, e))?;
            if let Some(c) = slot.iter().position(|v| !v.is_finite()) {
                return Err(Error::bad_input(
                    &f.path,
                    format!(
                        "row {t}, column {c} is {} (features must be finite)",
                        slot[c]
                    ),
                ));
            }
            j += 1;
        }
        progress(f.rows as u64);
    }
    Ok(out)
}

fn convert(raw: &[u8], dtype: Dtype, big_endian: bool, out: &mut [f32]) {
    match dtype {
        Dtype::F32 => {
            for (o, b) in out.iter_mut().zip(raw.chunks_exact(4)) {
                let b: [u8; 4] = b.try_into().unwrap();
                *o = if big_endian {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                };
            }
        }
        Dtype::F16 => {
            for (o, b) in out.iter_mut().zip(raw.chunks_exact(2)) {
                let b: [u8; 2] = b.try_into().unwrap();
                let h = if big_endian {
                    half::f16::from_be_bytes(b)
                } else {
                    half::f16::from_le_bytes(b)
                };
                *o = h.to_f32();
            }
        }
        Dtype::F64 => {
            for (o, b) in out.iter_mut().zip(raw.chunks_exact(8)) {
                let b: [u8; 8] = b.try_into().unwrap();
                *o = if big_endian {
                    f64::from_be_bytes(b)
                } else {
                    f64::from_le_bytes(b)
                } as f32;
            }
        }
    }
}

/// One `.npy` matrix as float32 (converted from float16/float64), checked
/// like the feature files.
pub fn load_matrix(path: &Path) -> Result<Array2<f32>> {
    let f = inspect_npy(path)?;
    load_into(std::slice::from_ref(&f), None, |_| {})
}

/// A `.npy` file or a folder of them (sorted by name, concatenated).
pub fn load_file_or_dir(path: &Path) -> Result<Array2<f32>> {
    if path.is_dir() {
        let files = scan_dir(path)?;
        load_into(&files, None, |_| {})
    } else {
        load_matrix(path)
    }
}

/// Write any array ndarray-npy can (ids as int64, for example), atomically.
pub fn write_any_npy_atomic<T: ndarray_npy::WritableElement>(
    path: &Path,
    x: ndarray::ArrayView2<T>,
) -> Result<()> {
    write_npy_into(&mut super::Target::Direct, path, x)
}

/// Write an array as `.npy` through `target` (on its own, or staged in a set).
pub fn write_npy_into<T: ndarray_npy::WritableElement>(
    target: &mut super::Target,
    path: &Path,
    x: ndarray::ArrayView2<T>,
) -> Result<()> {
    use ndarray_npy::WriteNpyExt;
    target.write(path, |w| x.write_npy(w).map_err(std::io::Error::other))
}

/// Files of a non-float32 dtype, for a conversion warning.
pub fn converted(files: &[NpyFile]) -> Vec<&NpyFile> {
    files.iter().filter(|f| f.dtype != Dtype::F32).collect()
}

/// Write a float32 matrix as `.npy` (format 1.0, C order), atomically.
pub fn write_npy_atomic(path: &Path, x: ndarray::ArrayView2<f32>) -> Result<()> {
    write_any_npy_atomic(path, x)
}
