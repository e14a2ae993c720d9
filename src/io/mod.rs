//! Files: .npy feature folders, RVC experiment layout, atomic writes.

pub mod atomic;

pub use atomic::write_atomic;
