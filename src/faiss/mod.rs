//! faiss index files, byte for byte as faiss's `write_index` / `read_index`
//! (`faiss/impl/index_write.cpp`, `index_read.cpp`) lay them out.
//!
//! Supported, for L2 and inner product: `IxF2`/`IxFI` (flat), `IwFl`
//! (IVF-Flat, `ilar` lists with `full` or `sprs` size tables), `IwPf`
//! (IVF-PQ fast-scan, 4-bit, `ilbl` block lists) and `IxRF` (refine-flat
//! wrapper). Anything else is an [`crate::Error::Unsupported`] naming the fourcc.

pub mod fastscan;
pub mod info;
pub mod model;
pub mod read;
pub mod write;

pub use info::{IndexInfo, ListStats, imbalance_factor};
pub use model::{
    BlockList, DirectMap, Flat, FlatList, Index, Ivf, IvfFlat, IvfPqFs, ProductQuantizer,
    RefineFlat, SizeTable, flat_fourcc,
};
pub use read::{read_index, read_index_from_bytes};
pub use write::{index_to_bytes, write_index, write_index_to, write_ivf_flat};
