//! Parsing the assertion language; errors name the column.
use std::fmt;

use super::{Assertion, Metric, Op, Scope};
use crate::units::parse_duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    pub text: String,
    /// 1-based column of the problem.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "column {}: {}\n  {}\n  {}^",
            self.column,
            self.message,
            self.text,
            " ".repeat(self.column - 1)
        )
    }
}

/// Splits on whitespace, keeping each token's 1-based column.
fn tokens(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s, &text[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &text[s..]));
    }
    out.into_iter().map(|(i, t)| (text[..i].chars().count() + 1, t)).collect()
}

fn err(text: &str, column: usize, message: impl Into<String>) -> ParseError {
    ParseError { text: text.to_owned(), column, message: message.into() }
}

fn parse_scope(text: &str, column: usize, token: &str) -> Result<Scope, ParseError> {
    let body = &token[1..];
    if body.is_empty() {
        return Err(err(text, column, format!("empty scope: {SCOPES}")));
    }
    for (key, make) in [("unit=", Scope::Unit as fn(String) -> Scope), ("comm=", Scope::Comm)] {
        if let Some(value) = body.strip_prefix(key) {
            if value.is_empty() {
                return Err(err(text, column + 1 + key.len(), format!("@{key} needs a value")));
            }
            return Ok(make(value.to_owned()));
        }
    }
    if let Some(path) = body.strip_prefix("cgroup=") {
        if !path.starts_with('/') {
            return Err(err(
                text,
                column + 8,
                "@cgroup= takes a path below the cgroup2 root, e.g. @cgroup=/system.slice",
            ));
        }
        let trimmed = path.trim_end_matches('/');
        return Ok(Scope::Cgroup(if trimmed.is_empty() { "/".into() } else { trimmed.to_owned() }));
    }
    if let Some(fs) = body.strip_prefix("fs=") {
        if fs.is_empty() {
            return Err(err(text, column + 4, "@fs= needs a filesystem type, e.g. @fs=xfs"));
        }
        return Ok(Scope::Fs(fs.to_owned()));
    }
    if let Some(dev) = body.strip_prefix("dev=") {
        let ok =
            dev.split_once(':').is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
        if !ok {
            return Err(err(text, column + 5, format!("`{dev}` is not MAJOR:MINOR, e.g. @dev=7:0")));
        }
        return Ok(Scope::Dev(dev.to_owned()));
    }
    if body.starts_with('/') {
        let trimmed = body.trim_end_matches('/');
        return Ok(Scope::Mountpoint(if trimmed.is_empty() { "/".into() } else { trimmed.to_owned() }));
    }
    Err(err(text, column, format!("unknown scope `{token}`: {SCOPES}")))
}

const SCOPES: &str =
    "write @/mount/point, @fs=TYPE, @dev=MAJOR:MINOR, @unit=NAME, @cgroup=/PATH or @comm=NAME";

/// A scope the metric cannot take: lost events belong to the whole recording, and a task scope
/// counts findings, which only some metrics are made of.
fn check_scope(text: &str, column: usize, metric: Metric, scope: &Scope) -> Result<(), ParseError> {
    if metric == Metric::LostEvents && *scope != Scope::All {
        return Err(err(text, column, "lost_events counts the whole recording; it takes no scope"));
    }
    if scope.is_task() && metric.counted_finding().is_none() {
        return Err(err(
            text,
            column,
            format!(
                "{} cannot be scoped by task (@unit=, @cgroup=, @comm=): those scopes count findings, \
                 of slips, failed_freezes, blocked_writers and mounts_while_frozen",
                metric.as_str()
            ),
        ));
    }
    Ok(())
}

/// Parses one assertion.
pub fn parse(text: &str) -> Result<Assertion, ParseError> {
    let toks = tokens(text);
    let Some(&(col0, first)) = toks.first() else {
        return Err(err(text, 1, "empty assertion"));
    };
    let scope_at = |i: usize| -> Result<Scope, ParseError> {
        match toks.get(i) {
            Some(&(c, t)) if t.starts_with('@') => parse_scope(text, c, t),
            Some(&(c, t)) => Err(err(text, c, format!("expected a scope (@...) here, found `{t}`"))),
            None => Ok(Scope::All),
        }
    };
    let shorthand = |metric: Metric, op: Op, bound: u64, scope: Scope| Assertion {
        text: text.trim().to_owned(),
        metric,
        scope,
        op,
        bound,
    };
    let rest_must_end = |after: usize| -> Result<(), ParseError> {
        match toks.get(after) {
            Some(&(c, t)) => Err(err(text, c, format!("unexpected `{t}` after the assertion"))),
            None => Ok(()),
        }
    };
    match first {
        "no-slips" | "no-mounts-while-frozen" | "no-lost-events" | "not-left-frozen" | "frozen" => {
            let scope = scope_at(1)?;
            rest_must_end(if scope == Scope::All { 1 } else { 2 })?;
            let (metric, op, bound) = match first {
                "no-slips" => (Metric::Slips, Op::Eq, 0),
                "no-mounts-while-frozen" => (Metric::MountsWhileFrozen, Op::Eq, 0),
                "no-lost-events" => (Metric::LostEvents, Op::Eq, 0),
                "not-left-frozen" => (Metric::LeftFrozen, Op::Eq, 0),
                _ => (Metric::Freezes, Op::Ge, 1),
            };
            if let Some(&(column, _)) = toks.get(1) {
                check_scope(text, column, metric, &scope)?;
            }
            return Ok(shorthand(metric, op, bound, scope));
        }
        _ => {}
    }
    let metric = Metric::from_name(first).ok_or_else(|| {
        let names = Metric::NAMES;
        err(text, col0, format!("unknown metric `{first}`; metrics: {}", names.join(", ")))
    })?;
    let mut i = 1;
    let scope = match toks.get(1) {
        Some(&(_, t)) if t.starts_with('@') => {
            i = 2;
            scope_at(1)?
        }
        _ => Scope::All,
    };
    if let Some(&(column, _)) = toks.get(1) {
        check_scope(text, column, metric, &scope)?;
    }
    let &(op_col, op_tok) = toks
        .get(i)
        .ok_or_else(|| err(text, text.chars().count() + 1, "missing operator (one of == != < <= > >=)"))?;
    let op = match Op::from_name(op_tok) {
        Some(op) => op,
        None if op_tok == "=" => return Err(err(text, op_col, "`=` is not an operator; did you mean `==`?")),
        None => {
            return Err(err(text, op_col, format!("`{op_tok}` is not an operator (one of == != < <= > >=)")));
        }
    };
    let &(val_col, val_tok) = toks
        .get(i + 1)
        .ok_or_else(|| err(text, text.chars().count() + 1, "missing value after the operator"))?;
    let bound = if metric.is_duration() {
        let d = parse_duration(val_tok)
            .map_err(|e| err(text, val_col, format!("{} is a duration: {e}", metric.as_str())))?;
        u64::try_from(d.as_nanos()).map_err(|_| err(text, val_col, "duration too large"))?
    } else {
        val_tok.parse::<u64>().map_err(|_| {
            err(text, val_col, format!("{} is a count: `{val_tok}` is not a whole number", metric.as_str()))
        })?
    };
    rest_must_end(i + 2)?;
    Ok(Assertion { text: text.trim().to_owned(), metric, scope, op, bound })
}

/// Parses an assertions file: one per line, `#` starts a comment, blank lines are skipped.
/// Errors name the line.
pub fn parse_file(content: &str) -> Result<Vec<Assertion>, String> {
    let mut out = Vec::new();
    for (n, line) in content.lines().enumerate() {
        let code = line.split('#').next().unwrap_or("").trim();
        if code.is_empty() {
            continue;
        }
        out.push(parse(code).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    Ok(out)
}
