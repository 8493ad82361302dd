//! The `freezewatch` binary: everything is in the library's `cli` module.
fn main() -> std::process::ExitCode {
    freeze_user::cli::main()
}
