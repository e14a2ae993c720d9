//! Upper bounds on the numbers a user can pass, so that a typo such as
//! `-k 1000000000` or `--niter 1e9` ends in one clear line instead of an
//! allocation that aborts the process. Each bound is far above any sensible
//! setting and is stated in `--help` where the flag is documented.

use crate::{Error, Result};

/// Neighbours per query (`search -k`, α-QE's `k`): faiss's GPU indexes stop
/// at 2048 too.
pub const MAX_K: usize = 2048;
/// k-means iterations.
pub const MAX_NITER: usize = 10_000;

/// `value` if it is within `1..=max`, else an error naming `what`.
pub fn check_range(what: &str, value: usize, min: usize, max: usize) -> Result<usize> {
    if value < min || value > max {
        return Err(Error::Invalid(format!(
            "{what} must be between {min} and {max}, got {value}"
        )));
    }
    Ok(value)
}

/// Physical memory in bytes, where the platform tells it.
pub fn total_memory() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let s = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Refuse to allocate `bytes` for `what` when it cannot fit in memory.
pub fn check_fits(what: &str, bytes: Option<u128>) -> Result<()> {
    let limit = total_memory().map_or(1u128 << 40, u128::from);
    match bytes {
        Some(b) if b <= limit => Ok(()),
        Some(b) => Err(Error::Invalid(format!(
            "{what} needs {:.1} GiB, more than this machine's {:.1} GiB of memory",
            b as f64 / (1u64 << 30) as f64,
            limit as f64 / (1u64 << 30) as f64
        ))),
        None => Err(Error::Invalid(format!("{what} is too large"))),
    }
}

/// clap parser for `1..=max` values.
pub fn parse_bounded(max: usize) -> impl Fn(&str) -> std::result::Result<usize, String> + Clone {
    move |s: &str| match s.parse::<usize>() {
        Ok(v) if (1..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "expected a whole number from 1 to {max}, got {s:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(check_range("-k", 0, 1, 8).is_err());
        assert_eq!(check_range("-k", 8, 1, 8).unwrap(), 8);
        assert!(check_range("-k", 9, 1, 8).is_err());
        assert!(check_fits("x", Some(1)).is_ok());
        assert!(check_fits("x", Some(1u128 << 80)).is_err());
        assert!(check_fits("x", None).is_err());
        let p = parse_bounded(10);
        assert_eq!(p("10"), Ok(10));
        assert!(p("0").is_err() && p("11").is_err() && p("1e9").is_err() && p("-1").is_err());
    }
}
