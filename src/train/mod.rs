//! Training: k-means (faiss IVF semantics) and the RVC `train` pipeline.

pub mod bounds;
pub mod kmeans;
pub mod layout;
pub mod manifest;
pub mod minibatch;
pub mod rvc;
