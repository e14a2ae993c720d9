//! Ctrl-C, SIGTERM and SIGHUP (what `kill`, `timeout`, systemd and docker
//! send) end the process the same way: the temporary files of unfinished
//! outputs are removed (a commit in progress is finished first, see
//! `io::outputs`), and the exit code is 130. SIGKILL cannot be caught; what
//! it leaves is cleaned by the next run of the same command.

/// Exit code after an interruption (128 + SIGINT, as shells report Ctrl-C).
pub const INTERRUPTED: i32 = 130;

/// Install the handler once; later calls do nothing.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Failing to install (another handler already set by an embedding
        // program) leaves the default behaviour; nothing else depends on it.
        let _ = ctrlc::set_handler(|| {
            super::outputs::remove_live_temps();
            eprintln!("rvc-index: interrupted; unfinished outputs removed");
            std::process::exit(INTERRUPTED);
        });
    });
}
