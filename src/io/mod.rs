//! Files: .npy feature folders, RVC experiment layout, atomic writes.

pub mod atomic;
pub mod experiment;
pub mod features;

pub use atomic::write_atomic;
