//! A trace written to a directory as files of bounded size, the oldest removed beyond a count
//! (`watch --trace-dir`): the disk use is bounded by size × count. Each file starts with the
//! trace's header line, so each is a trace `report` and `check` read on their own. Lines are never
//! split across files: a file is cut only at the end of a line.
use std::{
    fs::File,
    io::Write,
    path::{Path, PathBuf},
};

const PREFIX: &str = "freezewatch-";
const SUFFIX: &str = ".ndjson";

pub struct Rotating {
    dir: PathBuf,
    max_bytes: u64,
    keep: usize,
    /// Files of this run are named by its start time, then a sequence number.
    stem: String,
    seq: u64,
    file: File,
    size: u64,
    header: Option<Vec<u8>>,
    /// What was written since the last flush (lines, the last maybe unfinished).
    pending: Vec<u8>,
}

impl Rotating {
    /// Opens the first file in `dir` (made if missing) now, so that an unwritable directory is an
    /// error before anything is attached.
    pub fn new(dir: &Path, max_bytes: u64, keep: usize) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let stem = format!("{PREFIX}{started}-{}", std::process::id());
        let file = create(&dir.join(format!("{stem}-000001{SUFFIX}")))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep: keep.max(1),
            stem,
            seq: 1,
            file,
            size: 0,
            header: None,
            pending: Vec::new(),
        })
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.seq += 1;
        self.file = create(&self.dir.join(format!("{}-{:06}{SUFFIX}", self.stem, self.seq)))?;
        self.size = 0;
        if let Some(header) = &self.header {
            self.file.write_all(header)?;
            self.size = header.len() as u64;
        }
        self.prune()
    }

    /// Removes the oldest trace files (of any run) beyond `keep`.
    fn prune(&self) -> std::io::Result<()> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
            })
            .collect();
        // Names sort by start time, then sequence: oldest first.
        files.sort();
        let excess = files.len().saturating_sub(self.keep);
        for old in &files[..excess] {
            std::fs::remove_file(old)?;
        }
        Ok(())
    }
}

fn create(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().write(true).create_new(true).open(path)
}

impl Write for Rotating {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    /// Writes out the complete lines written so far (a flush may hand over many at once), each
    /// to the file it fits in; an unfinished line waits for its end.
    fn flush(&mut self) -> std::io::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let complete = pending.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // The lines bound for the current file, written in one go.
        let mut out = Vec::with_capacity(complete);
        for line in pending[..complete].split_inclusive(|&b| b == b'\n') {
            if self.header.is_none() {
                // The first line of a trace is its header: every later file starts with it too.
                self.header = Some(line.to_vec());
            } else if self.size + line.len() as u64 > self.max_bytes {
                self.file.write_all(&out)?;
                out.clear();
                self.rotate()?;
            }
            out.extend_from_slice(line);
            self.size += line.len() as u64;
        }
        self.file.write_all(&out)?;
        self.pending = pending[complete..].to_vec();
        Ok(())
    }
}

impl Drop for Rotating {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    }

    #[test]
    fn files_stay_within_size_and_count_and_each_starts_with_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Rotating::new(dir.path(), 300, 3).unwrap();
        writeln!(w, "{{\"type\":\"header\"}}").unwrap();
        w.flush().unwrap();
        for i in 0..100 {
            // Written in pieces, as serde_json does; flushed after a batch of lines (some of 1, one
            // of 40), as the recorder does, and once in the middle of a line.
            write!(w, "{{\"type\":\"event\",").unwrap();
            if i == 7 {
                w.flush().unwrap();
            }
            writeln!(w, "\"n\":{i:04}}}").unwrap();
            if !(20..60).contains(&i) {
                w.flush().unwrap();
            }
        }
        drop(w);
        let kept = files(dir.path());
        assert_eq!(kept.len(), 3, "{kept:?}");
        let mut last = None;
        for f in &kept {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(text.len() <= 300, "{} is {} bytes", f.display(), text.len());
            assert!(text.starts_with("{\"type\":\"header\"}\n"), "{text}");
            assert!(text.lines().all(|l| l.starts_with('{') && l.ends_with('}')), "no line is split: {text}");
            let ns: Vec<u32> = text.lines().skip(1).map(|l| l[20..24].parse().unwrap()).collect();
            if let (Some(prev), Some(first)) = (last, ns.first()) {
                assert_eq!(*first, prev + 1, "the kept files follow on from each other");
            }
            last = ns.last().copied();
        }
        assert_eq!(last, Some(99), "the newest line is kept");
    }

    #[test]
    fn an_unwritable_directory_fails_at_once() {
        assert!(Rotating::new(Path::new("/proc/freezewatch-cannot"), 100, 2).is_err());
    }
}
