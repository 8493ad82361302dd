//! Builds the eBPF programs (freeze-ebpf) for bpfel-unknown-none with the nightly toolchain and
//! bpf-linker; `cargo xtask setup` installs both. The object lands in OUT_DIR/freeze-ebpf.
//! It also hands the release date of this version (from CHANGELOG.md) to the manual pages.
use anyhow::{Context as _, anyhow, bail};

/// The date of CHANGELOG.md's entry for this version (`## 0.1.0 (2026-11-28)`).
fn release_date(workspace: &std::path::Path) -> anyhow::Result<String> {
    let path = workspace.join("CHANGELOG.md");
    println!("cargo:rerun-if-changed={}", path.display());
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let version = env!("CARGO_PKG_VERSION");
    let heading = format!("## {version} (");
    match text.lines().find_map(|l| l.strip_prefix(&heading)).and_then(|rest| rest.strip_suffix(')')) {
        Some(date) => Ok(date.to_owned()),
        None => bail!("CHANGELOG.md has no `## {version} (YYYY-MM-DD)` entry: add one for this version"),
    }
}

fn main() -> anyhow::Result<()> {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("freeze-user has no parent directory"))?;
    println!("cargo:rustc-env=FREEZEWATCH_RELEASE_DATE={}", release_date(workspace)?);
    let root = workspace.join("freeze-ebpf");
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
