fn main() {
    std::process::exit(rvc_index::cli::run());
}
