//! A cursor over one line of JSON as the trace writer writes it (no whitespace between tokens),
//! for the reader's fast path. Every method either reads exactly what it names or answers `None`
//! and the line goes to serde_json, which reads any JSON and names what is wrong: the cursor only
//! has to be right about what it accepts, never complete.
use memchr::memchr2;

/// Whether `line` is one JSON object and nothing more, by its brackets and strings (what lies
/// between them is not checked).
pub(super) fn is_one_object(line: &[u8]) -> bool {
    let mut c = Cursor::new(line);
    c.peek() == Some(b'{') && c.value().is_some() && c.at_end()
}

pub(super) struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    pub(super) fn at_end(&self) -> bool {
        self.at == self.bytes.len()
    }

    /// Consumes `byte`, which must come next.
    pub(super) fn eat(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A string without escapes or control characters (anything else: `None`), borrowed.
    pub(super) fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let rest = &self.bytes[self.at..];
        // The strings read here are short (names, numbers as text): a plain loop beats memchr's
        // setup, and finds escapes, control characters and non-ASCII bytes in the same pass.
        let mut seen = 0u8;
        let end = rest.iter().position(|&b| {
            seen |= b;
            b == b'"' || b == b'\\' || b < 0x20
        })?;
        if rest[end] != b'"' {
            return None;
        }
        let text = &rest[..end];
        self.at += end + 1;
        if seen & 0x80 == 0 {
            // SAFETY: every byte of `text` is below 0x80 (their OR is), so it is ASCII, which is
            // valid UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(text) })
        } else {
            std::str::from_utf8(text).ok()
        }
    }

    /// `null` (consumed: true) or something else (nothing consumed: false).
    pub(super) fn null(&mut self) -> bool {
        let null = self.bytes[self.at..].starts_with(b"null");
        if null {
            self.at += 4;
        }
        null
    }

    /// `null`, or what `read` reads.
    pub(super) fn opt<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null() { Some(None) } else { read(self).map(Some) }
    }

    /// A non-negative integer as JSON writes it: no sign, no leading zero, no fraction or
    /// exponent, within u64.
    pub(super) fn u64(&mut self) -> Option<u64> {
        let digits = self.bytes[self.at..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || (digits > 1 && self.bytes[self.at] == b'0') {
            return None;
        }
        let mut value: u64 = 0;
        for &d in &self.bytes[self.at..self.at + digits] {
            value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        self.at += digits;
        match self.peek() {
            Some(b'.' | b'e' | b'E') => None,
            _ => Some(value),
        }
    }

    pub(super) fn u32(&mut self) -> Option<u32> {
        self.u64()?.try_into().ok()
    }

    /// An integer within i64 (no `-0`).
    pub(super) fn i64(&mut self) -> Option<i64> {
        if self.eat(b'-').is_none() {
            return self.u64()?.try_into().ok();
        }
        if self.peek()? == b'0' {
            return None;
        }
        let magnitude = self.u64()?;
        if magnitude == 1 << 63 { Some(i64::MIN) } else { i64::try_from(magnitude).ok().map(|m| -m) }
    }

    /// The value here when it is one of `known` (each a whole JSON value read before): a JSON
    /// value's text decides where it ends, so text that starts with a known value and goes on
    /// with `,` or `}` holds exactly that value. Consumed when found.
    pub(super) fn known<'k, T>(&mut self, known: &'k [(Box<[u8]>, T)]) -> Option<&'k T> {
        let rest = &self.bytes[self.at..];
        let (text, value) = known
            .iter()
            .find(|(text, _)| rest.starts_with(text) && matches!(rest.get(text.len()), Some(b',' | b'}')))?;
        self.at += text.len();
        Some(value)
    }

    /// Any one value, skipped and handed back whole, for serde_json to read (which checks it):
    /// this only has to find where it ends.
    pub(super) fn value(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        match self.peek()? {
            b'"' => self.skip_string()?,
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match *self.bytes.get(self.at)? {
                        b'"' => {
                            self.skip_string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                let len =
                    self.bytes[self.at..].iter().take_while(|b| !matches!(b, b',' | b'}' | b']')).count();
                self.at += len;
            }
        }
        (self.at > start).then(|| &self.bytes[start..self.at])
    }

    /// At a string's opening quote: moves past its closing one (escapes included).
    fn skip_string(&mut self) -> Option<()> {
        self.at += 1;
        loop {
            // An escape at the very end leaves `at` past it: nothing is left to read then.
            let rest = self.bytes.get(self.at..)?;
            let k = memchr2(b'"', b'\\', rest)?;
            if rest[k] == b'\\' {
                self.at += k + 2;
                continue;
            }
            self.at += k + 1;
            return Some(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_it_names_and_refuses_the_rest() {
        assert_eq!(Cursor::new(b"123,").u64(), Some(123));
        for refused in [&b"0123"[..], b"1.5", b"1e3", b"-1", b"", b"x", b"18446744073709551616"] {
            assert_eq!(Cursor::new(refused).u64(), None, "{:?}", std::str::from_utf8(refused));
        }
        assert_eq!(Cursor::new(b"0}").u64(), Some(0));
        assert_eq!(Cursor::new(b"-9223372036854775808").i64(), Some(i64::MIN));
        assert_eq!(Cursor::new(b"-16,").i64(), Some(-16));
        assert_eq!(Cursor::new(b"-0").i64(), None);
        assert_eq!(Cursor::new(b"4294967296").u32(), None);
        assert_eq!(Cursor::new(br#""ext4","#).string(), Some("ext4"));
        assert_eq!(Cursor::new(br#""a\"b""#).string(), None, "escapes go to serde_json");
        assert_eq!(Cursor::new(b"\"a\tb\"").string(), None, "control characters are not JSON");
        assert_eq!(Cursor::new(b"\"\xff\"").string(), None, "not UTF-8");
        let mut c = Cursor::new(b"null,");
        assert_eq!(c.opt(Cursor::u64), Some(None));
        assert_eq!(c.peek(), Some(b','));
    }

    #[test]
    fn a_skipped_value_ends_where_json_says() {
        let line = br#"{"a":[1,{"b":"]}\"x"}],"c":null}"#;
        let mut c = Cursor::new(line);
        c.eat(b'{').expect("{");
        assert_eq!(c.string(), Some("a"));
        c.eat(b':').expect(":");
        assert_eq!(c.value(), Some(&br#"[1,{"b":"]}\"x"}]"#[..]));
        c.eat(b',').expect(",");
        assert_eq!(c.string(), Some("c"));
        c.eat(b':').expect(":");
        assert_eq!(c.value(), Some(&b"null"[..]));
        c.eat(b'}').expect("}");
        assert!(c.at_end());
        assert_eq!(Cursor::new(br#"{"unclosed":"#).value(), None);
        assert_eq!(Cursor::new(br#"["a\"#).value(), None, "an escape at the end of the line");
        assert!(is_one_object(br#"{"a":{"b":"}"},"c":[1]}"#));
        for not_one in [&br#"{"a":1}{"#[..], br#"{"a":"#, br#"[1]"#, br#"{"a":1} "#] {
            assert!(!is_one_object(not_one), "{:?}", std::str::from_utf8(not_one));
        }
    }
}
