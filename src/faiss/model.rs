//! In-memory model of the faiss index files this crate reads and writes.
//!
//! Every field faiss stores and uses is kept; fields faiss ignores on read (the
//! two "dummy" header words, `ilbl.code_size`, `IwPf.code_size`) are derived and
//! written back the way faiss writes them, so a file faiss wrote round-trips byte
//! for byte. Counts that faiss stores redundantly (`ntotal`, `nlist`, `M2`) are
//! derived from the data here and checked against the file when reading.

use crate::{Metric, Result};

use super::fastscan;

mod validate;

use validate::validate_index;
pub(crate) use validate::{check_direct_map, check_ids};

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
