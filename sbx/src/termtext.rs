//! Terminal text: the one escaping of untrusted strings (paths, host names,
//! argv, `comm`, error causes) before sbx prints them to a terminal.
//!
//! The sandboxed command chooses the names of the files it touches, the
//! hosts it asks for and its own argv; printed raw, `\e[2K\r` erases sbx's
//! line and writes a fake one, `\e[8m` hides what follows, a newline starts
//! a line that looks like sbx's. Every control character (C0, DEL, C1), and
//! the Unicode format characters that reorder or hide text (bidi overrides
//! and isolates, zero-width characters), are written as visible escapes:
//! `\n`, `\t`, `\r`, `\x1b`, `\x7f`, `\u{9b}`, `\u{202e}`; a backslash is
//! `\\` (so an escape cannot be faked by a name that contains one); bytes
//! that are not UTF-8 are `\xNN`. Nothing else changes, so a plain path
//! prints as itself. The dashboard draws through ratatui, which replaces
//! control characters itself; the JSON log escapes them by JSON's rules.

use std::{borrow::Cow, fmt::Write as _, os::unix::ffi::OsStrExt as _, path::Path};

/// Whether `c` must not reach the terminal as itself.
fn needs_escape(c: char) -> bool {
    c == '\\'
        || c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}' // zero-width, LRM, RLM
            | '\u{2028}' | '\u{2029}' // line and paragraph separators
            | '\u{202a}'..='\u{202e}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{feff}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if (c as u32) < 0x80 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// `s` with every control and format character escaped (see the module).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Bytes (an `OsStr`, argv) as escaped text: invalid UTF-8 as `\xNN`.
pub fn escape_bytes(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => escape(s),
        Err(_) => {
            let mut out = String::with_capacity(b.len() + 8);
            for chunk in b.utf8_chunks() {
                out.push_str(&escape(chunk.valid()));
                for byte in chunk.invalid() {
                    let _ = write!(out, "\\x{byte:02x}");
                }
            }
            Cow::Owned(out)
        }
    }
}

/// A path as escaped text.
pub fn path(p: &Path) -> Cow<'_, str> {
    escape_bytes(p.as_os_str().as_bytes())
}

/// Several lines of sbx's own making: each line escaped, the line breaks
/// kept (for output whose layout is sbx's, such as a diff, whose lines may
/// hold untrusted text).
pub fn escape_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&escape(line));
    }
    out
}

/// Whether `s` holds nothing a terminal would interpret: the property every
/// printer's output is tested for.
pub fn is_inert(s: &str) -> bool {
    !s.chars().any(|c| c != '\n' && needs_escape(c) && c != '\\')
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn escapes_are_visible_and_plain_text_is_unchanged() {
        assert!(matches!(escape("/etc/passwd é"), Cow::Borrowed(_)));
        assert_eq!(escape("x\x1b[2K\rsbx: no denials\n\x1b[8m"), "x\\x1b[2K\\rsbx: no denials\\n\\x1b[8m");
        assert_eq!(escape("a\\x1b"), "a\\\\x1b");
        assert_eq!(escape("\u{9b}31m \u{202e}gpj.exe \u{7f}\t"), "\\u{9b}31m \\u{202e}gpj.exe \\x7f\\t");
        assert_eq!(escape_bytes(b"a\xffb\x1b"), "a\\xffb\\x1b");
        assert_eq!(escape_lines("one\x1b\ntwo\r"), "one\\x1b\ntwo\\r");
    }

    proptest! {
        #[test]
        fn no_byte_string_escapes_to_a_control_byte(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let out = escape_bytes(&b);
            prop_assert!(out.bytes().all(|c| c >= 0x20 && c != 0x7f), "{out:?}");
            prop_assert!(!out.chars().any(char::is_control));
            prop_assert!(is_inert(&out));
        }

        #[test]
        fn no_string_escapes_to_a_control_character(s in any::<String>()) {
            let out = escape(&s);
            prop_assert!(!out.chars().any(needs_escape_but_backslash), "{out:?}");
            let lines = escape_lines(&s);
            prop_assert!(lines.chars().all(|c| c == '\n' || !needs_escape_but_backslash(c)));
        }
    }

    fn needs_escape_but_backslash(c: char) -> bool {
        c != '\\' && needs_escape(c)
    }
}
