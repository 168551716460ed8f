//! The `tansync` binary: see [`tansync::cli`].
fn main() -> std::process::ExitCode {
    tansync::cli::main()
}
