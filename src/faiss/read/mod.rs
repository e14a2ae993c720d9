//! Reader. The whole file is validated: every count is checked against the
//! bytes that remain before anything is allocated for it, big arrays are read
//! straight into their final `Vec` (one copy, no per-element parsing), and the
//! semantics faiss and RVC rely on (list sizes add up to ntotal, ids are a
//! permutation of `0..ntotal`, quantizer shape, code sizes, no trailing bytes)
//! are checked. Every failure is an [`Error::Format`] naming the byte offset
//! and the field, or an [`Error::Unsupported`] naming the fourcc.

use std::io::{BufReader, ErrorKind, Read};
use std::path::Path;

use bytemuck::{Pod, Zeroable};

use super::fastscan;
use super::model::{
    BlockList, DirectMap, Flat, FlatList, Index, Ivf, IvfFlat, IvfPqFs, MAX_D, ProductQuantizer,
    RefineFlat, SizeTable, check_direct_map, check_ids,
};
use crate::{Error, Metric, Result};

#[cfg(target_endian = "big")]
compile_error!("faiss index files are little-endian; big-endian hosts are not supported");

/// Most lists an IVF index may declare without anything in the file backing
/// them (an untrained index: no centroids, a sparse size table). Every other
/// count is backed by at least 4 bytes of the file per element.
pub const MAX_UNBACKED_NLIST: u64 = 1 << 16;

/// Read and validate the faiss index stored in `path`.
pub fn read_index(path: impl AsRef<Path>) -> Result<Index> {
    let path = path.as_ref();
    let (file, len) = crate::io::open_regular(path)?;
    let mut rd = Rd::new(BufReader::with_capacity(8 << 10, file), len, path);
    let index = parse_top(&mut rd)?;
    // A file that grew while being read.
    let mut probe = [0u8; 1];
    match rd.r.read(&mut probe) {
        Ok(0) => Ok(index),
        Ok(_) => Err(rd.fail(len, "end of index", "the file grew while it was being read")),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Read and validate an index held in memory; `path` only names it in errors.
pub fn read_index_from_bytes(bytes: &[u8], path: impl AsRef<Path>) -> Result<Index> {
    let mut rd = Rd::new(bytes, bytes.len() as u64, path.as_ref());
    parse_top(&mut rd)
}

fn parse_top<R: Read>(rd: &mut Rd<R>) -> Result<Index> {
    let index = parse_index(rd, Role::Top)?;
    if rd.pos != rd.len {
        let n = rd.len - rd.pos;
        return Err(rd.fail(
            rd.pos,
            "end of index",
            format!(
                "{n} trailing byte{} after the index",
                if n == 1 { "" } else { "s" }
            ),
        ));
    }
    Ok(index)
}

/// Where an index sits in the file; decides which types may appear.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Top,
    RefineBase,
    Quantizer,
    RefineFlat,
}

mod ivf;
mod pqfs;
mod reader;

use ivf::parse_ivf_flat;
use pqfs::parse_ivf_pqfs;
use reader::{Header, Rd, fourcc_str};

fn parse_index<R: Read>(rd: &mut Rd<R>, role: Role) -> Result<Index> {
    let off = rd.pos;
    let f = rd.fourcc("fourcc")?;
    let label = fourcc_str(&f);
    let seg = |name: &str| match role {
        Role::Top => label.clone(),
        _ => format!("{name}({label})"),
    };
    rd.ctx.push(seg(match role {
        Role::Top => "",
        Role::RefineBase => "base",
        Role::Quantizer => "quantizer",
        Role::RefineFlat => "refine",
    }));
    let out = match (&f, role) {
        (b"IxF2" | b"IxFI", _) => parse_flat(rd, &f).map(Index::Flat),
        (b"IwFl", Role::Top | Role::RefineBase) => parse_ivf_flat(rd).map(Index::IvfFlat),
        (b"IwPf", Role::Top | Role::RefineBase) => parse_ivf_pqfs(rd).map(Index::IvfPqFastScan),
        (b"IxRF", Role::Top) => parse_refine(rd).map(|r| Index::Refine(Box::new(r))),
        _ => {
            rd.ctx.pop();
            let what = match role {
                Role::Top => "",
                Role::RefineBase => " as the base of a refine index",
                Role::Quantizer => " as an IVF quantizer (only IxF2/IxFI are supported)",
                Role::RefineFlat => " as a refine index (only IxF2/IxFI are supported)",
            };
            let looks_like_fourcc = f.iter().all(|b| b.is_ascii_alphanumeric());
            if !looks_like_fourcc && role == Role::Top {
                return Err(rd.fail(
                    off,
                    "fourcc",
                    format!(
                        "not a faiss index: the file starts with bytes {}",
                        fourcc_str(&f)
                    ),
                ));
            }
            if !looks_like_fourcc {
                return Err(rd.fail(
                    off,
                    "fourcc",
                    format!("expected an index fourcc, found {}", fourcc_str(&f)),
                ));
            }
            return Err(rd.unsupported(off, &f, what));
        }
    };
    if out.is_ok() {
        rd.ctx.pop();
    }
    out
}

fn parse_flat<R: Read>(rd: &mut Rd<R>, f: &[u8; 4]) -> Result<Flat> {
    let h = rd.header()?;
    let want = if f == b"IxF2" {
        Metric::L2
    } else {
        Metric::InnerProduct
    };
    if h.metric != want {
        return Err(rd.fail(
            h.off_metric(),
            "metric_type",
            format!(
                "fourcc {} means metric {want} but the header says {}",
                fourcc_str(f),
                h.metric
            ),
        ));
    }
    let off = rd.pos;
    let count = rd.u64("xb count")?;
    let expect = h.ntotal.checked_mul(h.d as u64);
    if expect != Some(count) {
        return Err(rd.fail(
            off,
            "xb count",
            match expect {
                Some(e) => format!(
                    "{count} floats stored, but ntotal × d = {} × {} = {e}",
                    h.ntotal, h.d
                ),
                None => format!("ntotal × d = {} × {} overflows", h.ntotal, h.d),
            },
        ));
    }
    let xb = rd.array::<f32>(count, off, "xb")?;
    Ok(Flat {
        d: h.d,
        metric: h.metric,
        is_trained: h.is_trained,
        xb,
    })
}

fn parse_refine<R: Read>(rd: &mut Rd<R>) -> Result<RefineFlat> {
    let h = rd.header()?;
    let boff = rd.pos;
    let base = parse_index(rd, Role::RefineBase)?;
    let roff = rd.pos;
    let refine = match parse_index(rd, Role::RefineFlat)? {
        Index::Flat(r) => r,
        _ => unreachable!("the refine role only admits flat indexes"),
    };
    let koff = rd.pos;
    let k_factor = rd.f32("k_factor")?;
    if !(k_factor.is_finite() && (1.0..=1000.0).contains(&k_factor)) {
        return Err(rd.fail(
            koff,
            "k_factor",
            format!("k_factor = {k_factor} outside [1, 1000]"),
        ));
    }
    for (sub_off, name, d, ntotal, metric) in [
        (boff, "base", base.d(), base.ntotal(), base.metric()),
        (roff, "refine", refine.d, refine.ntotal(), refine.metric),
    ] {
        let fld = format!("{name}.header");
        if d != h.d {
            return Err(rd.fail(
                sub_off + 4,
                &fld,
                format!(
                    "{name} index d = {d} but the refine wrapper has d = {}",
                    h.d
                ),
            ));
        }
        if ntotal as u64 != h.ntotal {
            return Err(rd.fail(
                sub_off + 8,
                &fld,
                format!("{name} index ntotal = {ntotal} but the refine wrapper has ntotal = {} (at byte {})", h.ntotal, h.off_ntotal()),
            ));
        }
        if metric != h.metric {
            return Err(rd.fail(
                sub_off + 33,
                &fld,
                format!(
                    "{name} index metric {metric} but the refine wrapper has {}",
                    h.metric
                ),
            ));
        }
    }
    Ok(RefineFlat {
        is_trained: h.is_trained,
        base,
        refine,
        k_factor,
    })
}
