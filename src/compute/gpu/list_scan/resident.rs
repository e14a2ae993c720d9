//! Uploaded lists kept on the device across calls, so that searching one
//! index batch after batch (α-QE, `search` over many queries, the bench's
//! nprobe sweep, every k-NN against the same database) uploads it once.
//!
//! Entries are keyed by the BLAKE3 digest of what the upload is made of
//! (every list's data and tie values, and the layout parameters), not by
//! addresses: an index dropped and another built in the same memory, or
//! one changed in place, can never be served stale buffers. Hashing reads
//! the lists once, in parallel, which costs far less than transposing and
//! uploading them.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::chunks::{Chunk, HostList, Seg};
use crate::Result;

/// At most this many uploads stay resident, newest first.
const ENTRIES: usize = 4;
/// Uploads larger than this together are evicted oldest first.
const BYTES: u64 = 4 << 30;

/// Lists as uploaded: the chunks and each list's segments in them.
pub(super) struct Uploaded {
    pub(super) chunks: Vec<Chunk>,
    pub(super) segs: Vec<Vec<Seg>>,
}

struct Entry {
    key: blake3::Hash,
    bytes: u64,
    lists: Arc<Uploaded>,
}

/// The cache one backend holds.
#[derive(Default)]
pub(crate) struct Resident {
    entries: Mutex<VecDeque<Entry>>,
    uploads: std::sync::atomic::AtomicUsize,
}

/// Digest of `lists` (data and ties) and of the layout `params`.
pub(super) fn key_of<T: bytemuck::Pod + Sync>(
    tag: &str,
    params: &[u64],
    lists: &[HostList<'_, T>],
) -> blake3::Hash {
    let digests: Vec<blake3::Hash> = lists
        .par_iter()
        .map(|l| {
            let mut h = blake3::Hasher::new();
            h.update(&(l.data.len() as u64).to_le_bytes());
            h.update(bytemuck::cast_slice(l.data));
            h.update(&(l.ties.len() as u64).to_le_bytes());
            h.update(bytemuck::cast_slice(&l.ties));
            h.finalize()
        })
        .collect();
    let mut h = blake3::Hasher::new();
    h.update(tag.as_bytes());
    for p in params {
        h.update(&p.to_le_bytes());
    }
    h.update(&(lists.len() as u64).to_le_bytes());
    for d in &digests {
        h.update(d.as_bytes());
    }
    h.finalize()
}

impl Resident {
    /// The upload under `key`, made by `upload` (and kept, when it holds
    /// at most the cache's byte budget) if there is none.
    pub(super) fn get_or_upload(
        &self,
        key: blake3::Hash,
        bytes: u64,
        upload: impl FnOnce() -> Result<Uploaded>,
    ) -> Result<Arc<Uploaded>> {
        {
            let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(i) = e.iter().position(|x| x.key == key) {
                let hit = e.remove(i).expect("found");
                let lists = Arc::clone(&hit.lists);
                e.push_front(hit);
                return Ok(lists);
            }
        }
        let lists = Arc::new(upload()?);
        self.uploads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if bytes <= BYTES {
            let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            e.push_front(Entry {
                key,
                bytes,
                lists: Arc::clone(&lists),
            });
            while e.len() > ENTRIES || e.iter().map(|x| x.bytes).sum::<u64>() > BYTES {
                e.pop_back();
            }
        }
        Ok(lists)
    }

    /// Uploads made so far (cache misses).
    pub(crate) fn uploads(&self) -> usize {
        self.uploads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Drop every resident upload.
    pub(crate) fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
