//! Files: .npy feature folders, RVC experiment layout, atomic writes.

pub mod atomic;
pub mod experiment;
pub mod features;
pub mod link;
pub mod lock;
pub mod open;
pub mod outputs;
pub mod signals;

pub use atomic::write_atomic;
pub use lock::{FolderLock, lock_folder, try_lock_folder};
pub use open::{check_regular, open_regular};
pub use outputs::{Fingerprint, OutputSet, Target, recover};
