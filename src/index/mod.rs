//! Index kinds and their construction.

pub mod blend;
pub mod build;
pub mod factory;
pub mod ivf;
pub mod pq;
pub mod recall;
pub mod search;

pub use factory::Factory;
