//! Fault injection for the crash-safety tests (debug builds only).
//!
//! With `RVC_INDEX_PAUSE_AT=<point>` set, reaching `<point>` creates the file
//! named by `RVC_INDEX_PAUSE_MARKER` (if set) and then sleeps, so a test can
//! kill the process at a known place. With `RVC_INDEX_FAIL_AT=<point>`,
//! [`fail_point`] returns an I/O error there ("no space left on device"), as
//! a full disk would. Release builds compile both away.

#[inline]
pub fn pause_point(point: &str) {
    #[cfg(debug_assertions)]
    if std::env::var("RVC_INDEX_PAUSE_AT").is_ok_and(|p| p == point) {
        if let Ok(marker) = std::env::var("RVC_INDEX_PAUSE_MARKER") {
            let _ = std::fs::write(marker, point);
        }
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}

#[inline]
pub fn fail_point(point: &str) -> std::io::Result<()> {
    #[cfg(debug_assertions)]
    if std::env::var("RVC_INDEX_FAIL_AT").is_ok_and(|p| p == point) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "no space left on device (injected)",
        ));
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
    Ok(())
}
