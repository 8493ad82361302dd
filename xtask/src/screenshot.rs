//! `cargo xtask screenshot`: regenerates docs/report.png, the README's picture of `report --html`:
//! the page for tests/fixtures/cycles-ext4-xfs.ndjson as headless Chromium draws it.
use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, ensure};

use crate::{run, workspace_root};

const FIXTURE: &str = "tests/fixtures/cycles-ext4-xfs.ndjson";
pub const PNG: &str = "docs/report.png";

pub fn screenshot(freezewatch: &Path) -> Result<()> {
    ensure!(crate::setup::on_path("chromium"), "chromium is missing: run `cargo xtask setup`");
    let root = workspace_root();
    let dir = root.join("target/screenshot");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let page = dir.join("report.html");
    run(Command::new(freezewatch)
        .arg("report")
        .arg(root.join(FIXTURE))
        .arg("--html")
        .arg(&page)
        .stdout(std::process::Stdio::null()))?;
    let png = root.join(PNG);
    run(Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1450"])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display())))?;
    eprintln!("xtask: wrote {}", png.display());
    Ok(())
}
