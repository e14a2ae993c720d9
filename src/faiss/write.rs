//! Writers. faiss files are little-endian, unaligned, with no magic or checksum.

use std::io::{self, Write};
use std::path::Path;

use ndarray::ArrayView2;

use super::model::{DirectMap, Flat, Index, Ivf, SizeTable, flat_fourcc};
use crate::io::Target;
use crate::{Error, Metric, Result};

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
    put_ilar(w, d, lists, SizeTable::Auto, |w, list_no, ids| {
        let x = x.expect("rows are needed for non-empty lists");
        let _ = list_no;
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

/// `ilar` array inverted lists; `SizeTable::Auto` applies faiss's full/sparse rule.
fn put_ilar<W: Write, L: AsRef<[i64]>>(
    w: &mut W,
    d: usize,
    lists: &[L],
    table: SizeTable,
    mut put_codes: impl FnMut(&mut W, usize, &[i64]) -> io::Result<()>,
) -> io::Result<()> {
    let nlist = lists.len();
    put_fourcc(w, b"ilar")?;
    put_u64(w, nlist as u64)?;
    put_u64(w, (4 * d) as u64)?;
    let table = match table {
        SizeTable::Auto => SizeTable::faiss_choice(lists.iter().map(|l| l.as_ref().len())),
        t => t,
    };
    if table == SizeTable::Full {
        put_fourcc(w, b"full")?;
        put_u64(w, nlist as u64)?;
        for l in lists {
            put_u64(w, l.as_ref().len() as u64)?;
        }
    } else {
        let nonempty = lists.iter().filter(|l| !l.as_ref().is_empty()).count();
        put_fourcc(w, b"sprs")?;
        put_u64(w, 2 * nonempty as u64)?;
        for (i, l) in lists
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.as_ref().is_empty())
        {
            put_u64(w, i as u64)?;
            put_u64(w, l.as_ref().len() as u64)?;
        }
    }
    for (i, l) in lists
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.as_ref().is_empty())
    {
        put_codes(w, i, l.as_ref())?;
        put_i64s(w, l.as_ref())?;
    }
    Ok(())
}

fn put_flat_index<W: Write>(w: &mut W, f: &Flat) -> io::Result<()> {
    put_fourcc(w, flat_fourcc(f.metric))?;
    put_header(w, f.d, f.ntotal(), f.is_trained, f.metric)?;
    put_u64(w, f.xb.len() as u64)?;
    put_f32s(w, &f.xb)
}

fn put_ivf_common<W: Write>(
    w: &mut W,
    fourcc: &[u8; 4],
    ivf: &Ivf,
    nlist: usize,
    ntotal: usize,
) -> io::Result<()> {
    put_fourcc(w, fourcc)?;
    put_header(w, ivf.d, ntotal, ivf.is_trained, ivf.metric)?;
    put_u64(w, nlist as u64)?;
    put_u64(w, ivf.nprobe as u64)?;
    put_flat_index(w, &ivf.quantizer)?;
    match &ivf.direct_map {
        DirectMap::NoMap => {
            put_u8(w, 0)?;
            put_u64(w, 0)
        }
        DirectMap::Array(a) => {
            put_u8(w, 1)?;
            put_u64(w, a.len() as u64)?;
            put_i64s(w, a)
        }
    }
}

fn put_index<W: Write>(w: &mut W, index: &Index) -> io::Result<()> {
    match index {
        Index::Flat(f) => put_flat_index(w, f),
        Index::IvfFlat(ivf) => {
            put_ivf_common(w, b"IwFl", &ivf.ivf, ivf.nlist(), ivf.ntotal())?;
            let ids: Vec<&[i64]> = ivf.lists.iter().map(|l| l.ids.as_slice()).collect();
            put_ilar(w, ivf.ivf.d, &ids, ivf.size_table, |w, i, _| {
                put_f32s(w, &ivf.lists[i].codes)
            })
        }
        Index::IvfPqFastScan(ivf) => {
            put_ivf_common(w, b"IwPf", &ivf.ivf, ivf.nlist(), ivf.ntotal())?;
            let m2 = ivf.m2();
            put_u8(w, ivf.by_residual as u8)?;
            put_u64(w, (m2 / 2) as u64)?;
            put_i32(w, ivf.bbs as i32)?;
            put_u64(w, m2 as u64)?;
            put_i32(w, ivf.implem)?;
            put_u64(w, ivf.qbs2)?;
            put_u64(w, ivf.pq.d as u64)?;
            put_u64(w, ivf.pq.m as u64)?;
            put_u64(w, ivf.pq.nbits as u64)?;
            put_u64(w, ivf.pq.centroids.len() as u64)?;
            put_f32s(w, &ivf.pq.centroids)?;
            put_fourcc(w, b"ilbl")?;
            put_u64(w, ivf.nlist() as u64)?;
            put_u64(w, u64::MAX)?; // BlockInvertedLists' "invalid" code_size, as faiss writes it
            put_u64(w, ivf.bbs as u64)?;
            put_u64(w, ivf.block_size() as u64)?;
            for l in &ivf.lists {
                put_u64(w, l.ids.len() as u64)?;
                put_i64s(w, &l.ids)?;
                put_u64(w, l.codes.len() as u64)?;
                w.write_all(&l.codes)?;
            }
            Ok(())
        }
        Index::Refine(r) => {
            put_fourcc(w, b"IxRF")?;
            put_header(
                w,
                r.base.d(),
                r.base.ntotal(),
                r.is_trained,
                r.base.metric(),
            )?;
            put_index(w, &r.base)?;
            put_flat_index(w, &r.refine)?;
            w.write_all(&r.k_factor.to_le_bytes())
        }
    }
}

/// Write `index` to `w` in faiss' format, after [`Index::validate`].
///
/// The bytes are what faiss itself writes for the same index: a file read
/// with [`super::read_index`] is written back byte for byte identical.
pub fn write_index_to<W: Write>(w: &mut W, index: &Index) -> Result<()> {
    index.validate()?;
    put_index(w, index).map_err(|e| Error::io("<index writer>", e))
}

/// The bytes of `index` as a faiss file.
pub fn index_to_bytes(index: &Index) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    write_index_to(&mut out, index)?;
    Ok(out)
}

/// Write `index` to `path` atomically (temporary file, then rename).
pub fn write_index(path: impl AsRef<Path>, index: &Index) -> Result<()> {
    write_index_into(&mut Target::Direct, path.as_ref(), index)
}

/// Write `index` to `path` through `target` (on its own, or staged in a set).
pub fn write_index_into(target: &mut Target, path: &Path, index: &Index) -> Result<()> {
    index.validate()?;
    target.write(path, |w| put_index(w, index))
}
