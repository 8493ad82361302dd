//! `freezewatch man` and `freezewatch completions`: the manual pages and shell completions,
//! generated from the same clap definitions as `--help`, so that neither can drift from the
//! other. The Debian package (`cargo xtask dist`) ships what these print.
use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use clap::CommandFactory as _;
use clap_complete::Shell;

use super::{
    Cli,
    exit::{Exit, Failure, Outcome},
};

/// The whole command tree, built, without clap's `help` subcommand: it has no page of its own,
/// so freezewatch(1) must not point at one.
fn command_tree() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// `freezewatch man [PAGE] [--out-dir DIR]`.
pub fn man(page: Option<&str>, out_dir: Option<&Path>) -> Outcome {
    let cmd = command_tree();
    if let Some(dir) = out_dir {
        let written = write_pages(&cmd, dir)?;
        for path in written {
            println!("{}", path.display());
        }
        return Ok(Exit::Ok);
    }
    let page_cmd = match page {
        None => cmd,
        Some(name) => {
            let sub = cmd.find_subcommand(name).filter(|c| !c.is_hide_set()).ok_or_else(|| {
                let names: Vec<&str> = pages_of(&cmd).iter().map(|c| c.get_name()).collect();
                Failure::input(format!("no manual page for {name:?}; there are: {}", names.join(", ")))
            })?;
            sub.clone()
        }
    };
    let title = match page {
        None => page_cmd.get_name().to_owned(),
        Some(_) => format!("{}-{}", CLI_NAME, page_cmd.get_name()),
    };
    let mut out = Vec::new();
    man_page(page_cmd, title)
        .render(&mut out)
        .map_err(|e| Failure::failed(format!("rendering the manual page: {e}")))?;
    std::io::stdout().write_all(&out).map_err(|e| Failure::failed(format!("writing the page: {e}")))?;
    Ok(Exit::Ok)
}

const CLI_NAME: &str = "freezewatch";

/// A page titled `title` (`freezewatch-record`), its footer naming this version and its date
/// (CHANGELOG.md's, through build.rs: the same on every build).
fn man_page(cmd: clap::Command, title: String) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd)
        .title(title)
        .date(env!("FREEZEWATCH_RELEASE_DATE"))
        .source(format!("{CLI_NAME} {}", env!("CARGO_PKG_VERSION")))
        .manual("freezewatch manual")
}

/// The subcommands that get a page of their own.
fn pages_of(cmd: &clap::Command) -> Vec<&clap::Command> {
    cmd.get_subcommands().filter(|c| !c.is_hide_set()).collect()
}

/// Writes `freezewatch.1` and `freezewatch-SUB.1` for each subcommand to `dir`; returns the paths.
fn write_pages(cmd: &clap::Command, dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    std::fs::create_dir_all(dir).map_err(|e| Failure::failed(format!("creating {}: {e}", dir.display())))?;
    let mut written = Vec::new();
    let top = cmd.clone();
    let subs: Vec<clap::Command> = pages_of(cmd).into_iter().cloned().collect();
    for (page, title) in std::iter::once((top, cmd.get_name().to_owned())).chain(subs.into_iter().map(|c| {
        let title = format!("{CLI_NAME}-{}", c.get_name());
        (c, title)
    })) {
        let path = dir.join(format!("{title}.1"));
        let mut out = Vec::new();
        man_page(page, title.clone())
            .render(&mut out)
            .map_err(|e| Failure::failed(format!("rendering {title}(1): {e}")))?;
        std::fs::write(&path, out)
            .map_err(|e| Failure::failed(format!("writing {}: {e}", path.display())))?;
        written.push(path);
    }
    Ok(written)
}

/// `freezewatch completions SHELL`: the completion script on stdout.
pub fn completions(shell: Shell) -> Outcome {
    let mut cmd = Cli::command();
    let name = cmd.get_name().to_owned();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    std::io::stdout().write_all(&out).map_err(|e| Failure::failed(format!("writing the script: {e}")))?;
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_gets_a_page_named_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_pages(&command_tree(), dir.path()).unwrap();
        let names: Vec<String> =
            written.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        for want in ["freezewatch.1", "freezewatch-record.1", "freezewatch-report.1", "freezewatch-man.1"] {
            assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
        }
        assert!(!names.iter().any(|n| n.contains("help")), "no page for clap's help: {names:?}");
        let record = std::fs::read_to_string(dir.path().join("freezewatch-record.1")).unwrap();
        assert!(record.starts_with(".ie \\n(.g .ds Aq"), "roff: {}", &record[..80]);
        assert!(
            record.contains(&format!(
                ".TH freezewatch-record 1 {} \"freezewatch {}\" \"freezewatch manual\"",
                env!("FREEZEWATCH_RELEASE_DATE"),
                env!("CARGO_PKG_VERSION")
            )),
            "titled after the subcommand, with the release date, version and manual: {}",
            record.lines().nth(2).unwrap_or_default()
        );
        assert!(record.contains("\\-\\-duration"), "the options are listed");
    }

    #[test]
    fn the_bash_script_completes_the_subcommands() {
        let mut cmd = Cli::command();
        let mut out = Vec::new();
        clap_complete::generate(Shell::Bash, &mut cmd, "freezewatch", &mut out);
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("complete -F _freezewatch"), "registers a completion function");
        assert!(script.contains("record") && script.contains("report"));
    }
}
