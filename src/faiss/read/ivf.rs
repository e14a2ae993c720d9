//! The IVF part common to every IVF kind, and IVF-Flat.

use super::*;

/// The IVF common part after the fourcc: header, nlist, nprobe, quantizer,
/// direct map. Returns the header too (for ntotal) and nlist with its offset.
pub(super) fn parse_ivf_common<R: Read>(rd: &mut Rd<R>) -> Result<(Ivf, Header, u64, u64)> {
    let h = rd.header()?;
    let nlist_off = rd.pos;
    let nlist = rd.u64("nlist")?;
    if nlist == 0 {
        return Err(rd.fail(nlist_off, "nlist", "nlist must be at least 1"));
    }
    let nprobe_off = rd.pos;
    let nprobe = rd.u64("nprobe")?;
    if nprobe == 0 || nprobe > i64::MAX as u64 {
        return Err(rd.fail(
            nprobe_off,
            "nprobe",
            format!("nprobe = {nprobe}; it must be in 1..2^63"),
        ));
    }
    let qoff = rd.pos;
    let quantizer = match parse_index(rd, Role::Quantizer)? {
        Index::Flat(q) => q,
        _ => unreachable!("the quantizer role only admits flat indexes"),
    };
    rd.ctx.push(format!(
        "quantizer({})",
        fourcc_str(crate::faiss::model::flat_fourcc(quantizer.metric))
    ));
    if quantizer.d != h.d {
        let e = rd.fail(
            qoff + 4,
            "d",
            format!(
                "quantizer d = {} but the IVF index has d = {}",
                quantizer.d, h.d
            ),
        );
        return Err(e);
    }
    if quantizer.metric != h.metric {
        rd.ctx.pop();
        return Err(Error::Unsupported(format!(
            "quantizer metric {} differs from the IVF metric {} (at byte {} of {})",
            quantizer.metric,
            h.metric,
            qoff + 4 + 29,
            rd.path.display()
        )));
    }
    let qn = quantizer.ntotal() as u64;
    let untrained_empty = qn == 0 && !h.is_trained;
    if qn != nlist && !untrained_empty {
        return Err(rd.fail(
            qoff + 8,
            "ntotal",
            format!("the quantizer holds {qn} centroids but nlist = {nlist} (at byte {nlist_off})"),
        ));
    }
    rd.ctx.pop();
    let dm_off = rd.pos;
    let dm_type = rd.u8("direct_map.type")?;
    let direct_map = match dm_type {
        0 | 1 => {
            let (aoff, array) = rd.vector::<i64>("direct_map.array")?;
            if dm_type == 0 {
                if !array.is_empty() {
                    return Err(rd.fail(
                        aoff,
                        "direct_map.array",
                        format!("NoMap direct map with {} entries", array.len()),
                    ));
                }
                DirectMap::NoMap
            } else {
                if array.len() as u64 != h.ntotal {
                    return Err(rd.fail(
                        aoff,
                        "direct_map.array",
                        format!(
                            "Array direct map has {} entries but ntotal = {}",
                            array.len(),
                            h.ntotal
                        ),
                    ));
                }
                DirectMap::Array(array)
            }
        }
        2 => {
            return Err(Error::Unsupported(format!(
                "{} with a Hashtable direct map, at byte {dm_off} of {}",
                rd.ctx.join("."),
                rd.path.display()
            )));
        }
        t => {
            return Err(rd.fail(
                dm_off,
                "direct_map.type",
                format!("unknown direct map type {t}"),
            ));
        }
    };
    if nlist > i64::MAX as u64 {
        return Err(rd.fail(
            nlist_off,
            "nlist",
            format!("nlist = {nlist} is out of range"),
        ));
    }
    let ivf = Ivf {
        d: h.d,
        metric: h.metric,
        is_trained: h.is_trained,
        nprobe: nprobe as usize,
        quantizer,
        direct_map,
    };
    Ok((ivf, h, nlist, nlist_off))
}

/// Checks shared by both IVF kinds once the lists are in: sizes add up to
/// ntotal, ids are a permutation of 0..ntotal, the direct map is right.
pub(super) fn check_lists<R: Read>(
    rd: &Rd<R>,
    ivf: &Ivf,
    h: &Header,
    lists: &[&[i64]],
    id_offsets: &[u64],
    dm_array_off: u64,
    is_trained: bool,
) -> Result<()> {
    let total: u64 = lists.iter().map(|l| l.len() as u64).sum();
    if total != h.ntotal {
        return Err(rd.fail(
            h.off_ntotal(),
            "ntotal",
            format!(
                "ntotal = {} but the inverted lists hold {total} entries",
                h.ntotal
            ),
        ));
    }
    if total > 0 && !is_trained {
        return Err(rd.fail(
            h.off + 28,
            "is_trained",
            format!("{total} vectors stored in an untrained index"),
        ));
    }
    if let Err(p) = check_ids(lists.iter().copied(), total as usize) {
        return Err(rd.fail(
            id_offsets[p.list] + 8 * p.pos as u64,
            &format!("invlists.list[{}].ids[{}]", p.list, p.pos),
            p.msg,
        ));
    }
    if let DirectMap::Array(array) = &ivf.direct_map
        && let Err((id, msg)) = check_direct_map(array, lists)
    {
        return Err(rd.fail(
            dm_array_off + 8 + 8 * id as u64,
            &format!("direct_map.array[{id}]"),
            msg,
        ));
    }
    Ok(())
}

pub(super) fn parse_ivf_flat<R: Read>(rd: &mut Rd<R>) -> Result<IvfFlat> {
    let (ivf, h, nlist, nlist_off) = parse_ivf_common(rd)?;
    let dm_array_off = dm_array_offset(rd, &ivf);
    invlists_header(rd, b"ilar", "IwFl needs ilar lists", nlist, nlist_off)?;
    let off = rd.pos;
    let code_size = rd.u64("code_size")?;
    if code_size != 4 * h.d as u64 {
        return Err(rd.fail(
            off,
            "code_size",
            format!(
                "code_size = {code_size}, but IVF-Flat stores 4 × d = {} bytes per vector",
                4 * h.d
            ),
        ));
    }
    let off = rd.pos;
    let lt = rd.fourcc("list_type")?;
    let size_table = match &lt {
        b"full" => SizeTable::Full,
        b"sprs" => SizeTable::Sparse,
        _ => {
            return Err(rd.fail(
                off,
                "list_type",
                format!(
                    "unknown size-table type {}; expected full or sprs",
                    fourcc_str(&lt)
                ),
            ));
        }
    };
    let toff = rd.pos;
    let count = rd.u64("sizes count")?;
    let count_ok = match size_table {
        SizeTable::Full => count == nlist,
        _ => count % 2 == 0 && count / 2 <= nlist,
    };
    if !count_ok {
        let msg = match size_table {
            SizeTable::Full => format!("full size table has {count} entries for nlist = {nlist}"),
            _ if count % 2 != 0 => format!("sparse size table has odd length {count}"),
            _ => format!(
                "sparse size table has {} pairs for nlist = {nlist}",
                count / 2
            ),
        };
        return Err(rd.fail(toff, "sizes", msg));
    }
    let table = rd.array::<u64>(count, toff, "sizes")?;
    let sizes: Vec<u64> = match size_table {
        SizeTable::Full => table,
        _ => {
            let backed = ivf.quantizer.ntotal() as u64 == nlist;
            if !backed && nlist > MAX_UNBACKED_NLIST {
                return Err(rd.fail(
                    nlist_off,
                    "nlist",
                    format!("nlist = {nlist} with no centroids stored; more than {MAX_UNBACKED_NLIST} lists need a trained quantizer"),
                ));
            }
            let mut sizes = vec![0u64; nlist as usize];
            let mut prev: Option<u64> = None;
            for (k, pair) in table.chunks_exact(2).enumerate() {
                let (list_no, n) = (pair[0], pair[1]);
                let eoff = toff + 8 + 16 * k as u64;
                if list_no >= nlist {
                    return Err(rd.fail(
                        eoff,
                        &format!("sizes[{}]", 2 * k),
                        format!("list number {list_no} >= nlist = {nlist}"),
                    ));
                }
                if prev.is_some_and(|p| list_no <= p) {
                    return Err(rd.fail(
                        eoff,
                        &format!("sizes[{}]", 2 * k),
                        format!("list number {list_no} is not after {}", prev.unwrap()),
                    ));
                }
                if n == 0 {
                    return Err(rd.fail(
                        eoff + 8,
                        &format!("sizes[{}]", 2 * k + 1),
                        format!("list {list_no} is listed with size 0"),
                    ));
                }
                prev = Some(list_no);
                sizes[list_no as usize] = n;
            }
            sizes
        }
    };
    // Everything the table promises must fit in what is left.
    let per = code_size as u128 + 8;
    let need: u128 = sizes
        .iter()
        .fold(0u128, |acc, &n| acc.saturating_add(n as u128 * per));
    if need > rd.remaining() as u128 {
        return Err(rd.fail(
            toff,
            "sizes",
            format!(
                "the lists add up to {} entries = {need} bytes of codes and ids, but only {} bytes are left",
                sizes.iter().map(|&n| n as u128).sum::<u128>(),
                rd.remaining()
            ),
        ));
    }
    let total: u128 = sizes.iter().map(|&n| n as u128).sum();
    if total != h.ntotal as u128 {
        return Err(rd.fail(
            toff,
            "sizes",
            format!(
                "the list sizes add up to {total} but ntotal = {} (at byte {})",
                h.ntotal,
                h.off_ntotal()
            ),
        ));
    }
    let d = h.d as u64;
    let mut lists = Vec::with_capacity(sizes.len());
    let mut id_offsets = Vec::with_capacity(sizes.len());
    for (i, &n) in sizes.iter().enumerate() {
        if n == 0 {
            lists.push(FlatList::default());
            id_offsets.push(rd.pos);
            continue;
        }
        let coff = rd.pos;
        let codes = rd.array::<f32>(n * d, coff, &format!("list[{i}].codes"))?;
        id_offsets.push(rd.pos);
        let ioff = rd.pos;
        let ids = rd.array::<i64>(n, ioff, &format!("list[{i}].ids"))?;
        lists.push(FlatList { ids, codes });
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
    Ok(IvfFlat {
        ivf,
        size_table,
        lists,
    })
}

/// Byte offset of the direct map's array count: the direct map is the last
/// thing of the IVF common part (type byte, then the vector).
pub(super) fn dm_array_offset<R: Read>(rd: &Rd<R>, ivf: &Ivf) -> u64 {
    let array_bytes = match &ivf.direct_map {
        DirectMap::NoMap => 0,
        DirectMap::Array(a) => 8 * a.len() as u64,
    };
    rd.pos - array_bytes - 8
}

/// The inverted lists' fourcc (`want`) and list count (must equal the IVF
/// header's `nlist`); pushes the lists' context for later error messages.
pub(super) fn invlists_header<R: Read>(
    rd: &mut Rd<R>,
    want: &[u8; 4],
    need: &str,
    nlist: u64,
    nlist_off: u64,
) -> Result<()> {
    let il_off = rd.pos;
    let ilf = rd.fourcc("invlists fourcc")?;
    if &ilf != want {
        return Err(invlists_error(rd, il_off, &ilf, need));
    }
    rd.ctx.push(format!("invlists({})", fourcc_str(want)));
    let off = rd.pos;
    let n2 = rd.u64("nlist")?;
    if n2 != nlist {
        return Err(rd.fail(
            off,
            "nlist",
            format!("{n2} lists but the IVF index has nlist = {nlist} (at byte {nlist_off})"),
        ));
    }
    Ok(())
}

pub(super) fn invlists_error<R: Read>(rd: &Rd<R>, off: u64, f: &[u8; 4], need: &str) -> Error {
    if f.iter().all(|b| b.is_ascii_alphanumeric()) {
        rd.unsupported(off, f, &format!(" ({need})"))
    } else {
        rd.fail(
            off,
            "invlists fourcc",
            format!("expected inverted lists, found {}", fourcc_str(f)),
        )
    }
}
