//! freeze-model is pure: nothing in its dependency tree touches the kernel, a terminal or a
//! runtime. This fails the day someone adds one (directly or through another crate).
use std::process::Command;

const FORBIDDEN: &[&str] = &["aya", "aya-obj", "libc", "tokio", "clap", "ratatui", "crossterm"];

#[test]
fn the_dependency_tree_has_no_kernel_terminal_or_runtime_crate() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "-p", "freeze-model", "-e", "normal,build", "--prefix", "none", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("runs cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let crates: Vec<&str> = tree.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert!(crates.contains(&"freeze-common") && crates.contains(&"serde"), "the tree was read: {tree}");
    let bad: Vec<&&str> = crates.iter().filter(|c| FORBIDDEN.contains(c)).collect();
    assert!(bad.is_empty(), "freeze-model depends on {bad:?}:\n{tree}");
}
