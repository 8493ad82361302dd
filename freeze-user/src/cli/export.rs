//! `freezewatch export --format chrome-trace TRACE`: a trace for Perfetto or chrome://tracing.
use std::{
    io::{BufReader, BufWriter, Write},
    path::Path,
};

use freeze_model::{chrome_trace, correlate, trace};

use super::exit::{Exit, Failure, Outcome};

/// The formats `export` writes.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Trace Event JSON: opens in ui.perfetto.dev and chrome://tracing.
    ChromeTrace,
}

pub fn command(path: &Path, format: Format, out: Option<&Path>) -> Outcome {
    match format {
        Format::ChromeTrace => {}
    }
    match out {
        None => {
            export(path, BufWriter::new(std::io::stdout().lock()))?;
        }
        Some(dest) => {
            // Written beside its destination and renamed into place: a failed export leaves no
            // half-written file (and an earlier one stays as it was).
            let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let tmp = tempfile::NamedTempFile::new_in(dir)
                .map_err(|e| Failure::failed(format!("cannot write in {}: {e}", dir.display())))?;
            let file = export(path, BufWriter::new(tmp))?;
            let tmp =
                file.into_inner().map_err(|e| Failure::failed(format!("writing {}: {e}", dest.display())))?;
            tmp.persist(dest).map_err(|e| Failure::failed(format!("writing {}: {e}", dest.display())))?;
        }
    }
    Ok(Exit::Ok)
}

fn export<W: Write>(path: &Path, out: W) -> Result<W, Failure> {
    let opts = correlate::Options::default();
    let named = |e: chrome_trace::ExportError| match e {
        chrome_trace::ExportError::Trace(e) => Failure::input(format!("{}: {e}", path.display())),
        chrome_trace::ExportError::Write(e) => Failure::failed(format!("writing the export: {e}")),
    };
    if path.as_os_str() == "-" {
        return chrome_trace::write_sorted(std::io::stdin().lock(), out, &opts).map_err(named);
    }
    let open = || std::fs::File::open(path).map_err(|e| Failure::input(format!("{}: {e}", path.display())));
    // A first, light pass measures how far out of order the events are; a reorder window that
    // wide puts them in order without holding more of them than that.
    let window = trace::disorder_ns(BufReader::new(open()?))
        .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
    chrome_trace::write(trace::records(BufReader::new(open()?)), out, &opts, window).map_err(named)
}
