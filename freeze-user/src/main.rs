//! The `freezewatch` binary: everything is in the library's `cli` module.
fn main() -> std::process::ExitCode {
    freezewatch::cli::main()
}
