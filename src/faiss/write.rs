//! Writers. faiss files are little-endian, unaligned, with no magic or checksum.

use std::io::{self, Write};

use ndarray::ArrayView2;

use crate::Metric;

const DUMMY: i64 = 1 << 20;

pub(crate) fn put_u8<W: Write>(w: &mut W, v: u8) -> io::Result<()> {
    w.write_all(&[v])
}
pub(crate) fn put_i32<W: Write>(w: &mut W, v: i32) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}
pub(crate) fn put_i64<W: Write>(w: &mut W, v: i64) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}
pub(crate) fn put_u64<W: Write>(w: &mut W, v: u64) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}
pub(crate) fn put_fourcc<W: Write>(w: &mut W, f: &[u8; 4]) -> io::Result<()> {
    w.write_all(f)
}
pub(crate) fn put_f32s<W: Write>(w: &mut W, v: &[f32]) -> io::Result<()> {
    // Little-endian hosts only (as faiss): the in-memory bytes are the file bytes.
    w.write_all(bytemuck::cast_slice(v))
}
pub(crate) fn put_i64s<W: Write>(w: &mut W, v: &[i64]) -> io::Result<()> {
    w.write_all(bytemuck::cast_slice(v))
}

/// The 33-byte header every index carries after its fourcc.
pub(crate) fn put_header<W: Write>(
    w: &mut W,
    d: usize,
    ntotal: usize,
    is_trained: bool,
    metric: Metric,
) -> io::Result<()> {
    put_i32(w, d as i32)?;
    put_i64(w, ntotal as i64)?;
    put_i64(w, DUMMY)?;
    put_i64(w, DUMMY)?;
    put_u8(w, is_trained as u8)?;
    put_i32(w, metric.faiss_code())
}

fn flat_fourcc(metric: Metric) -> &'static [u8; 4] {
    match metric {
        Metric::L2 => b"IxF2",
        Metric::InnerProduct => b"IxFI",
    }
}

/// `IxF2` / `IxFI` holding `vectors` (n×d, standard layout).
pub fn write_flat<W: Write>(w: &mut W, vectors: ArrayView2<f32>, metric: Metric) -> io::Result<()> {
    put_fourcc(w, flat_fourcc(metric))?;
    put_header(w, vectors.ncols(), vectors.nrows(), true, metric)?;
    put_u64(w, (vectors.nrows() * vectors.ncols()) as u64)?;
    match vectors.as_slice() {
        Some(s) => put_f32s(w, s),
        None => {
            for row in vectors.rows() {
                put_f32s(w, &row.to_vec())?;
            }
            Ok(())
        }
    }
}

/// An `IwFl` (IndexIVFFlat) file, streamed straight from the row matrix.
///
/// `lists[i]` holds the ids (ascending, as faiss `add` leaves them) of the rows
/// of `x` that belong to list i; the stored code of id `j` is row `j` of `x`.
/// With `x = None` and all lists empty this is the "trained" file.
pub fn write_ivf_flat<W: Write>(
    w: &mut W,
    centroids: ArrayView2<f32>,
    metric: Metric,
    nprobe: usize,
    x: Option<ArrayView2<f32>>,
    lists: &[Vec<i64>],
) -> io::Result<()> {
    let d = centroids.ncols();
    let nlist = centroids.nrows();
    assert_eq!(lists.len(), nlist, "one id list per centroid");
    let ntotal: usize = lists.iter().map(Vec::len).sum();
    put_fourcc(w, b"IwFl")?;
    put_header(w, d, ntotal, true, metric)?;
    put_u64(w, nlist as u64)?;
    put_u64(w, nprobe as u64)?;
    write_flat(w, centroids, metric)?;
    // Direct map: NoMap and an empty array.
    put_u8(w, 0)?;
    put_u64(w, 0)?;
    put_ilar(w, d, lists, |w, ids| {
        let x = x.expect("rows are needed for non-empty lists");
        for &id in ids {
            let row = x.row(id as usize);
            match row.as_slice() {
                Some(s) => put_f32s(w, s)?,
                None => put_f32s(w, &row.to_vec())?,
            }
        }
        Ok(())
    })
}

/// `ilar` array inverted lists with faiss's full/sparse size-table rule.
fn put_ilar<W: Write>(
    w: &mut W,
    d: usize,
    lists: &[Vec<i64>],
    mut put_codes: impl FnMut(&mut W, &[i64]) -> io::Result<()>,
) -> io::Result<()> {
    let nlist = lists.len();
    put_fourcc(w, b"ilar")?;
    put_u64(w, nlist as u64)?;
    put_u64(w, (4 * d) as u64)?;
    let nonempty = lists.iter().filter(|l| !l.is_empty()).count();
    if nonempty > nlist / 2 {
        put_fourcc(w, b"full")?;
        put_u64(w, nlist as u64)?;
        for l in lists {
            put_u64(w, l.len() as u64)?;
        }
    } else {
        put_fourcc(w, b"sprs")?;
        put_u64(w, 2 * nonempty as u64)?;
        for (i, l) in lists.iter().enumerate().filter(|(_, l)| !l.is_empty()) {
            put_u64(w, i as u64)?;
            put_u64(w, l.len() as u64)?;
        }
    }
    for l in lists.iter().filter(|l| !l.is_empty()) {
        put_codes(w, l)?;
        put_i64s(w, l)?;
    }
    Ok(())
}
