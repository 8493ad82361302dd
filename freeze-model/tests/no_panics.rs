//! Whatever a user types or a file holds, the parsers answer with a value or an error, never a
//! panic.
use freeze_model::{assertions, trace};
use proptest::prelude::*;

/// Text that looks like the assertion language more often than random bytes would.
fn assertionish() -> impl Strategy<Value = String> {
    let word = prop_oneof![
        Just("slips".to_owned()),
        Just("max_frozen".to_owned()),
        Just("no-slips".to_owned()),
        Just("frozen".to_owned()),
        Just("@/mnt/x".to_owned()),
        Just("@fs=".to_owned()),
        Just("@dev=7:".to_owned()),
        Just("==".to_owned()),
        Just(">=".to_owned()),
        Just("=".to_owned()),
        Just("1.5.s".to_owned()),
        Just("500ms".to_owned()),
        Just("18446744073709551616".to_owned()),
        "[ -~]{0,6}",
        "\\PC{0,4}",
    ];
    prop::collection::vec(word, 0..6).prop_map(|w| w.join(" "))
}

/// An event line as the recorder writes it, with escapes, nesting and a stack.
const EVENT: &str = r#"{"v":1,"type":"event","kind":"block_write","hook":"tracepoint:block:block_bio_queue","ts_ns":5,"pid":7,"tid":7,"comm":"dd","sb":{"id":"0x1","dev":"7:0","fstype":"ext4","s_id":"loop0","uuid":"u"},"level_before":4,"level_after":4,"block":{"dev":"7:0","sector":8,"bytes":4096},"stack":["submit_bio+0x1","a\\b"]}"#;

/// Lines that look like trace records, with broken and mixed-up fields.
fn traceish() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        // Cut anywhere: the reader's fast path must step aside, not run off the end.
        (0..EVENT.len()).prop_map(|n| EVENT.as_bytes()[..n].iter().map(|&b| b as char).collect()),
        Just(r#"{"v":1,"type":"event"}"#.to_owned()),
        Just(r#"{"v":1,"type":"footer","events":-1}"#.to_owned()),
        Just(r#"{"v":2,"type":"header"}"#.to_owned()),
        Just(
            r#"{"v":1,"type":"event","kind":"freeze_end","hook":"tracepoint:syscalls:ioctl","ts_ns":1,"pid":1,"tid":1,"comm":"x","sb":{"id":"0x1","dev":"7:0","fstype":"ext4","s_id":"l","uuid":"u"},"level_before":null,"level_after":4,"ret":0}"#
                .to_owned()
        ),
        Just("{".to_owned()),
        Just(String::new()),
        "[ -~]{0,40}",
        "\\PC{0,10}",
    ];
    prop::collection::vec(line, 0..8).prop_map(|l| l.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_assertion_parser_never_panics(text in assertionish()) {
        if let Err(e) = assertions::parse(&text) {
            // Errors point inside the text (or just past its end).
            prop_assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "{e:?}");
            let _ = e.to_string();
        }
    }

    #[test]
    fn the_assertion_parser_never_panics_on_any_string(text in "\\PC{0,40}") {
        let _ = assertions::parse(&text);
        let _ = assertions::parse_file(&text);
    }

    #[test]
    fn the_trace_reader_never_panics(text in traceish()) {
        match trace::read_trace(text.as_bytes()) {
            Ok(records) => { let _ = trace::Contents::from_records(records); }
            Err(e) => prop_assert!(e.to_string().starts_with("line "), "{e}"),
        }
    }

    #[test]
    fn the_trace_reader_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Err(e) = trace::read_trace(&bytes[..]) {
            prop_assert!(e.to_string().starts_with("line "), "{e}");
        }
    }
}
