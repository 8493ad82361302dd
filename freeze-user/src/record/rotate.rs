//! A trace written to a directory as files of bounded size, the oldest removed beyond a count
//! (`watch --trace-dir`): the disk use is bounded by size × count. Each file starts with the
//! trace's header line, so each is a trace `report` and `check` read on their own. Lines are never
//! split across files: a file is cut only at the end of a line.
//!
//! Several instances may share a directory (a second `watch`, a test run beside the service):
//! each run holds an flock on its own lock file (`RUN.lock`) while it lives, and prunes only its
//! own files and those of runs that have ended (their lock is free, or they had none), never a
//! file of a run still writing.
use std::{
    collections::BTreeMap,
    fs::File,
    io::Write,
    os::fd::AsRawFd as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

const PREFIX: &str = "freezewatch-";
const SUFFIX: &str = ".ndjson";
const LOCK_SUFFIX: &str = ".lock";

/// Runs started by this process so far: two in one second still get their own names.
static RUNS: AtomicU32 = AtomicU32::new(0);

/// The run a trace file belongs to: its name without `-NNNNNN.ndjson`.
fn run_of(name: &str) -> Option<&str> {
    let stem = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let (run, seq) = stem.rsplit_once('-')?;
    seq.bytes().all(|b| b.is_ascii_digit()).then_some(&name[..PREFIX.len() + run.len()])
}

/// Takes the run lock `path` without waiting: `Ok(None)` when another process holds it.
fn try_lock(path: &Path, create: bool) -> std::io::Result<Option<File>> {
    let file =
        std::fs::OpenOptions::new().read(true).write(true).create(create).truncate(false).open(path)?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(file));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) { Ok(None) } else { Err(e) }
}

pub struct Rotating {
    dir: PathBuf,
    max_bytes: u64,
    keep: usize,
    /// Files of this run are named by its start time, pid and run number, then a sequence number.
    stem: String,
    /// This run's lock, held while it lives: other instances leave its files alone.
    _lock: File,
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
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        let stem = format!("{PREFIX}{started}-{}.{run}", std::process::id());
        let lock = try_lock(&dir.join(format!("{stem}{LOCK_SUFFIX}")), true)?
            .ok_or_else(|| std::io::Error::other(format!("{stem}{LOCK_SUFFIX} is locked by another run")))?;
        let file = create(&dir.join(format!("{stem}-000001{SUFFIX}")))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep: keep.max(1),
            stem,
            _lock: lock,
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

    /// Removes the oldest trace files beyond `keep`, of this run and of runs that have ended;
    /// the files of a run still writing (its lock held) are neither counted nor touched.
    fn prune(&self) -> std::io::Result<()> {
        let mut runs: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if let Some(run) = run_of(name) {
                runs.entry(run.to_owned()).or_default().push(path.clone());
            }
        }
        let mut files = Vec::new();
        // The locks of ended runs, held until their files are gone.
        let mut ended = Vec::new();
        for (run, paths) in runs {
            if run != self.stem {
                let lock = self.dir.join(format!("{run}{LOCK_SUFFIX}"));
                match try_lock(&lock, false) {
                    Ok(None) => continue,
                    Ok(Some(held)) => ended.push((run.clone(), lock, held)),
                    // No lock file: a run of a version without locks, or one whose lock was
                    // removed: ended.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            files.extend(paths);
        }
        // Names sort by start time, then run, then sequence: oldest first.
        files.sort();
        let excess = files.len().saturating_sub(self.keep);
        for old in &files[..excess] {
            std::fs::remove_file(old)?;
        }
        let kept = &files[excess..];
        let run_of_path =
            |p: &PathBuf| p.file_name().and_then(|n| n.to_str()).and_then(run_of).map(str::to_owned);
        for (run, lock, _held) in ended {
            if !kept.iter().any(|f| run_of_path(f).as_ref() == Some(&run)) {
                std::fs::remove_file(&lock)?;
            }
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
        // Its files stay (the newest trace); its lock file goes once another run prunes them.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trace files in `dir`, oldest first.
    fn files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
            .collect();
        v.sort();
        v
    }

    fn locks(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().unwrap() == "lock")
            .count()
    }

    /// Writes a header and `lines` lines of about 30 bytes, flushing each.
    fn fill(w: &mut Rotating, lines: usize) {
        writeln!(w, "{{\"type\":\"header\"}}").unwrap();
        for i in 0..lines {
            writeln!(w, "{{\"type\":\"event\",\"n\":{i:04}}}").unwrap();
            w.flush().unwrap();
        }
    }

    #[test]
    fn a_run_prunes_its_own_files_and_those_of_ended_runs_never_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Rotating::new(dir.path(), 100, 2).unwrap();
        fill(&mut first, 20);
        let firsts = files(dir.path());
        assert_eq!(firsts.len(), 2, "{firsts:?}");
        let mut second = Rotating::new(dir.path(), 100, 2).unwrap();
        fill(&mut second, 20);
        let all = files(dir.path());
        assert_eq!(all.len(), 4, "two of each: {all:?}");
        assert!(firsts.iter().all(|f| all.contains(f)), "the live first run's files are untouched");
        assert_eq!(locks(dir.path()), 2);
        // The first run ends: the second's next rotation prunes its files and its lock.
        drop(first);
        fill(&mut second, 5);
        let after = files(dir.path());
        assert_eq!(after.len(), 2, "{after:?}");
        assert!(firsts.iter().all(|f| !after.contains(f)), "the ended run's files went first");
        assert_eq!(locks(dir.path()), 1, "the ended run's lock went with its files");
    }

    #[test]
    fn file_names_belong_to_their_run() {
        assert_eq!(
            run_of("freezewatch-1764000000-812.0-000003.ndjson"),
            Some("freezewatch-1764000000-812.0")
        );
        assert_eq!(run_of("freezewatch-1764000000-812-000003.ndjson"), Some("freezewatch-1764000000-812"));
        assert_eq!(run_of("freezewatch-1764000000-812.0.lock"), None);
        assert_eq!(run_of("other-1-000001.ndjson"), None);
        assert_eq!(run_of("freezewatch-1-00x001.ndjson"), None);
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
