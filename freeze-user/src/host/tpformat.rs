//! Reads tracepoint format files (`/sys/kernel/tracing/events/<cat>/<name>/format`) so the loader
//! can check that the record offsets the programs use are the ones this kernel has.
use freeze_common::tp::TpField;
use std::collections::HashMap;

/// A field of a tracepoint record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub offset: usize,
    pub size: usize,
    /// A fixed-size array (`char rwbs[10]`): reading a prefix of it is fine.
    pub array: bool,
}

/// Every field, by name.
pub fn parse(text: &str) -> HashMap<String, Field> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("field:") else { continue };
        let mut parts = rest.split(';').map(str::trim);
        let Some(decl) = parts.next() else { continue };
        // The name is the last word of the declaration, without any array suffix.
        let name = decl.rsplit([' ', '*']).next().unwrap_or("").split('[').next().unwrap_or("");
        let mut offset = None;
        let mut size = None;
        for p in parts {
            if let Some(v) = p.strip_prefix("offset:") {
                offset = v.parse().ok();
            } else if let Some(v) = p.strip_prefix("size:") {
                size = v.parse().ok();
            }
        }
        if let (Some(offset), Some(size)) = (offset, size) {
            let array = decl.rsplit([' ', '*']).next().is_some_and(|n| n.contains('['));
            fields.insert(name.to_owned(), Field { offset, size, array });
        }
    }
    fields
}

/// Checks `expected` (name, offset, size) against the format file of `category/name`.
pub fn check(category: &str, name: &str, expected: &[TpField]) -> Result<(), String> {
    let path = format!("{}/events/{category}/{name}/format", crate::host::kernel::TRACEFS);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    check_text(&text, expected).map_err(|e| format!("{category}:{name}: {e}"))
}

pub fn check_text(text: &str, expected: &[TpField]) -> Result<(), String> {
    let fields = parse(text);
    for &TpField { name: field, offset: off, size } in expected {
        match fields.get(field) {
            // A scalar must match exactly; of an array the program may read a prefix.
            Some(f) if f.offset == off && (f.size == size || (f.array && f.size > size)) => {}
            Some(f) => {
                return Err(format!(
                    "field `{field}` is at {} (size {}); the program reads it at {off} (size {size})",
                    f.offset, f.size
                ));
            }
            None => return Err(format!("no field `{field}`")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &'static str, offset: usize, size: usize) -> TpField {
        TpField { name, offset, size }
    }

    const BIO_QUEUE: &str = "name: block_bio_queue
ID: 1234
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:dev_t dev;\toffset:8;\tsize:4;\tsigned:0;
\tfield:sector_t sector;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned int nr_sector;\toffset:24;\tsize:4;\tsigned:0;
\tfield:char rwbs[10];\toffset:28;\tsize:10;\tsigned:0;
\tfield:void * lock_addr;\toffset:40;\tsize:8;\tsigned:0;
";

    #[test]
    fn parses_names_arrays_and_pointers() {
        let f = parse(BIO_QUEUE);
        let at = |n: &str| f.get(n).map(|f| (f.offset, f.size, f.array));
        assert_eq!(at("dev"), Some((8, 4, false)));
        assert_eq!(at("rwbs"), Some((28, 10, true)));
        assert_eq!(at("lock_addr"), Some((40, 8, false)));
        assert_eq!(at("common_type"), Some((0, 2, false)));
    }

    #[test]
    fn a_moved_or_missing_field_is_reported() {
        assert_eq!(check_text(BIO_QUEUE, &[f("dev", 8, 4), f("rwbs", 28, 10)]), Ok(()));
        assert_eq!(
            check_text(BIO_QUEUE, &[f("sector", 12, 8)]),
            Err("field `sector` is at 16 (size 8); the program reads it at 12 (size 8)".into())
        );
        assert_eq!(check_text(BIO_QUEUE, &[f("bytes", 28, 4)]), Err("no field `bytes`".into()));
        // An 8-byte read of a 10-byte array (6.18) or an 8-byte one (6.12) is fine; of a scalar it is not.
        assert_eq!(check_text(BIO_QUEUE, &[f("rwbs", 28, 8)]), Ok(()));
        assert!(check_text(BIO_QUEUE, &[f("rwbs", 28, 12)]).is_err());
        assert!(check_text(BIO_QUEUE, &[f("sector", 16, 4)]).is_err());
    }
}
