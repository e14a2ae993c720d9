//! faiss index files: byte layout in `spec/faiss-format.md` of the design docs.

pub mod write;

pub use write::write_ivf_flat;
