//! The one instruction-set choice of the CPU backend.
//!
//! Every CPU kernel (assignment, exact k-NN, list scans, look-up tables, PQ
//! encoding) runs with the [`Isa`] of its [`CpuBackend`](super::CpuBackend):
//!
//! * [`Isa::Avx512`] (x86-64 with AVX-512F and AVX-512BW): the hand-written
//!   register-tiled GEMM microkernel for assignment and k-NN, 16-lane list
//!   scans and 64-byte table shuffles for fast-scan PQ;
//! * [`Isa::Avx2`] (x86-64 with AVX2 and FMA): 8-lane list scans and 32-byte
//!   shuffles; assignment and k-NN on the `gemm` crate's tiles;
//! * [`Isa::Portable`] (any CPU): portable code, `gemm` crate tiles.
//!
//! The processor is probed once per process, and the environment variable
//! [`ISA_ENV`] (`auto`, `avx512`, `avx2`, `portable`) is read once
//! ([`Isa::from_env`]); an unknown value, or one this processor cannot run,
//! is an error that `compute::select_backend` reports.

use std::sync::OnceLock;

use crate::{Error, Result};

/// Environment variable that forces an instruction set.
pub const ISA_ENV: &str = "RVC_INDEX_CPU_ISA";

/// Variables earlier versions read; setting one is an error that names
/// [`ISA_ENV`], so that a forced kernel is never silently ignored.
const RETIRED_ENV: [&str; 2] = ["RVC_INDEX_CPU_KERNEL", "RVC_INDEX_SCAN_ISA"];

/// Instruction set the CPU kernels run with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512F + AVX-512BW (x86-64).
    Avx512,
    /// AVX2 + FMA (x86-64).
    Avx2,
    /// Any CPU.
    Portable,
}

impl Isa {
    /// Every instruction set, fastest first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Portable];

    /// Whether this processor runs `self` (probed once).
    pub fn is_available(self) -> bool {
        static FEATURES: OnceLock<(bool, bool)> = OnceLock::new();
        let (avx512, avx2) = *FEATURES.get_or_init(probe);
        match self {
            Isa::Avx512 => avx512,
            Isa::Avx2 => avx2,
            Isa::Portable => true,
        }
    }

    /// The fastest instruction set this processor runs.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .find(|i| i.is_available())
            .unwrap_or(Isa::Portable)
    }

    /// Every instruction set this processor runs, fastest first (for tests
    /// and benches).
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The name [`ISA_ENV`] takes.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// `auto` (the best available), `avx512`, `avx2` or `portable`; an
    /// unknown name or one this processor cannot run is an error.
    pub fn parse(value: &str) -> Result<Isa> {
        let want = match value.trim() {
            "auto" | "" => return Ok(Isa::best()),
            "avx512" => Isa::Avx512,
            "avx2" => Isa::Avx2,
            "portable" => Isa::Portable,
            other => {
                return Err(Error::Invalid(format!(
                    "{ISA_ENV}={other:?}: expected auto, avx512, avx2 or portable"
                )));
            }
        };
        if !want.is_available() {
            return Err(Error::Unsupported(format!(
                "{ISA_ENV}={}: this processor does not run {}",
                want.name(),
                want.describe()
            )));
        }
        Ok(want)
    }

    /// The instruction set [`ISA_ENV`] asks for, else [`Isa::best`]. The
    /// environment is read on the first call only.
    pub fn from_env() -> Result<Isa> {
        static CHOSEN: OnceLock<std::result::Result<Isa, String>> = OnceLock::new();
        CHOSEN
            .get_or_init(|| {
                if let Some(old) = RETIRED_ENV.iter().find(|v| std::env::var_os(v).is_some()) {
                    return Err(format!(
                        "{old} is no longer read; set {ISA_ENV}=auto|avx512|avx2|portable instead"
                    ));
                }
                match std::env::var(ISA_ENV) {
                    Ok(v) => Isa::parse(&v).map_err(|e| e.to_string()),
                    Err(std::env::VarError::NotPresent) => Ok(Isa::best()),
                    Err(std::env::VarError::NotUnicode(_)) => {
                        Err(format!("{ISA_ENV} is not valid UTF-8"))
                    }
                }
            })
            .clone()
            .map_err(Error::Invalid)
    }

    /// [`Isa::from_env`], or [`Isa::best`] where the environment is invalid
    /// (`select_backend` reports that error before any kernel runs).
    pub fn detected() -> Isa {
        Isa::from_env().unwrap_or_else(|_| Isa::best())
    }

    /// `self` where this processor runs it, else [`Isa::Portable`]: what a
    /// kernel given an instruction set runs (the entry points that take one
    /// reject unavailable ones first).
    pub fn runnable(self) -> Isa {
        if self.is_available() {
            self
        } else {
            Isa::Portable
        }
    }

    /// What the instruction set needs, for messages and backend names.
    pub fn describe(self) -> &'static str {
        match self {
            Isa::Avx512 => "AVX-512F and AVX-512BW",
            Isa::Avx2 => "AVX2 and FMA",
            Isa::Portable => "portable code",
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn probe() -> (bool, bool) {
    (
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw"),
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
    )
}

#[cfg(not(target_arch = "x86_64"))]
fn probe() -> (bool, bool) {
    (false, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_the_documented_names_only() {
        assert_eq!(Isa::parse("portable").unwrap(), Isa::Portable);
        assert_eq!(Isa::parse("auto").unwrap(), Isa::best());
        let e = Isa::parse("sse9").unwrap_err().to_string();
        assert!(e.contains(ISA_ENV) && e.contains("sse9"), "{e}");
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()).is_ok(), isa.is_available());
        }
        assert_eq!(Isa::available()[0], Isa::best());
        assert_eq!(*Isa::available().last().unwrap(), Isa::Portable);
    }
}
