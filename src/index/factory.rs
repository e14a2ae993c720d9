//! faiss `index_factory` strings for the index kinds this crate builds:
//! `Flat`, `IVF<n>,Flat`, `IVF<n>,PQ<M>x4fs` and either IVF kind followed by
//! `,RFlat`. `<n>` may carry faiss's `k` (×1024) or `M` (×1048576) suffix, or
//! be `{auto}` for RVC's rule `min(int(16·√N), N // 39)`.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// Number of IVF lists: fixed, or RVC's rule applied to the row count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nlist {
    Fixed(usize),
    Auto,
}

impl Nlist {
    pub fn resolve(self, n: usize) -> usize {
        match self {
            Nlist::Fixed(k) => k,
            Nlist::Auto => super::ivf::rvc_nlist(n),
        }
    }
}

/// What sits inside the lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// Raw float32 vectors.
    Flat,
    /// 4-bit product quantisation with `m` sub-quantizers, faiss fast-scan
    /// layout (bbs 32, no residual).
    Pq4FastScan { m: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Factory {
    /// Exhaustive `IndexFlat`.
    Flat,
    Ivf {
        nlist: Nlist,
        codec: Codec,
        /// Wrapped in `IndexRefineFlat` (exact re-ranking).
        refine: bool,
    },
}

impl Factory {
    /// RVC's index: `IVF{auto},Flat`.
    pub fn rvc() -> Self {
        Factory::Ivf {
            nlist: Nlist::Auto,
            codec: Codec::Flat,
            refine: false,
        }
    }
}

fn parse_count(s: &str, whole: &str) -> Result<usize> {
    let bad = || Error::Invalid(format!("factory string {whole:?}: bad count {s:?}"));
    let (digits, mult) = match s.as_bytes().last() {
        Some(b'k') => (&s[..s.len() - 1], 1024),
        Some(b'M') => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let v: usize = digits.parse().map_err(|_| bad())?;
    let v = v.checked_mul(mult).ok_or_else(bad)?;
    if v == 0 {
        return Err(bad());
    }
    Ok(v)
}

impl FromStr for Factory {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let whole = s;
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let unsupported = || {
            Error::Unsupported(format!(
                "factory string {whole:?}: expected Flat, IVF<n>,Flat, IVF<n>,PQ<M>x4fs, optionally followed by ,RFlat"
            ))
        };
        let (parts, refine) = match parts.split_last() {
            Some((&"RFlat", rest)) if !rest.is_empty() => (rest, true),
            _ => (&parts[..], false),
        };
        match parts {
            ["Flat"] if !refine => Ok(Factory::Flat),
            [ivf, codec] => {
                let n = ivf.strip_prefix("IVF").ok_or_else(unsupported)?;
                let nlist = if n == "{auto}" {
                    Nlist::Auto
                } else {
                    Nlist::Fixed(parse_count(n, whole)?)
                };
                let codec = if *codec == "Flat" {
                    Codec::Flat
                } else {
                    let m = codec
                        .strip_prefix("PQ")
                        .and_then(|r| r.strip_suffix("x4fs"))
                        .ok_or_else(unsupported)?;
                    Codec::Pq4FastScan {
                        m: parse_count(m, whole)?,
                    }
                };
                Ok(Factory::Ivf {
                    nlist,
                    codec,
                    refine,
                })
            }
            _ => Err(unsupported()),
        }
    }
}

impl fmt::Display for Factory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Factory::Flat => f.write_str("Flat"),
            Factory::Ivf {
                nlist,
                codec,
                refine,
            } => {
                match nlist {
                    Nlist::Fixed(n) => write!(f, "IVF{n},")?,
                    Nlist::Auto => f.write_str("IVF{auto},")?,
                }
                match codec {
                    Codec::Flat => f.write_str("Flat")?,
                    Codec::Pq4FastScan { m } => write!(f, "PQ{m}x4fs")?,
                }
                if *refine {
                    f.write_str(",RFlat")?;
                }
                Ok(())
            }
        }
    }
}

impl serde::Serialize for Factory {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Factory {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Factory {
    /// The part of an RVC index file name that names the index kind:
    /// `IVF<n>_Flat` as RVC writes it, `IVF<n>_PQ<M>x4fs_RFlat`, …
    pub fn file_stem(&self, nlist: usize) -> String {
        match self {
            Factory::Flat => "Flat".into(),
            Factory::Ivf { codec, refine, .. } => {
                let mut s = format!("IVF{nlist}_");
                match codec {
                    Codec::Flat => s.push_str("Flat"),
                    Codec::Pq4FastScan { m } => s.push_str(&format!("PQ{m}x4fs")),
                }
                if *refine {
                    s.push_str("_RFlat");
                }
                s
            }
        }
    }

    /// The same factory with its list count fixed.
    /// The list count the string fixes (`IVF256,…`), if any.
    pub fn fixed_nlist(&self) -> Option<usize> {
        match self {
            Factory::Ivf {
                nlist: Nlist::Fixed(k),
                ..
            } => Some(*k),
            _ => None,
        }
    }

    pub fn with_nlist(self, n: usize) -> Factory {
        match self {
            Factory::Ivf { codec, refine, .. } => Factory::Ivf {
                nlist: Nlist::Fixed(n),
                codec,
                refine,
            },
            f => f,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_supported_kinds() {
        assert_eq!("Flat".parse::<Factory>().unwrap(), Factory::Flat);
        assert_eq!("IVF{auto},Flat".parse::<Factory>().unwrap(), Factory::rvc());
        assert_eq!(
            "IVF1k,PQ128x4fs,RFlat".parse::<Factory>().unwrap(),
            Factory::Ivf {
                nlist: Nlist::Fixed(1024),
                codec: Codec::Pq4FastScan { m: 128 },
                refine: true
            }
        );
        assert_eq!(
            "IVF2M,Flat".parse::<Factory>().unwrap(),
            Factory::Ivf {
                nlist: Nlist::Fixed(2 << 20),
                codec: Codec::Flat,
                refine: false
            }
        );
        for s in [
            "Flat",
            "IVF5128,Flat",
            "IVF{auto},PQ384x4fs,RFlat",
            "IVF7,Flat,RFlat",
        ] {
            assert_eq!(s.parse::<Factory>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_the_rest_clearly() {
        for s in [
            "",
            "HNSW32",
            "IVF,Flat",
            "IVF0,Flat",
            "IVF12,PQ8",
            "IVF12,PQ8x8fs",
            "Flat,RFlat",
            "RFlat",
            "IVFx,Flat",
            "IVF99999999999999999999M,Flat",
        ] {
            let e = s.parse::<Factory>().unwrap_err().to_string();
            assert!(e.contains(&format!("{s:?}")), "{e}");
        }
    }
}
