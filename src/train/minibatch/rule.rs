//! RVC's rule for when to compress, as `train --compress` takes it.

use super::RVC_CENTRES;

/// `--compress auto|off|<K>` of `train`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Compress {
    /// RVC's rule: above the threshold (200 000 rows), compress to 10 000 centres.
    #[default]
    Auto,
    /// Index every row, however many.
    Off,
    /// Compress to this many centres whatever the number of rows.
    Centres(usize),
}

impl Compress {
    /// Centres to compress `n` rows to, or None to keep the rows.
    pub fn centres(self, n: usize, above: usize) -> Option<usize> {
        match self {
            Compress::Auto => (n > above).then_some(RVC_CENTRES),
            Compress::Off => None,
            Compress::Centres(k) => Some(k),
        }
    }

    /// Parse `auto`, `off` or a positive number.
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(Compress::Auto),
            "off" => Ok(Compress::Off),
            _ => match s.parse::<usize>() {
                Ok(k) if k > 0 => Ok(Compress::Centres(k)),
                _ => Err(format!(
                    "expected `auto`, `off` or a positive number of centres, got {s:?}"
                )),
            },
        }
    }
}
