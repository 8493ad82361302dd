//! `freezewatch export --format chrome-trace TRACE`: a trace for Perfetto or chrome://tracing; and
//! what it shares with `report --html`: reading a trace in order for a view of it, and writing a
//! file that appears only once complete.
use std::{
    fs::File,
    io::{BufReader, BufWriter, Write},
    path::Path,
};

use freeze_model::{
    chrome_trace, correlate, html,
    trace::{self, Record, TraceError},
    walk::{self, OutputError},
};

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
    let (view, opts) = (View::ChromeTrace, correlate::Options::default());
    match out {
        None => {
            view.write(path, BufWriter::new(std::io::stdout().lock()), &opts)?;
        }
        Some(dest) => write_atomically(dest, |w| view.write(path, w, &opts))?,
    }
    Ok(Exit::Ok)
}

/// The views of a trace that are written as files: streamed from a trace file, or sorted from stdin.
#[derive(Clone, Copy)]
pub enum View {
    ChromeTrace,
    Html,
}

impl View {
    /// Writes the view of the trace at `path` (`-`: stdin) to `out`.
    pub fn write<W: Write>(self, path: &Path, out: W, opts: &correlate::Options) -> Result<W, Failure> {
        let named = |e: OutputError| match e {
            OutputError::Trace(e) => Failure::input(format!("{}: {e}", path.display())),
            OutputError::Write(e) => Failure::failed(format!("writing the output: {e}")),
        };
        // Stdin cannot be read twice: it is read whole and sorted (window 0). A file is read twice:
        // a first, light pass measures how far out of order its events are, and a reorder window
        // that wide puts them in order without holding more of them than that.
        let from_stdin = path.as_os_str() == "-";
        let (records, window): (Box<dyn Iterator<Item = Result<Record, TraceError>>>, u64) = if from_stdin {
            let sorted = walk::sorted_records(std::io::stdin().lock()).map_err(|e| named(e.into()))?;
            (Box::new(sorted.into_iter().map(Ok)), 0)
        } else {
            let open = || File::open(path).map_err(|e| Failure::input(format!("{}: {e}", path.display())));
            let window = trace::disorder_ns(BufReader::with_capacity(trace::READ_BUFFER, open()?))
                .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
            (Box::new(trace::records(BufReader::with_capacity(trace::READ_BUFFER, open()?))), window)
        };
        match self {
            View::ChromeTrace => chrome_trace::write(records, out, opts, window),
            View::Html => html::write(records, out, opts, window),
        }
        .map_err(named)
    }
}

/// Writes `dest` through `write`, beside it first and renamed into place once complete: a failure
/// leaves no half-written file (and an earlier one as it was).
pub fn write_atomically(
    dest: &Path,
    write: impl FnOnce(BufWriter<tempfile::NamedTempFile>) -> Result<BufWriter<tempfile::NamedTempFile>, Failure>,
) -> Result<(), Failure> {
    let dir = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| Failure::failed(format!("cannot write in {}: {e}", dir.display())))?;
    let file = write(BufWriter::new(tmp))?;
    let tmp = file.into_inner().map_err(|e| Failure::failed(format!("writing {}: {e}", dest.display())))?;
    // A report is for others to read (the temporary file was private to us).
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Failure::failed(format!("writing {}: {e}", dest.display())))?;
    tmp.persist(dest).map_err(|e| Failure::failed(format!("writing {}: {e}", dest.display())))?;
    Ok(())
}
