//! Index kinds and their construction.

pub mod blend;
pub mod factory;
pub mod pq;

pub use factory::Factory;
