//! IVF with 4-bit fast-scan PQ codes.

use super::ivf::{check_lists, dm_array_offset, invlists_header, parse_ivf_common};
use super::*;

pub(super) fn parse_ivf_pqfs<R: Read>(rd: &mut Rd<R>) -> Result<IvfPqFs> {
    let (ivf, h, nlist, nlist_off) = parse_ivf_common(rd)?;
    let dm_array_off = dm_array_offset(rd, &ivf);
    let by_residual = rd.bool("by_residual")?;
    let _code_size = rd.u64("code_size")?; // recomputed from the PQ by faiss
    let bbs_off = rd.pos;
    let bbs = rd.i32("bbs")?;
    if bbs <= 0 || bbs % 32 != 0 {
        return Err(rd.fail(
            bbs_off,
            "bbs",
            format!("bbs = {bbs} is not a positive multiple of 32"),
        ));
    }
    let bbs = bbs as usize;
    let m2_off = rd.pos;
    let m2 = rd.u64("M2")?;
    let implem = rd.i32("implem")?;
    let qbs2 = rd.u64("qbs2")?;
    rd.ctx.push("pq".into());
    let off = rd.pos;
    let pq_d = rd.u64("d")?;
    if pq_d != h.d as u64 {
        return Err(rd.fail(
            off,
            "d",
            format!("PQ d = {pq_d} but the index has d = {}", h.d),
        ));
    }
    let m_off = rd.pos;
    let m = rd.u64("M")?;
    if m == 0 || pq_d % m != 0 {
        return Err(rd.fail(m_off, "M", format!("M = {m} does not divide d = {pq_d}")));
    }
    let off = rd.pos;
    let nbits = rd.u64("nbits")?;
    if nbits != 4 {
        return Err(rd.fail(off, "nbits", format!("nbits = {nbits}; fast-scan needs 4")));
    }
    let centroids = {
        let off = rd.pos;
        let count = rd.u64("centroids count")?;
        if count != pq_d * 16 {
            return Err(rd.fail(
                off,
                "centroids count",
                format!("{count} floats, expected d × 2^nbits = {}", pq_d * 16),
            ));
        }
        rd.array::<f32>(count, off, "centroids")?
    };
    rd.ctx.pop();
    let m = m as usize;
    if m2 != fastscan::m2(m) as u64 {
        return Err(rd.fail(
            m2_off,
            "M2",
            format!(
                "M2 = {m2} but M = {m} (at byte {m_off}) rounds up to {}",
                fastscan::m2(m)
            ),
        ));
    }
    let block_size = fastscan::block_size(bbs, m2 as usize) as u64;
    invlists_header(rd, b"ilbl", "IwPf needs ilbl lists", nlist, nlist_off)?;
    let _code_size = rd.u64("code_size")?; // faiss writes -1 and ignores it
    let off = rd.pos;
    let npb = rd.u64("n_per_block")?;
    if npb != bbs as u64 {
        return Err(rd.fail(
            off,
            "n_per_block",
            format!("n_per_block = {npb} but bbs = {bbs} (at byte {bbs_off})"),
        ));
    }
    let off = rd.pos;
    let bsz = rd.u64("block_size")?;
    if bsz != block_size {
        return Err(rd.fail(
            off,
            "block_size",
            format!("block_size = {bsz}, expected bbs × M2 / 2 = {block_size}"),
        ));
    }
    // Each list takes at least its two 8-byte counts.
    if nlist.checked_mul(16).is_none_or(|b| b > rd.remaining()) {
        return Err(rd.fail(
            nlist_off,
            "nlist",
            format!(
                "{nlist} lists need at least {} bytes but only {} are left at byte {}",
                nlist as u128 * 16,
                rd.remaining(),
                rd.pos
            ),
        ));
    }
    let mut lists = Vec::with_capacity(nlist as usize);
    let mut id_offsets = Vec::with_capacity(nlist as usize);
    let mut total: u64 = 0;
    for i in 0..nlist as usize {
        let (ioff, ids) = rd.vector::<i64>(&format!("list[{i}].ids"))?;
        id_offsets.push(ioff + 8);
        total += ids.len() as u64;
        if total > h.ntotal {
            return Err(rd.fail(
                ioff,
                &format!("list[{i}].ids count"),
                format!(
                    "the lists so far hold {total} entries, more than ntotal = {} (at byte {})",
                    h.ntotal,
                    h.off_ntotal()
                ),
            ));
        }
        let coff = rd.pos;
        let count = rd.u64(&format!("list[{i}].codes count"))?;
        let want = (ids.len() as u64).div_ceil(bbs as u64) * block_size;
        if count != want {
            return Err(rd.fail(
                coff,
                &format!("list[{i}].codes count"),
                format!("{count} code bytes for {} entries; expected {want} ({} blocks of {block_size})", ids.len(), want / block_size),
            ));
        }
        let codes = rd.array::<u8>(count, coff, &format!("list[{i}].codes"))?;
        lists.push(BlockList { ids, codes });
    }
    rd.ctx.pop();
    let id_slices: Vec<&[i64]> = lists.iter().map(|l| l.ids.as_slice()).collect();
    check_lists(
        rd,
        &ivf,
        &h,
        &id_slices,
        &id_offsets,
        dm_array_off,
        h.is_trained,
    )?;
    Ok(IvfPqFs {
        ivf,
        by_residual,
        bbs,
        implem,
        qbs2,
        pq: ProductQuantizer {
            d: pq_d as usize,
            m,
            nbits: nbits as usize,
            centroids,
        },
        lists,
    })
}
