//! Builds the eBPF programs (freeze-ebpf) for bpfel-unknown-none with the nightly toolchain and
//! bpf-linker; `cargo xtask setup` installs both. The object lands in OUT_DIR/freeze-ebpf.
use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("freeze-user has no parent directory"))?
        .join("freeze-ebpf");
    let root = root.to_str().ok_or_else(|| anyhow!("non-UTF-8 path {}", root.display()))?;
    aya_build::build_ebpf(
        [aya_build::Package { name: "freeze-ebpf", root_dir: root, ..Default::default() }],
        aya_build::Toolchain::default(),
    )
    .context(
        "building the eBPF programs failed; `cargo xtask setup` installs what they need \
         (nightly rust-src and bpf-linker)",
    )
}
