//! A validating JSON scanner over a body's bytes, for the few shapes the classifier reads.
//! It walks objects member by member, hands out string literals and raw values as slices of
//! the input, and skips everything else without recursion (nesting depth costs one bit per
//! level), so a body is read once and nothing is copied. UTF-8 is checked where it can
//! occur, inside strings (anywhere else a non-ASCII byte is a syntax error anyway).
//!
//! It accepts exactly the UTF-8 texts `serde_json` accepts when it skips a value (RFC 8259
//! grammar; escapes checked for form, so a lone `\uD800` passes, as there): the fuzz target
//! `jsonrpc_parse_body` checks the two agree on every input.

/// The input is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syntax;

pub type Result<T> = std::result::Result<T, Syntax>;

use crate::bytes::{run_end_mask, word_at, HIGHS};

pub struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Scanner { bytes, pos: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    fn at(&self, i: usize) -> Option<u8> {
        self.bytes().get(i).copied()
    }

    /// The next byte after whitespace.
    pub fn peek(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.at(self.pos) {
            self.pos += 1;
        }
        self.at(self.pos)
    }

    fn expect(&mut self, byte: u8) -> Result<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Syntax)
        }
    }

    /// Whether only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Where the next value starts (whitespace skipped), for [`Scanner::since`].
    pub fn mark(&mut self) -> usize {
        self.peek();
        self.pos
    }

    /// The text scanned since a [`Scanner::mark`].
    pub fn since(&self, mark: usize) -> Result<&'a str> {
        self.slice(mark)
    }

    /// The text scanned since `from`.
    fn slice(&self, from: usize) -> Result<&'a str> {
        let bytes = self.bytes.get(from..self.pos).ok_or(Syntax)?;
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: the cursor only moves past bytes it has checked: outside strings only
        // ASCII is accepted, inside strings every non-ASCII sequence goes through
        // `utf8_sequence`; slices start and end at ASCII bytes (quotes, brackets, digits,
        // letters of literals), so they are valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    }

    /// A string literal, quotes included, and whether it has escapes.
    #[inline]
    pub fn string(&mut self) -> Result<(&'a str, bool)> {
        self.expect(b'"')?;
        let start = self.pos - 1;
        let escapes = self.string_rest()?;
        Ok((self.slice(start)?, escapes))
    }

    /// The rest of a string literal after its opening quote; whether it has escapes. Apart
    /// from [`Scanner::string`] so that the loop, called for every key and string value, returns
    /// in a register rather than through memory.
    fn string_rest(&mut self) -> Result<bool> {
        let bytes = self.bytes();
        let mut escapes = false;
        loop {
            // Eight plain bytes at a time; at a word holding a special byte, jump to it.
            if let Some(word) = word_at(bytes, self.pos) {
                let mask = run_end_mask(word) | (word & HIGHS);
                if mask == 0 {
                    self.pos += 8;
                    continue;
                }
                self.pos += (mask.trailing_zeros() / 8) as usize;
            }
            match self.at(self.pos).ok_or(Syntax)? {
                b'"' => {
                    self.pos += 1;
                    return Ok(escapes);
                }
                b'\\' => {
                    escapes = true;
                    self.escape()?;
                }
                0..=0x1f => return Err(Syntax),
                0x80.. => self.pos += self.utf8_sequence()?,
                _ => self.pos += 1,
            }
        }
    }

    /// The length of the valid UTF-8 sequence at the cursor.
    fn utf8_sequence(&self) -> Result<usize> {
        let len = match self.at(self.pos).ok_or(Syntax)? {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return Err(Syntax),
        };
        let sequence = self.bytes.get(self.pos..self.pos + len).ok_or(Syntax)?;
        std::str::from_utf8(sequence)
            .map(|_| len)
            .map_err(|_| Syntax)
    }

    fn escape(&mut self) -> Result<()> {
        match self.at(self.pos + 1).ok_or(Syntax)? {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                self.pos += 2;
                Ok(())
            }
            b'u' => {
                let hex = self.bytes().get(self.pos + 2..self.pos + 6).ok_or(Syntax)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return Err(Syntax);
                }
                self.pos += 6;
                Ok(())
            }
            _ => Err(Syntax),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.at(self.pos).is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A number literal: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number(&mut self) -> Result<&'a str> {
        let start = self.pos;
        if self.at(self.pos) == Some(b'-') {
            self.pos += 1;
        }
        match self.at(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Syntax),
        }
        if self.at(self.pos) == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(Syntax);
            }
        }
        if let Some(b'e' | b'E') = self.at(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.at(self.pos) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(Syntax);
            }
        }
        self.slice(start)
    }

    fn word(&mut self, word: &[u8]) -> Result<()> {
        if self.bytes().get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Syntax)
        }
    }

    /// One scalar (string, number, `true`, `false`, `null`) or the opening bracket of a
    /// container, which it consumes and reports.
    fn scalar_or_open(&mut self) -> Result<Option<u8>> {
        match self.peek().ok_or(Syntax)? {
            b'"' => self.string().map(|_| None),
            b'-' | b'0'..=b'9' => self.number().map(|_| None),
            b't' => self.word(b"true").map(|()| None),
            b'f' => self.word(b"false").map(|()| None),
            b'n' => self.word(b"null").map(|()| None),
            open @ (b'{' | b'[') => {
                self.pos += 1;
                Ok(Some(open))
            }
            _ => Err(Syntax),
        }
    }

    /// Skips one value of any shape and depth, validating it.
    pub fn skip(&mut self) -> Result<()> {
        let mut nesting = Nesting::default();
        loop {
            // A value is expected here.
            match self.scalar_or_open()? {
                Some(b'{') => {
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        nesting.push(true);
                        self.string()?;
                        self.expect(b':')?;
                        continue;
                    }
                }
                Some(_) => {
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        nesting.push(false);
                        continue;
                    }
                }
                None => {}
            }
            // A value just ended: close containers until one goes on.
            loop {
                let Some(in_object) = nesting.top() else {
                    return Ok(());
                };
                match self.peek().ok_or(Syntax)? {
                    b',' => {
                        self.pos += 1;
                        if in_object {
                            self.string()?;
                            self.expect(b':')?;
                        }
                        break;
                    }
                    b'}' if in_object => {
                        self.pos += 1;
                        nesting.pop();
                    }
                    b']' if !in_object => {
                        self.pos += 1;
                        nesting.pop();
                    }
                    _ => return Err(Syntax),
                }
            }
        }
    }

    /// Skips one value and returns its text.
    pub fn raw(&mut self) -> Result<&'a str> {
        self.peek();
        let start = self.pos;
        self.skip()?;
        self.slice(start)
    }

    /// Reads an object whose `{` is next, calling `member` with each key (a literal, quotes
    /// included, and whether it has escapes); `member` must consume the value.
    pub fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, (&'a str, bool)) -> Result<()>,
    ) -> Result<()> {
        self.expect(b'{')?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            member(self, key)?;
            match self.peek().ok_or(Syntax)? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Syntax),
            }
        }
    }

    /// Reads an array whose `[` is next, calling `element` for each (it must consume it).
    pub fn array(&mut self, mut element: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.expect(b'[')?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            element(self)?;
            match self.peek().ok_or(Syntax)? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(Syntax),
            }
        }
    }
}

/// Which containers enclose the skipped value: one bit per level (object or array), the
/// first 64 in a word, deeper ones spilled to the heap.
#[derive(Default)]
struct Nesting {
    depth: usize,
    bits: u64,
    spilled: Vec<u64>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        if self.depth > 0 && self.depth % 64 == 0 {
            self.spilled.push(self.bits);
            self.bits = 0;
        }
        let bit = 1u64 << (self.depth % 64);
        self.bits = if object {
            self.bits | bit
        } else {
            self.bits & !bit
        };
        self.depth += 1;
    }

    fn top(&self) -> Option<bool> {
        let level = self.depth.checked_sub(1)?;
        Some(self.bits & (1u64 << (level % 64)) != 0)
    }

    fn pop(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        if self.depth > 0 && self.depth % 64 == 0 {
            self.bits = self.spilled.pop().unwrap_or(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bytes::{is_ascii, utf8};

    fn valid(json: &str) -> bool {
        valid_bytes(json.as_bytes())
    }

    fn valid_bytes(json: &[u8]) -> bool {
        let mut s = Scanner::new(json);
        s.skip().is_ok() && s.at_end()
    }

    #[test]
    fn agrees_with_serde_json_on_validity() {
        let cases = [
            "0",
            "-0",
            "1.5e+10",
            "-1E-2",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "true",
            "truth",
            "nul",
            "null",
            "\"\"",
            "\"a\\u00e9\\n\"",
            "\"\\ud800\"",
            "\"\\x\"",
            "\"\\u12G4\"",
            "\"raw\ttab\"",
            "[]",
            "[1,]",
            "[,1]",
            "{}",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "[{\"a\":[{},[[]]]}]",
            "[[[[[[1]]]]]",
            "{\"a\":{\"b\":{\"c\":[1,{\"d\":null}]}}}",
            " \r\n\t[ 1 , \"x\" ] ",
            "[1] x",
            "\"unterminated",
            "[1",
            "{\"a\":",
        ];
        for case in cases {
            let serde = serde_json::from_str::<serde::de::IgnoredAny>(case).is_ok();
            assert_eq!(valid(case), serde, "{case:?}");
        }
    }

    #[test]
    fn utf8_is_checked_inside_strings_and_refused_outside() {
        for case in [
            &b"\"\xc3\xa9\""[..],
            b"\"\xf0\x9d\x84\x9e\"",
            b"\"\xc3\"",
            b"\"\xe0\x80\x80\"",
            b"\"\xed\xa0\x80\"",
            b"\"\xff\"",
            b"[1,\xc3\xa9]",
            b"\"\xf4\x90\x80\x80\"",
        ] {
            // JSON text is UTF-8: serde_json checks it when given a `str`.
            let serde = std::str::from_utf8(case)
                .is_ok_and(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok());
            assert_eq!(valid_bytes(case), serde, "{case:?}");
        }
    }

    #[test]
    fn deep_nesting_is_iterative_and_checked() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(valid(&deep));
        let deep_obj = "{\"a\":".repeat(1000) + "1" + &"}".repeat(1000);
        assert!(valid(&deep_obj));
        let crossed = "[".repeat(200) + "{\"a\":1]" + &"]".repeat(199);
        assert!(!valid(&crossed));
        let mismatched = "[".repeat(70) + &"]".repeat(69) + "}";
        assert!(!valid(&mismatched));
    }

    #[test]
    fn strings_and_raw_values_are_slices_of_the_input() {
        let mut s = Scanner::new(br#"{"k" : "v\"1" , "n":[1, {"x":2}] }"#);
        let mut seen = Vec::new();
        s.object(|s, (key, _)| {
            let value = if key == "\"k\"" {
                s.string()?.0
            } else {
                s.raw()?
            };
            seen.push((key, value));
            Ok(())
        })
        .expect("valid");
        assert_eq!(seen, [("\"k\"", r#""v\"1""#), ("\"n\"", r#"[1, {"x":2}]"#)]);
    }

    #[test]
    fn ascii_fast_path() {
        assert!(is_ascii(b"0123456789abcdef0123"));
        assert!(!is_ascii("0123456789abcdé".as_bytes()));
        assert_eq!(utf8("é".as_bytes()), Some("é"));
        assert_eq!(utf8(b"\xff"), None);
    }
}
