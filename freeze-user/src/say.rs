//! freezewatch's own words on stderr (what it attached, warnings, the log): written straight
//! there, or, while `watch` runs, through a lane of its output queue (`route`). Under systemd
//! stderr is a socket to journald, whose files may be on a filesystem that is frozen (qemu-ga
//! freezes them all): once the socket's buffer is full a write would wait for the thaw. Through
//! the queue only the lane's thread waits, and the event loop, the watchdog and `/metrics` go on.
use std::{
    io::Write,
    sync::{Mutex, PoisonError},
};

use crate::queue::Lane;

static ROUTE: Mutex<Option<Lane>> = Mutex::new(None);

/// From now on, lines go to `lane` (`None`: to stderr again).
pub fn route(lane: Option<Lane>) {
    *ROUTE.lock().unwrap_or_else(PoisonError::into_inner) = lane;
}

/// Says `line` (no newline at its end).
pub fn line(line: &str) {
    let lane = ROUTE.lock().unwrap_or_else(PoisonError::into_inner).clone();
    match lane {
        Some(lane) => lane.push(format!("{line}\n").into_bytes()),
        // As eprintln! would, but without panicking when stderr is gone.
        None => {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}

/// `eprintln!` that goes where `route` says.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::say::line(&format!($($arg)*)) };
}

/// The log's target (env_logger): each line it writes goes through `line`.
pub struct LogTarget {
    buf: Vec<u8>,
}

impl LogTarget {
    pub fn new() -> Self {
        Self { buf: Vec::new() }
    }
}

impl Default for LogTarget {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for LogTarget {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let rest = self.buf.split_off(end + 1);
            let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
            self.buf = rest;
            line(&text);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let text = String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned();
            line(&text);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Output, Queue, Rank};

    struct Collect(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Output for Collect {
        fn write_chunk(&mut self, chunk: &[u8]) -> std::io::Result<()> {
            self.0.lock().expect("collect").extend_from_slice(chunk);
            Ok(())
        }
    }

    #[test]
    fn routed_lines_and_log_lines_go_through_the_lane_in_order() {
        let got = std::sync::Arc::new(Mutex::new(Vec::new()));
        let queue = Queue::new(1 << 20);
        let lane = queue.lane("log", Rank::Log, Box::new(Collect(got.clone()))).expect("lane");
        route(Some(lane.clone()));
        say!("freezewatch: one {}", 1);
        let mut log = LogTarget::new();
        write!(log, "[WARN] two\nthree").expect("writes");
        log.flush().expect("flushes");
        route(None);
        assert_eq!(lane.finish(std::time::Duration::from_secs(10)), None);
        assert_eq!(
            String::from_utf8_lossy(&got.lock().expect("got")),
            "freezewatch: one 1\n[WARN] two\nthree\n"
        );
    }
}
