//! Rebuild when bpf-linker changes, so a re-installed linker is picked up.
fn main() {
    if let Ok(path) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
