//! Reads tracepoint format files (`/sys/kernel/tracing/events/<cat>/<name>/format`) so the loader
//! can check that the record offsets the programs use are the ones this kernel has.
use std::collections::HashMap;

/// (offset, size) of each field, by name.
pub fn parse(text: &str) -> HashMap<String, (usize, usize)> {
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
        if let (Some(o), Some(s)) = (offset, size) {
            fields.insert(name.to_owned(), (o, s));
        }
    }
    fields
}

/// Checks `expected` (name, offset, size) against the format file of `category/name`.
pub fn check(category: &str, name: &str, expected: &[(&str, usize, usize)]) -> Result<(), String> {
    let path = format!("{}/events/{category}/{name}/format", crate::kernel::TRACEFS);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    check_text(&text, expected).map_err(|e| format!("{category}:{name}: {e}"))
}

pub fn check_text(text: &str, expected: &[(&str, usize, usize)]) -> Result<(), String> {
    let fields = parse(text);
    for (field, off, size) in expected {
        match fields.get(*field) {
            Some(&(o, s)) if o == *off && s == *size => {}
            Some(&(o, s)) => {
                return Err(format!(
                    "field `{field}` is at {o} (size {s}); the program reads it at {off} (size {size})"
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
        assert_eq!(f.get("dev"), Some(&(8, 4)));
        assert_eq!(f.get("rwbs"), Some(&(28, 10)));
        assert_eq!(f.get("lock_addr"), Some(&(40, 8)));
        assert_eq!(f.get("common_type"), Some(&(0, 2)));
    }

    #[test]
    fn a_moved_or_missing_field_is_reported() {
        assert_eq!(check_text(BIO_QUEUE, &[("dev", 8, 4), ("rwbs", 28, 10)]), Ok(()));
        assert_eq!(
            check_text(BIO_QUEUE, &[("sector", 12, 8)]),
            Err("field `sector` is at 16 (size 8); the program reads it at 12 (size 8)".into())
        );
        assert_eq!(check_text(BIO_QUEUE, &[("bytes", 28, 4)]), Err("no field `bytes`".into()));
    }
}
