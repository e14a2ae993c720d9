fn main() {
    // Mesa's Vulkan device-selection layer probes the window system and, with
    // XDG_RUNTIME_DIR unset (containers, cron, ssh), prints two "error:" lines
    // on every run even though nothing failed. wgpu picks the adapter itself,
    // so the layer is switched off before any thread or Vulkan call exists.
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: the process has a single thread at this point.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
    std::process::exit(rvc_index::cli::run());
}
