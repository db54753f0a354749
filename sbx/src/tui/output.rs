//! The command's own output: a bounded scrollback fed with the raw bytes the
//! command wrote to its pty. This is not a terminal emulator: it keeps
//! lines, honours `\n`, `\r` (the next characters overwrite the line),
//! backspace, tabs and the erase-line sequence (`ESC [ K`, used by progress
//! bars after `\r`), and drops every other escape sequence and control byte.

use std::collections::VecDeque;

/// Lines kept; older ones are dropped.
pub const MAX_LINES: usize = 5000;
/// Characters per line; a longer line continues on the next one.
pub const MAX_LINE_CHARS: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parse {
    Text,
    /// After ESC.
    Escape,
    /// After `ESC [`: parameters until a final byte in 0x40..=0x7e.
    Csi,
    /// After `ESC ]` (and DCS, APC, PM, SOS): until BEL or `ESC \`.
    String,
    /// ESC inside a string: `\` ends it.
    StringEscape,
    /// After `ESC (` and friends: one more byte.
    Charset,
}

#[derive(Debug)]
pub struct Output {
    lines: VecDeque<String>,
    /// The line being written, as characters so that `\r` can overwrite.
    current: Vec<char>,
    col: usize,
    parse: Parse,
    csi: Vec<u8>,
    /// Bytes of a UTF-8 character split across two writes.
    partial: Vec<u8>,
    /// Lines dropped from the front, in total.
    pub dropped: u64,
    /// Bytes received, in total.
    pub bytes: u64,
}

impl Default for Output {
    fn default() -> Self {
        Self {
            lines: VecDeque::new(),
            current: Vec::new(),
            col: 0,
            parse: Parse::Text,
            csi: Vec::new(),
            partial: Vec::new(),
            dropped: 0,
            bytes: 0,
        }
    }
}

impl Output {
    pub fn push(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        for &b in bytes {
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        match self.parse {
            Parse::Text => self.text(b),
            Parse::Escape => {
                self.parse = match b {
                    b'[' => {
                        self.csi.clear();
                        Parse::Csi
                    }
                    b']' | b'P' | b'_' | b'^' | b'X' => Parse::String,
                    b'(' | b')' | b'*' | b'+' | b'#' | b'%' => Parse::Charset,
                    _ => Parse::Text,
                }
            }
            Parse::Csi => {
                if (0x40..=0x7e).contains(&b) {
                    self.parse = Parse::Text;
                    self.csi_final(b);
                } else if self.csi.len() < 32 {
                    self.csi.push(b);
                }
            }
            Parse::String => match b {
                0x07 => self.parse = Parse::Text,
                0x1b => self.parse = Parse::StringEscape,
                _ => {}
            },
            Parse::StringEscape => self.parse = if b == b'\\' { Parse::Text } else { Parse::String },
            Parse::Charset => self.parse = Parse::Text,
        }
    }

    fn csi_final(&mut self, b: u8) {
        if b != b'K' {
            return;
        }
        match self.csi.as_slice() {
            // Erase from the cursor to the end of the line.
            b"" | b"0" => self.current.truncate(self.col),
            b"2" => {
                self.current.clear();
            }
            _ => {}
        }
    }

    fn text(&mut self, b: u8) {
        if !self.partial.is_empty() || b >= 0x80 {
            self.partial.push(b);
            match std::str::from_utf8(&self.partial) {
                Ok(s) => {
                    let c = s.chars().next().unwrap_or(char::REPLACEMENT_CHARACTER);
                    self.partial.clear();
                    self.put(c);
                }
                Err(e) if e.error_len().is_some() || self.partial.len() >= 4 => {
                    self.partial.clear();
                    self.put(char::REPLACEMENT_CHARACTER);
                }
                Err(_) => {}
            }
            return;
        }
        match b {
            b'\n' => self.newline(),
            b'\r' => self.col = 0,
            0x08 => self.col = self.col.saturating_sub(1),
            b'\t' => {
                let next = (self.col / 8 + 1) * 8;
                while self.col < next {
                    self.put(' ');
                }
            }
            0x1b => self.parse = Parse::Escape,
            0x20..=0x7e => self.put(b as char),
            _ => {}
        }
    }

    fn put(&mut self, c: char) {
        if self.col >= MAX_LINE_CHARS {
            self.newline();
        }
        if self.col < self.current.len() {
            self.current[self.col] = c;
        } else {
            while self.current.len() < self.col {
                self.current.push(' ');
            }
            self.current.push(c);
        }
        self.col += 1;
    }

    fn newline(&mut self) {
        let line: String = self.current.drain(..).collect();
        self.col = 0;
        self.lines.push_back(line);
        if self.lines.len() > MAX_LINES {
            self.lines.pop_front();
            self.dropped += 1;
        }
    }

    /// Lines, including the unfinished one when it has text.
    pub fn line_count(&self) -> usize {
        self.lines.len() + usize::from(!self.current.is_empty())
    }

    /// Line `i` (0: the oldest kept).
    pub fn line(&self, i: usize) -> Option<String> {
        if i < self.lines.len() {
            self.lines.get(i).cloned()
        } else if i == self.lines.len() && !self.current.is_empty() {
            Some(self.current.iter().collect())
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(o: &Output) -> Vec<String> {
        (0..o.line_count()).filter_map(|i| o.line(i)).collect()
    }

    #[test]
    fn newlines_carriage_returns_and_escapes() {
        let mut o = Output::default();
        o.push(b"hello\r\nDownloading 10%\rDownloading 100%\r\x1b[Kdone\n\x1b[1;31mred\x1b[0m text\x1b]0;title\x07!\n");
        o.push(b"tab\tx\x08y\nsplit \xc3");
        o.push(b"\xa9t\xff");
        assert_eq!(all(&o), ["hello", "done", "red text!", "tab     y", "split ét\u{fffd}"]);
    }

    #[test]
    fn scrollback_is_bounded() {
        let mut o = Output::default();
        for i in 0..(MAX_LINES + 10) {
            o.push(format!("{i}\n").as_bytes());
        }
        assert_eq!(o.line_count(), MAX_LINES);
        assert_eq!(o.dropped, 10);
        assert_eq!(o.line(0).as_deref(), Some("10"));
        o.push(&vec![b'a'; MAX_LINE_CHARS + 5]);
        assert_eq!(o.line(MAX_LINES - 1).map(|l| l.len()), Some(MAX_LINE_CHARS));
        assert_eq!(o.line(MAX_LINES).map(|l| l.len()), Some(5));
        assert_eq!(o.line_count(), MAX_LINES + 1);
    }
}
