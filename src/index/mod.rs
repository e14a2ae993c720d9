//! Index kinds and their construction.

pub mod factory;

pub use factory::Factory;
