//! Fault injection for the crash-safety tests (debug builds only).
//!
//! With `RVC_INDEX_PAUSE_AT=<point>` set, reaching `<point>` creates the file
//! named by `RVC_INDEX_PAUSE_MARKER` (if set) and then sleeps, so a test can
//! SIGKILL the process at a known place. Release builds compile this away.

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
