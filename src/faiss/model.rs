//! In-memory model of the faiss index files this crate reads and writes.
//!
//! Every field faiss stores and uses is kept; fields faiss ignores on read (the
//! two "dummy" header words, `ilbl.code_size`, `IwPf.code_size`) are derived and
//! written back the way faiss writes them, so a file faiss wrote round-trips byte
//! for byte. Counts that faiss stores redundantly (`ntotal`, `nlist`, `M2`) are
//! derived from the data here and checked against the file when reading.

use crate::{Error, Metric, Result};

use super::fastscan;

/// Largest dimension faiss accepts on read (faiss >= 1.14 checks `d <= 2^20`).
pub const MAX_D: usize = 1 << 20;

/// One index, as stored in a faiss file.
#[derive(Clone, Debug, PartialEq)]
pub enum Index {
    /// `IxF2` / `IxFI`: IndexFlatL2 / IndexFlatIP.
    Flat(Flat),
    /// `IwFl`: IndexIVFFlat with `ilar` lists.
    IvfFlat(IvfFlat),
    /// `IwPf`: IndexIVFPQFastScan (4-bit PQ) with `ilbl` lists.
    IvfPqFastScan(IvfPqFs),
    /// `IxRF`: IndexRefineFlat around one of the others.
    Refine(Box<RefineFlat>),
}

/// A flat index: `ntotal` raw vectors, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Flat {
    pub d: usize,
    pub metric: Metric,
    /// faiss writes 1 for every flat index; kept for exact round trips.
    pub is_trained: bool,
    /// `ntotal * d` floats; vector i is `xb[i*d .. (i+1)*d]`.
    pub xb: Vec<f32>,
}

/// How a direct map (id -> list position) is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectMap {
    NoMap,
    /// `array[id] = (list_no << 32) | offset_in_list`, one entry per id
    /// (what faiss' `make_direct_map()` builds).
    Array(Vec<i64>),
}

/// The part shared by every IVF index.
#[derive(Clone, Debug, PartialEq)]
pub struct Ivf {
    pub d: usize,
    pub metric: Metric,
    pub is_trained: bool,
    /// Lists probed by a search; faiss stores it and RVC uses the stored value.
    pub nprobe: usize,
    /// Coarse quantizer: a flat index whose row i is the centroid of list i
    /// (empty while the IVF index is untrained).
    pub quantizer: Flat,
    pub direct_map: DirectMap,
}

/// Which size table an `ilar` section uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SizeTable {
    /// Choose as faiss does: `full` iff more than `nlist / 2` lists are non-empty.
    Auto,
    /// `full`: one size per list.
    Full,
    /// `sprs`: (list_no, size) pairs for the non-empty lists.
    Sparse,
}

impl SizeTable {
    /// What faiss' writer picks for these list sizes (never `Auto`).
    pub fn faiss_choice(sizes: impl IntoIterator<Item = usize>) -> SizeTable {
        let (mut nlist, mut nonempty) = (0usize, 0usize);
        for n in sizes {
            nlist += 1;
            nonempty += (n > 0) as usize;
        }
        if nonempty > nlist / 2 {
            SizeTable::Full
        } else {
            SizeTable::Sparse
        }
    }
}

/// One inverted list of an IVF-Flat index.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FlatList {
    pub ids: Vec<i64>,
    /// `ids.len() * d` floats: the raw vectors in list order.
    pub codes: Vec<f32>,
}

/// `IwFl`: IndexIVFFlat.
#[derive(Clone, Debug, PartialEq)]
pub struct IvfFlat {
    pub ivf: Ivf,
    /// The `ilar` size-table encoding; reading records the one found.
    pub size_table: SizeTable,
    /// `nlist` lists.
    pub lists: Vec<FlatList>,
}

/// The product quantizer of a fast-scan index.
#[derive(Clone, Debug, PartialEq)]
pub struct ProductQuantizer {
    pub d: usize,
    /// Number of sub-quantizers.
    pub m: usize,
    /// Bits per code; fast-scan needs 4.
    pub nbits: usize,
    /// `[m][2^nbits][d/m]` row-major.
    pub centroids: Vec<f32>,
}

impl ProductQuantizer {
    pub fn ksub(&self) -> usize {
        1 << self.nbits
    }

    pub fn dsub(&self) -> usize {
        self.d / self.m
    }

    /// Centroid `k` of sub-quantizer `sq` (`dsub` floats).
    pub fn centroid(&self, sq: usize, k: usize) -> &[f32] {
        let dsub = self.dsub();
        let start = (sq * self.ksub() + k) * dsub;
        &self.centroids[start..start + dsub]
    }

    /// Per-sub-quantizer codes (one per byte) of `x`: nearest centroid in L2,
    /// ties to the lower index (as faiss' `compute_codes`).
    pub fn encode(&self, x: &[f32]) -> Vec<u8> {
        let dsub = self.dsub();
        (0..self.m)
            .map(|sq| {
                let sub = &x[sq * dsub..(sq + 1) * dsub];
                let mut best = (f32::INFINITY, 0usize);
                for k in 0..self.ksub() {
                    let c = self.centroid(sq, k);
                    let dist: f32 = sub.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum();
                    if dist < best.0 {
                        best = (dist, k);
                    }
                }
                best.1 as u8
            })
            .collect()
    }

    /// Write the vector that `codes` (one per sub-quantizer) stands for into `out`.
    pub fn decode(&self, codes: &[u8], out: &mut [f32]) {
        let dsub = self.dsub();
        for sq in 0..self.m {
            out[sq * dsub..(sq + 1) * dsub].copy_from_slice(self.centroid(sq, codes[sq] as usize));
        }
    }
}

/// One inverted list of a fast-scan index: ids and 4-bit codes packed in
/// blocks of `bbs` entries (see [`fastscan`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BlockList {
    pub ids: Vec<i64>,
    /// `ceil(ids.len() / bbs) * bbs * M2 / 2` bytes.
    pub codes: Vec<u8>,
}

/// `IwPf`: IndexIVFPQFastScan.
#[derive(Clone, Debug, PartialEq)]
pub struct IvfPqFs {
    pub ivf: Ivf,
    /// Encode `x - centroid(list)` instead of `x`.
    pub by_residual: bool,
    /// Vectors per block (multiple of 32; faiss' default and RVC's is 32).
    pub bbs: usize,
    /// faiss' search implementation selector (0 = default).
    pub implem: i32,
    /// faiss' query-batching parameter (0 = default).
    pub qbs2: u64,
    pub pq: ProductQuantizer,
    /// `nlist` lists.
    pub lists: Vec<BlockList>,
}

impl IvfPqFs {
    /// `M` rounded up to even: the number of 4-bit slots per entry.
    pub fn m2(&self) -> usize {
        fastscan::m2(self.pq.m)
    }

    /// Bytes per block of `bbs` entries.
    pub fn block_size(&self) -> usize {
        fastscan::block_size(self.bbs, self.m2())
    }

    /// The `M` sub-quantizer codes of every entry of list `list_no` (n × M).
    pub fn list_codes(&self, list_no: usize) -> Vec<u8> {
        let l = &self.lists[list_no];
        fastscan::pq4_unpack(&l.codes, l.ids.len(), self.pq.m, self.bbs)
    }
}

/// `IxRF`: IndexRefineFlat. The base index proposes `k * k_factor`
/// candidates, re-ranked with exact distances from `refine`.
#[derive(Clone, Debug, PartialEq)]
pub struct RefineFlat {
    pub is_trained: bool,
    pub base: Index,
    /// All raw vectors, in id order.
    pub refine: Flat,
    pub k_factor: f32,
}

/// The four-character code faiss uses for a flat index of this metric.
pub fn flat_fourcc(metric: Metric) -> &'static [u8; 4] {
    match metric {
        Metric::L2 => b"IxF2",
        Metric::InnerProduct => b"IxFI",
    }
}

impl Flat {
    pub fn new(d: usize, metric: Metric, xb: Vec<f32>) -> Flat {
        Flat {
            d,
            metric,
            is_trained: true,
            xb,
        }
    }

    pub fn ntotal(&self) -> usize {
        self.xb.len().checked_div(self.d).unwrap_or(0)
    }

    pub fn vector(&self, i: usize) -> &[f32] {
        &self.xb[i * self.d..(i + 1) * self.d]
    }
}

impl IvfFlat {
    pub fn nlist(&self) -> usize {
        self.lists.len()
    }

    pub fn ntotal(&self) -> usize {
        self.lists.iter().map(|l| l.ids.len()).sum()
    }
}

impl IvfPqFs {
    pub fn nlist(&self) -> usize {
        self.lists.len()
    }

    pub fn ntotal(&self) -> usize {
        self.lists.iter().map(|l| l.ids.len()).sum()
    }
}

impl Index {
    pub fn d(&self) -> usize {
        match self {
            Index::Flat(f) => f.d,
            Index::IvfFlat(i) => i.ivf.d,
            Index::IvfPqFastScan(i) => i.ivf.d,
            Index::Refine(r) => r.base.d(),
        }
    }

    pub fn ntotal(&self) -> usize {
        match self {
            Index::Flat(f) => f.ntotal(),
            Index::IvfFlat(i) => i.ntotal(),
            Index::IvfPqFastScan(i) => i.ntotal(),
            Index::Refine(r) => r.base.ntotal(),
        }
    }

    pub fn metric(&self) -> Metric {
        match self {
            Index::Flat(f) => f.metric,
            Index::IvfFlat(i) => i.ivf.metric,
            Index::IvfPqFastScan(i) => i.ivf.metric,
            Index::Refine(r) => r.base.metric(),
        }
    }

    pub fn is_trained(&self) -> bool {
        match self {
            Index::Flat(f) => f.is_trained,
            Index::IvfFlat(i) => i.ivf.is_trained,
            Index::IvfPqFastScan(i) => i.ivf.is_trained,
            Index::Refine(r) => r.is_trained && r.base.is_trained(),
        }
    }

    /// An error naming `path` unless the index can be searched (faiss
    /// refuses to search an untrained index too).
    pub fn check_searchable(&self, path: &std::path::Path) -> crate::Result<()> {
        if self.is_trained() {
            return Ok(());
        }
        Err(crate::Error::bad_input(
            path,
            "the index is not trained (it holds no coarse centroids): train it before searching",
        ))
    }

    /// The fourcc of this (outermost) index.
    pub fn fourcc(&self) -> &'static str {
        match self {
            Index::Flat(f) => std::str::from_utf8(flat_fourcc(f.metric)).unwrap(),
            Index::IvfFlat(_) => "IwFl",
            Index::IvfPqFastScan(_) => "IwPf",
            Index::Refine(_) => "IxRF",
        }
    }

    /// The IVF part, if this index is or wraps an IVF index.
    pub fn ivf(&self) -> Option<&Ivf> {
        match self {
            Index::Flat(_) => None,
            Index::IvfFlat(i) => Some(&i.ivf),
            Index::IvfPqFastScan(i) => Some(&i.ivf),
            Index::Refine(r) => r.base.ivf(),
        }
    }

    /// Sizes of the inverted lists, if this index is or wraps an IVF index.
    pub fn list_sizes(&self) -> Option<Vec<usize>> {
        match self {
            Index::Flat(_) => None,
            Index::IvfFlat(i) => Some(i.lists.iter().map(|l| l.ids.len()).collect()),
            Index::IvfPqFastScan(i) => Some(i.lists.iter().map(|l| l.ids.len()).collect()),
            Index::Refine(r) => r.base.list_sizes(),
        }
    }

    /// All vectors in id order (`ntotal * d` floats), like faiss'
    /// `reconstruct_n(0, ntotal)`: raw vectors for flat, IVF-Flat and refine
    /// indexes, PQ decodes (plus the centroid when by residual) for fast-scan.
    /// Expects ids to be a permutation of `0..ntotal` (what reading checks).
    pub fn reconstruct_all(&self) -> Vec<f32> {
        let d = self.d();
        match self {
            Index::Flat(f) => f.xb.clone(),
            Index::Refine(r) => r.refine.xb.clone(),
            Index::IvfFlat(ivf) => {
                let mut out = vec![0f32; ivf.ntotal() * d];
                for l in &ivf.lists {
                    for (j, &id) in l.ids.iter().enumerate() {
                        let id = id as usize;
                        out[id * d..(id + 1) * d].copy_from_slice(&l.codes[j * d..(j + 1) * d]);
                    }
                }
                out
            }
            Index::IvfPqFastScan(ivf) => {
                let mut out = vec![0f32; ivf.ntotal() * d];
                let m = ivf.pq.m;
                for (list_no, l) in ivf.lists.iter().enumerate() {
                    let codes = ivf.list_codes(list_no);
                    for (j, &id) in l.ids.iter().enumerate() {
                        let id = id as usize;
                        let row = &mut out[id * d..(id + 1) * d];
                        ivf.pq.decode(&codes[j * m..(j + 1) * m], row);
                        if ivf.by_residual {
                            for (x, c) in row.iter_mut().zip(ivf.ivf.quantizer.vector(list_no)) {
                                *x += c;
                            }
                        }
                    }
                }
                out
            }
        }
    }

    /// Check every invariant the writer relies on and faiss (or RVC) needs.
    pub fn validate(&self) -> Result<()> {
        validate_index(self, true)
    }
}

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

fn validate_index(index: &Index, top: bool) -> Result<()> {
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
