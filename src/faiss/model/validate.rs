//! The invariants of an index that the writer relies on and faiss (or RVC)
//! needs, checked after reading and before writing.

use super::{DirectMap, Flat, Index, Ivf, MAX_D};
use crate::{Error, Result};

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

fn validate_flat(f: &Flat, what: &str) -> Result<()> {
    if f.d == 0 || f.d > MAX_D {
        return Err(invalid(format!("{what}: d = {} outside 1..={MAX_D}", f.d)));
    }
    if !f.xb.len().is_multiple_of(f.d) {
        return Err(invalid(format!(
            "{what}: {} floats is not a multiple of d = {}",
            f.xb.len(),
            f.d
        )));
    }
    Ok(())
}

fn validate_ivf<'a>(
    ivf: &Ivf,
    nlist: usize,
    ids: impl Iterator<Item = &'a [i64]> + Clone,
    what: &str,
) -> Result<()> {
    validate_flat(&ivf.quantizer, &format!("{what} quantizer"))?;
    let ntotal: usize = ids.clone().map(<[i64]>::len).sum();
    if nlist == 0 {
        return Err(invalid(format!("{what}: nlist must be at least 1")));
    }
    if ivf.quantizer.d != ivf.d {
        return Err(invalid(format!(
            "{what}: quantizer d = {} differs from d = {}",
            ivf.quantizer.d, ivf.d
        )));
    }
    if ivf.quantizer.metric != ivf.metric {
        return Err(invalid(format!(
            "{what}: quantizer metric {} differs from the index metric {}",
            ivf.quantizer.metric, ivf.metric
        )));
    }
    let qn = ivf.quantizer.ntotal();
    if qn != nlist && !(qn == 0 && !ivf.is_trained && ntotal == 0) {
        return Err(invalid(format!(
            "{what}: quantizer holds {qn} centroids for {nlist} lists"
        )));
    }
    if ntotal > 0 && !ivf.is_trained {
        return Err(invalid(format!(
            "{what}: {ntotal} vectors stored but is_trained is false"
        )));
    }
    if ivf.nprobe == 0 {
        return Err(invalid(format!("{what}: nprobe must be at least 1")));
    }
    if let Err(p) = check_ids(ids.clone(), ntotal) {
        return Err(invalid(format!(
            "{what}: list {} entry {}: {}",
            p.list, p.pos, p.msg
        )));
    }
    if let DirectMap::Array(array) = &ivf.direct_map {
        if array.len() != ntotal {
            return Err(invalid(format!(
                "{what}: direct map has {} entries for ntotal = {ntotal}",
                array.len()
            )));
        }
        let lists: Vec<&[i64]> = ids.collect();
        if let Err((id, msg)) = check_direct_map(array, &lists) {
            return Err(invalid(format!("{what}: direct map entry {id}: {msg}")));
        }
    }
    Ok(())
}

pub(super) fn validate_index(index: &Index, top: bool) -> Result<()> {
    match index {
        Index::Flat(f) => validate_flat(f, "flat index"),
        Index::IvfFlat(ivf) => {
            let d = ivf.ivf.d;
            for (i, l) in ivf.lists.iter().enumerate() {
                if l.codes.len() != l.ids.len() * d {
                    return Err(invalid(format!(
                        "IVF-Flat list {i}: {} floats of codes for {} ids (d = {d})",
                        l.codes.len(),
                        l.ids.len()
                    )));
                }
            }
            validate_ivf(
                &ivf.ivf,
                ivf.lists.len(),
                ivf.lists.iter().map(|l| l.ids.as_slice()),
                "IVF-Flat",
            )
        }
        Index::IvfPqFastScan(ivf) => {
            let pq = &ivf.pq;
            if pq.d != ivf.ivf.d {
                return Err(invalid(format!(
                    "IVF-PQ: PQ d = {} differs from d = {}",
                    pq.d, ivf.ivf.d
                )));
            }
            if pq.m == 0 || pq.d % pq.m != 0 {
                return Err(invalid(format!(
                    "IVF-PQ: M = {} does not divide d = {}",
                    pq.m, pq.d
                )));
            }
            if pq.nbits != 4 {
                return Err(invalid(format!(
                    "IVF-PQ fast-scan needs nbits = 4, not {}",
                    pq.nbits
                )));
            }
            if pq.centroids.len() != pq.d * pq.ksub() {
                return Err(invalid(format!(
                    "IVF-PQ: {} PQ centroid floats, expected d * 2^nbits = {}",
                    pq.centroids.len(),
                    pq.d * pq.ksub()
                )));
            }
            if ivf.bbs == 0 || ivf.bbs % 32 != 0 || ivf.bbs > i32::MAX as usize {
                return Err(invalid(format!(
                    "IVF-PQ: bbs = {} is not a positive multiple of 32",
                    ivf.bbs
                )));
            }
            let bs = ivf.block_size();
            for (i, l) in ivf.lists.iter().enumerate() {
                let want = l.ids.len().div_ceil(ivf.bbs) * bs;
                if l.codes.len() != want {
                    return Err(invalid(format!(
                        "IVF-PQ list {i}: {} code bytes for {} ids, expected {want}",
                        l.codes.len(),
                        l.ids.len()
                    )));
                }
            }
            validate_ivf(
                &ivf.ivf,
                ivf.lists.len(),
                ivf.lists.iter().map(|l| l.ids.as_slice()),
                "IVF-PQ",
            )
        }
        Index::Refine(r) => {
            if !top {
                return Err(invalid("a refine index cannot wrap another refine index"));
            }
            validate_index(&r.base, false)?;
            validate_flat(&r.refine, "refine index")?;
            if r.refine.d != r.base.d() || r.refine.ntotal() != r.base.ntotal() {
                return Err(invalid(format!(
                    "refine index holds {}×{} but the base index {}×{}",
                    r.refine.ntotal(),
                    r.refine.d,
                    r.base.ntotal(),
                    r.base.d()
                )));
            }
            if r.refine.metric != r.base.metric() {
                return Err(invalid(
                    "refine index metric differs from the base index metric",
                ));
            }
            if !(r.k_factor.is_finite() && (1.0..=1000.0).contains(&r.k_factor)) {
                return Err(invalid(format!(
                    "k_factor = {} outside [1, 1000]",
                    r.k_factor
                )));
            }
            Ok(())
        }
    }
}

/// A problem with the ids of an inverted list.
pub(crate) struct IdProblem {
    pub list: usize,
    pub pos: usize,
    pub msg: String,
}

/// Ids must be exactly a permutation of `0..ntotal` (RVC indexes
/// `reconstruct_n(0, ntotal)` with search ids).
pub(crate) fn check_ids<'a>(
    lists: impl Iterator<Item = &'a [i64]>,
    ntotal: usize,
) -> std::result::Result<(), IdProblem> {
    // `ntotal` is the sum of the list lengths, so this is backed by the data.
    let mut seen = vec![0u64; ntotal.div_ceil(64)];
    for (list, ids) in lists.enumerate() {
        for (pos, &id) in ids.iter().enumerate() {
            if id < 0 || id as u64 >= ntotal as u64 {
                return Err(IdProblem {
                    list,
                    pos,
                    msg: format!("id {id} outside 0..{ntotal}"),
                });
            }
            let (w, b) = (id as usize / 64, id as usize % 64);
            if seen[w] >> b & 1 == 1 {
                return Err(IdProblem {
                    list,
                    pos,
                    msg: format!("id {id} appears more than once"),
                });
            }
            seen[w] |= 1 << b;
        }
    }
    Ok(())
}

/// An `Array` direct map must point every id at the list entry holding it.
pub(crate) fn check_direct_map(
    array: &[i64],
    lists: &[&[i64]],
) -> std::result::Result<(), (usize, String)> {
    for (id, &v) in array.iter().enumerate() {
        let (list, off) = ((v as u64 >> 32) as usize, (v as u64 & 0xffff_ffff) as usize);
        let ok = v >= 0
            && list < lists.len()
            && off < lists[list].len()
            && lists[list][off] == id as i64;
        if !ok {
            return Err((
                id,
                format!("value {v:#x} (list {list}, offset {off}) does not locate id {id}"),
            ));
        }
    }
    Ok(())
}
