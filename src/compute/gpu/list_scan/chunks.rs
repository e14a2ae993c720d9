//! Uploads of the list-scan primitives: lists cut into segments of at most
//! `SEG_FLAT` entries inside binding-sized chunks (flat rows transposed to
//! vec4 columns, fast-scan codes as whole blocks), and query batches whose
//! candidates fit one buffer.

use super::select::Searcher;
use super::{CAP_BYTES, EMPTY, SEG_FLAT};
use crate::compute::gpu::context::round_up;
use crate::{Error, Result};

/// A device buffer of vectors or codes, and the tie value of each entry.
pub(super) struct Chunk {
    pub(super) data: wgpu::Buffer,
    pub(super) ids: wgpu::Buffer,
}

/// Up to `SEG` consecutive entries of one list inside one chunk.
#[derive(Clone, Copy)]
pub(super) struct Seg {
    /// Unique per segment of one upload, so that queries scanning the same
    /// segment share work items.
    pub(super) id: usize,
    pub(super) chunk: usize,
    /// Flat: first vec4; PQ: first u32 word.
    pub(super) data: u32,
    pub(super) ids: u32,
    pub(super) count: u32,
    /// Flat: entries the transposed segment is padded to (see `flat_chunks`).
    pub(super) stride: u32,
}

/// A list to upload: raw vectors (`len × d`) or packed codes, and tie values.
pub(super) struct HostList<'a, T> {
    pub(super) data: &'a [T],
    pub(super) ties: Vec<u32>,
}

fn cap(max_binding: u64) -> u64 {
    max_binding.min(CAP_BYTES)
}

/// Tie value of an id: faiss orders equal scores by id, lower first, or
/// higher first (`high_first`) where its heap is a max-heap.
pub(super) fn ties(ids: &[i64], high_first: bool) -> Option<Vec<u32>> {
    ids.iter()
        .map(|&i| {
            let v = u32::try_from(i).ok().filter(|&v| v != EMPTY)?;
            Some(if high_first { !v } else { v })
        })
        .collect()
}

impl Searcher<'_> {
    /// Upload flat lists into binding-sized chunks of `dp4`-padded rows.
    pub(super) fn flat_chunks(
        &self,
        lists: &[HostList<'_, f32>],
        d: usize,
        dp4: usize,
    ) -> Result<(Vec<Chunk>, Vec<Vec<Seg>>)> {
        let row_bytes = dp4 * 16;
        let cap_rows = cap(self.max_binding) as usize / row_bytes / 64 * 64;
        if cap_rows == 0 {
            return Err(Error::Gpu(format!(
                "{d}-dimensional vectors do not fit the adapter's storage binding"
            )));
        }
        // Segments never straddle chunks. Each is stored transposed, vec4
        // column c of its L entries (L = its size rounded up to 64) at
        // c·L + entry, so that neighbouring invocations read neighbouring
        // vec4s (coalesced on GPUs, contiguous vector loads on CPU adapters).
        let seg = SEG_FLAT.min(cap_rows);
        let mut chunks = Vec::new();
        let mut segs = Vec::with_capacity(lists.len());
        let (mut cols, mut tie): (Vec<f32>, Vec<u32>) = (Vec::new(), Vec::new());
        let mut nseg = 0;
        for l in lists {
            let mut mine = Vec::new();
            let n = l.ties.len();
            for s in (0..n).step_by(seg) {
                let e = (s + seg).min(n);
                let len = round_up(e - s, 64);
                if cols.len() / (dp4 * 4) + len > cap_rows {
                    chunks.push(self.upload_flat(&cols, &tie)?);
                    cols.clear();
                    tie.clear();
                }
                let at = cols.len();
                mine.push(Seg {
                    id: nseg,
                    chunk: chunks.len(),
                    data: (at / 4) as u32,
                    ids: tie.len() as u32,
                    count: (e - s) as u32,
                    stride: len as u32,
                });
                nseg += 1;
                cols.resize(at + len * dp4 * 4, 0.0);
                for (r, row) in l.data[s * d..e * d].chunks_exact(d.max(1)).enumerate() {
                    for (j, &v) in row.iter().enumerate() {
                        cols[at + ((j / 4) * len + r) * 4 + j % 4] = v;
                    }
                }
                tie.extend_from_slice(&l.ties[s..e]);
            }
            segs.push(mine);
        }
        if !tie.is_empty() || chunks.is_empty() {
            chunks.push(self.upload_flat(&cols, &tie)?);
        }
        Ok((chunks, segs))
    }

    fn upload_flat(&self, cols: &[f32], tie: &[u32]) -> Result<Chunk> {
        use wgpu::BufferUsages as U;
        let data = self
            .gpu
            .upload("search vectors", bytemuck::cast_slice(cols), U::STORAGE);
        let ids = self
            .gpu
            .upload("search ties", bytemuck::cast_slice(tie), U::STORAGE);
        Ok(Chunk { data, ids })
    }

    /// Upload packed fast-scan lists into chunks; segments are whole blocks.
    pub(super) fn pq_chunks(
        &self,
        lists: &[HostList<'_, u8>],
        bbs: usize,
        block_bytes: usize,
    ) -> Result<(Vec<Chunk>, Vec<Vec<Seg>>)> {
        let cap = cap(self.max_binding) as usize;
        // Segments never straddle chunks.
        let seg_blocks = (SEG_FLAT / bbs).min(cap / block_bytes.max(1));
        let seg_entries = seg_blocks * bbs;
        if seg_blocks == 0 {
            return Err(Error::Gpu(
                "fast-scan blocks do not fit the adapter's storage binding".into(),
            ));
        }
        let mut chunks = Vec::new();
        let mut segs = Vec::with_capacity(lists.len());
        let (mut bytes, mut tie): (Vec<u8>, Vec<u32>) = (Vec::new(), Vec::new());
        let mut nseg = 0;
        let flush = |bytes: &mut Vec<u8>, tie: &mut Vec<u32>, chunks: &mut Vec<Chunk>| {
            bytes.resize(round_up(bytes.len().max(16), 16), 0);
            chunks.push(Chunk {
                data: self
                    .gpu
                    .upload("search codes", bytes, wgpu::BufferUsages::STORAGE),
                ids: self.gpu.upload(
                    "search ties",
                    bytemuck::cast_slice(tie),
                    wgpu::BufferUsages::STORAGE,
                ),
            });
            bytes.clear();
            tie.clear();
        };
        for l in lists {
            let mut mine = Vec::new();
            let n = l.ties.len();
            for s in (0..n).step_by(seg_entries) {
                let e = (s + seg_entries).min(n);
                let (b0, b1) = (s / bbs * block_bytes, e.div_ceil(bbs) * block_bytes);
                if bytes.len() + (b1 - b0) > cap {
                    flush(&mut bytes, &mut tie, &mut chunks);
                }
                mine.push(Seg {
                    id: nseg,
                    chunk: chunks.len(),
                    data: (bytes.len() / 4) as u32,
                    ids: tie.len() as u32,
                    count: (e - s) as u32,
                    stride: 0,
                });
                nseg += 1;
                bytes.extend_from_slice(&l.data[b0..b1]);
                tie.extend_from_slice(&l.ties[s..e]);
            }
            segs.push(mine);
        }
        if !tie.is_empty() || chunks.is_empty() {
            flush(&mut bytes, &mut tie, &mut chunks);
        }
        Ok((chunks, segs))
    }

    /// Batches of consecutive queries whose candidates fit one buffer.
    pub(super) fn batches(
        &self,
        per_query: &[Vec<Seg>],
        k: usize,
    ) -> Result<Vec<std::ops::Range<usize>>> {
        // A segment costs k candidates (8 bytes each) and at most two work
        // items (64 bytes each, scan and merge) within the buffers' bound.
        let cap = (cap(self.max_binding) / (8 * k as u64).max(128)) as usize;
        let mut out = Vec::new();
        let (mut start, mut used) = (0, 0);
        for (q, segs) in per_query.iter().enumerate() {
            if segs.len() > cap {
                return Err(Error::Gpu(format!(
                    "one query's {} list segments exceed the device buffers",
                    segs.len()
                )));
            }
            if used + segs.len() > cap {
                out.push(start..q);
                start = q;
                used = 0;
            }
            used += segs.len();
        }
        out.push(start..per_query.len());
        Ok(out)
    }
}
