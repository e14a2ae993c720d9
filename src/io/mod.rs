//! Files: .npy feature folders, RVC experiment layout, atomic writes.

pub mod atomic;
pub mod experiment;
pub mod features;
pub mod open;

pub use atomic::write_atomic;
pub use open::{check_regular, open_regular};
