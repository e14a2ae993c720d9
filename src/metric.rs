use std::fmt;

/// Distance used by an index. faiss numbers inner product 0 and L2 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Metric {
    /// Squared Euclidean distance; smaller is closer.
    L2,
    /// Inner product; larger is closer.
    InnerProduct,
}

impl Metric {
    pub fn faiss_code(self) -> i32 {
        match self {
            Metric::InnerProduct => 0,
            Metric::L2 => 1,
        }
    }

    pub fn from_faiss_code(code: i32) -> Option<Metric> {
        match code {
            0 => Some(Metric::InnerProduct),
            1 => Some(Metric::L2),
            _ => None,
        }
    }

    /// True when `a` is a better (closer) score than `b` under this metric.
    #[inline]
    pub fn better(self, a: f32, b: f32) -> bool {
        match self {
            Metric::L2 => a < b,
            Metric::InnerProduct => a > b,
        }
    }

    /// The score faiss reports for a missing result.
    pub fn worst(self) -> f32 {
        match self {
            Metric::L2 => f32::MAX,
            Metric::InnerProduct => -f32::MAX,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::L2 => "L2",
            Metric::InnerProduct => "inner product",
        })
    }
}
