//! A plain HTTP/1.0 GET on a loopback port, and a free one: for the metrics tests.
use std::{
    io::{Read as _, Write as _},
    net::TcpStream,
};

use crate::limit;

/// The whole response (status line, headers, body) to `GET path` on 127.0.0.1:`port`, or None
/// when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(limit(10))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

/// A loopback port nothing listens on (bound and released; a race with another process taking
/// it in between is possible but harmless here: the test fails loudly).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}
