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
enum Role {
    Top,
    RefineBase,
    Quantizer,
    RefineFlat,
}

struct Rd<'p, R> {
    r: R,
    pos: u64,
    len: u64,
    path: &'p Path,
    ctx: Vec<String>,
}

/// The parsed common header of an index, with where its fields are.
struct Header {
    off: u64,
    d: usize,
    ntotal: u64,
    is_trained: bool,
    metric: Metric,
}

impl Header {
    fn off_ntotal(&self) -> u64 {
        self.off + 4
    }
    fn off_metric(&self) -> u64 {
        self.off + 29
    }
}

fn fourcc_str(f: &[u8; 4]) -> String {
    f.iter()
        .map(|&b| {
            if b.is_ascii_graphic() {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// What a fourcc this crate does not handle stands for, if it is a known one.
fn known_fourcc(f: &[u8; 4]) -> Option<&'static str> {
    Some(match f {
        b"IxFl" => "IndexFlat with a metric other than L2 or inner product",
        b"IxFP" | b"IxFp" => "IndexFlatPanorama",
        b"IxPQ" | b"IxPq" => "IndexPQ",
        b"IxPo" => "IndexPQ (old layout)",
        b"IxRQ" | b"IxRq" => "IndexResidualQuantizer",
        b"IxLS" => "IndexLocalSearchQuantizer",
        b"IxSQ" | b"IxSq" => "IndexScalarQuantizer",
        b"IxLa" | b"IxLb" => "IndexLattice",
        b"IxHE" | b"IxHe" => "IndexLSH",
        b"IxMp" | b"IxM2" => "IndexIDMap",
        b"IxPT" => "IndexPreTransform",
        b"IxRF" => "IndexRefineFlat",
        b"IxRP" => "IndexRefinePanorama",
        b"IxSh" => "IndexShards",
        b"IxFa" | b"IxF1" => "IndexFlat1D",
        b"IHNf" | b"IHNp" | b"IHNs" | b"IHN2" | b"IHNc" | b"IHc2" => "IndexHNSW",
        b"INSf" => "IndexNSG",
        b"INNf" => "IndexNNDescent",
        b"IwPQ" | b"IvPQ" | b"IvFP" => "IndexIVFPQ",
        b"IwQR" | b"IvQR" => "IndexIVFPQR",
        b"IwSQ" | b"IwSq" | b"IvSQ" => "IndexIVFScalarQuantizer",
        b"IwSh" => "IndexIVFSpectralHash",
        b"IwRQ" | b"IwLS" | b"IwPR" | b"IwPL" => "IndexIVF additive quantizer",
        b"IwFs" => "IndexIVFFlatDedup",
        b"IwFd" => "IndexIVFFlatDedup",
        b"IwP2" => "IndexIVFPQFastScan (newer layout)",
        b"IwPn" => "IndexIVFFlatPanorama",
        b"IwRb" | b"IwRB" | b"Ixrq" | b"IxRb" => "RaBitQ index",
        b"ImRQ" | b"ImPQ" => "index with IVF residual coarse quantizer",
        b"IPfs" | b"IPRf" => "IndexPQFastScan",
        b"IRfs" | b"ILfs" => "IndexAdditiveQuantizerFastScan",
        b"IwRf" | b"IwLf" => "IndexIVF additive quantizer fast-scan",
        b"IwPf" => "IndexIVFPQFastScan",
        b"IwFl" => "IndexIVFFlat",
        b"IxF2" => "IndexFlatL2",
        b"IxFI" => "IndexFlatIP",
        b"il00" => "no inverted lists stored (il00)",
        b"ilar" => "ArrayInvertedLists",
        b"ilbl" => "BlockInvertedLists",
        b"ilod" => "OnDiskInvertedLists",
        b"ilpn" | b"ilp2" => "Panorama inverted lists",
        b"null" => "no index (null)",
        _ => return None,
    })
}

impl<'p, R: Read> Rd<'p, R> {
    fn new(r: R, len: u64, path: &'p Path) -> Self {
        Rd {
            r,
            pos: 0,
            len,
            path,
            ctx: Vec::new(),
        }
    }

    fn field(&self, name: &str) -> String {
        let mut s = self.ctx.join(".");
        if !name.is_empty() {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(name);
        }
        s
    }

    fn fail(&self, offset: u64, field: &str, msg: impl Into<String>) -> Error {
        Error::Format {
            path: self.path.to_path_buf(),
            offset,
            field: self.field(field),
            msg: msg.into(),
        }
    }

    fn unsupported(&self, offset: u64, f: &[u8; 4], what: &str) -> Error {
        let name = match known_fourcc(f) {
            Some(n) => format!(" ({n})"),
            None => String::new(),
        };
        let place = if self.ctx.is_empty() {
            String::new()
        } else {
            format!(" in {}", self.ctx.join("."))
        };
        Error::Unsupported(format!(
            "{}{name}{what}{place}, at byte {offset} of {}",
            fourcc_str(f),
            self.path.display()
        ))
    }

    fn remaining(&self) -> u64 {
        self.len - self.pos
    }

    /// Fill `buf` from the file; `field` names it in errors.
    fn fill(&mut self, buf: &mut [u8], field: &str) -> Result<()> {
        let need = buf.len() as u64;
        if need > self.remaining() {
            return Err(self.fail(
                self.pos,
                field,
                format!(
                    "needs {need} bytes but the file ends {} bytes later, at byte {}",
                    self.remaining(),
                    self.len
                ),
            ));
        }
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.pos += need;
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(self.fail(
                self.pos,
                field,
                "unexpected end of file (the file shrank while it was being read)",
            )),
            Err(e) => Err(Error::io(self.path, e)),
        }
    }

    fn scalar<const N: usize>(&mut self, field: &str) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.fill(&mut b, field)?;
        Ok(b)
    }

    fn u8(&mut self, field: &str) -> Result<u8> {
        Ok(self.scalar::<1>(field)?[0])
    }
    fn i32(&mut self, field: &str) -> Result<i32> {
        Ok(i32::from_le_bytes(self.scalar(field)?))
    }
    fn i64(&mut self, field: &str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.scalar(field)?))
    }
    fn u64(&mut self, field: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.scalar(field)?))
    }
    fn f32(&mut self, field: &str) -> Result<f32> {
        Ok(f32::from_le_bytes(self.scalar(field)?))
    }
    fn fourcc(&mut self, field: &str) -> Result<[u8; 4]> {
        self.scalar(field)
    }

    /// A strict bool byte (faiss >= 1.14 rejects anything but 0 and 1).
    fn bool(&mut self, field: &str) -> Result<bool> {
        let off = self.pos;
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.fail(off, field, format!("boolean byte is {b}, not 0 or 1"))),
        }
    }

    /// `count` elements of `T`, checked against the remaining bytes before
    /// allocating; `count_off` is where the count was read (for errors).
    fn array<T: Pod + Zeroable>(
        &mut self,
        count: u64,
        count_off: u64,
        field: &str,
    ) -> Result<Vec<T>> {
        let size = std::mem::size_of::<T>() as u64;
        let fits = count
            .checked_mul(size)
            .is_some_and(|b| b <= self.remaining());
        if !fits {
            let bytes = if size == 1 {
                String::new()
            } else {
                format!(" × {size} = {} bytes", count as u128 * size as u128)
            };
            return Err(self.fail(
                count_off,
                field,
                format!(
                    "count {count}{bytes} exceeds the {} bytes left in the file",
                    self.remaining()
                ),
            ));
        }
        let mut v = vec![T::zeroed(); count as usize];
        self.fill(bytemuck::cast_slice_mut(&mut v), field)?;
        Ok(v)
    }

    /// A `std::vector<T>`: u64 element count, then the elements.
    fn vector<T: Pod + Zeroable>(&mut self, field: &str) -> Result<(u64, Vec<T>)> {
        let off = self.pos;
        let count = self.u64(&format!("{field} count"))?;
        Ok((off, self.array(count, off, field)?))
    }

    fn header(&mut self) -> Result<Header> {
        let off = self.pos;
        let d = self.i32("d")?;
        if d <= 0 || d as usize > MAX_D {
            return Err(self.fail(off, "d", format!("d = {d} outside 1..={MAX_D}")));
        }
        let ntotal = self.i64("ntotal")?;
        if ntotal < 0 {
            return Err(self.fail(off + 4, "ntotal", format!("ntotal = {ntotal} is negative")));
        }
        self.i64("dummy")?;
        self.i64("dummy")?;
        let is_trained = self.bool("is_trained")?;
        let moff = self.pos;
        let code = self.i32("metric_type")?;
        let metric = match Metric::from_faiss_code(code) {
            Some(m) => m,
            None => {
                let name = match code {
                    2 => "L1",
                    3 => "Linf",
                    4 => "Lp",
                    20 => "Canberra",
                    21 => "BrayCurtis",
                    22 => "JensenShannon",
                    23 => "Jaccard",
                    24 => "NaNEuclidean",
                    25 => "GOWER",
                    _ => {
                        return Err(self.fail(
                            moff,
                            "metric_type",
                            format!("unknown metric type {code}"),
                        ));
                    }
                };
                return Err(Error::Unsupported(format!(
                    "metric {name} ({code}) in {} (only L2 and inner product are supported), at byte {moff} of {}",
                    self.ctx.join("."),
                    self.path.display()
                )));
            }
        };
        Ok(Header {
            off,
            d: d as usize,
            ntotal: ntotal as u64,
            is_trained,
            metric,
        })
    }
}

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

/// The IVF common part after the fourcc: header, nlist, nprobe, quantizer,
/// direct map. Returns the header too (for ntotal) and nlist with its offset.
fn parse_ivf_common<R: Read>(rd: &mut Rd<R>) -> Result<(Ivf, Header, u64, u64)> {
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
        fourcc_str(super::model::flat_fourcc(quantizer.metric))
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
fn check_lists<R: Read>(
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

fn parse_ivf_flat<R: Read>(rd: &mut Rd<R>) -> Result<IvfFlat> {
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
fn dm_array_offset<R: Read>(rd: &Rd<R>, ivf: &Ivf) -> u64 {
    let array_bytes = match &ivf.direct_map {
        DirectMap::NoMap => 0,
        DirectMap::Array(a) => 8 * a.len() as u64,
    };
    rd.pos - array_bytes - 8
}

/// The inverted lists' fourcc (`want`) and list count (must equal the IVF
/// header's `nlist`); pushes the lists' context for later error messages.
fn invlists_header<R: Read>(
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

fn invlists_error<R: Read>(rd: &Rd<R>, off: u64, f: &[u8; 4], need: &str) -> Error {
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

fn parse_ivf_pqfs<R: Read>(rd: &mut Rd<R>) -> Result<IvfPqFs> {
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
