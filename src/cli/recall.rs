//! `--factory auto`, which `--recall` uses to choose the index kind.

use std::str::FromStr;

use crate::index::Factory;

/// `--factory`: a faiss factory string, or `auto` (with `--recall`: RVC's
/// IVF-Flat or `IVF<n>,PQ<M>x4fs,RFlat`, whichever reaches the recall with
/// the faster search).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactoryArg {
    Auto,
    Kind(Factory),
}

impl FromStr for FactoryArg {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        if s.trim() == "auto" {
            Ok(FactoryArg::Auto)
        } else {
            s.parse().map(FactoryArg::Kind)
        }
    }
}

impl FactoryArg {
    pub fn kind(self) -> Option<Factory> {
        match self {
            FactoryArg::Auto => None,
            FactoryArg::Kind(f) => Some(f),
        }
    }
}
