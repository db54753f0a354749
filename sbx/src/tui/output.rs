//! The command's own screen: the bytes it writes to its pty go through a
//! terminal emulator (the `vt100` crate), so that full-screen programs
//! (editors, pagers, agents built on ink or curses) appear as they would in
//! a terminal: cursor addressing, scroll regions, the alternate screen,
//! colours and attributes, wide characters.
//!
//! The emulated screen has the size of the place it is drawn in (the
//! output pane, or the whole terminal less a status line when zoomed):
//! `App` resizes it and the pty together, and the kernel sends the
//! command SIGWINCH. The main screen keeps `MAX_SCROLLBACK` rows of
//! scroll-back (the alternate screen has none, as in xterm); a row pushed
//! into it keeps only its cells up to the last one written, so memory is
//! about 32 bytes per character of kept text, and never more than
//! `MAX_SCROLLBACK` times the widest row.
//!
//! The emulator has no DEC special graphics character set, with which
//! curses draws lines outside UTF-8 locales (`ESC ( 0`, then `lqqk` for
//! `┌──┐`): `Charsets` translates those characters to Unicode on the way in.
//!
//! The command may ask its terminal questions. Only those whose answer
//! does not depend on anything the command wrote are answered: the status
//! report (`CSI 5 n`), the cursor position (`CSI 6 n`, which programs such
//! as crossterm's wait for) and the primary device attributes (`CSI c`).
//! Nothing is ever echoed back (no title report), so the command cannot
//! type into itself.

use std::{fmt::Write as _, num::NonZeroU16};

/// Rows of scroll-back kept on the main screen; older ones are dropped.
pub const MAX_SCROLLBACK: usize = 10_000;
/// Bytes of answers kept until `Output::push` returns them (a command
/// that floods questions gets the first answers only).
const MAX_REPLY_BYTES: usize = 4096;

/// The terminal's answers to the command's questions.
#[derive(Debug, Default)]
struct Replies {
    out: String,
}

impl vt100::Callbacks for Replies {
    fn unhandled_csi(&mut self, screen: &mut vt100::Screen, i1: Option<u8>, i2: Option<u8>, params: &[&[u16]], c: char) {
        if self.out.len() >= MAX_REPLY_BYTES || i2.is_some() {
            return;
        }
        let first = params.first().and_then(|p| p.first()).copied().unwrap_or(0);
        match (i1, c, first) {
            // Device status: "OK".
            (None, 'n', 5) => self.out.push_str("\x1b[0n"),
            (None, 'n', 6) => {
                let (row, col) = screen.cursor_position();
                let _ = write!(self.out, "\x1b[{};{}R", u32::from(row) + 1, u32::from(col) + 1);
            }
            // Primary device attributes: a VT100 with advanced video, as
            // tmux and xterm answer.
            (None, 'c', 0) => self.out.push_str("\x1b[?1;2c"),
            _ => {}
        }
    }
}

/// Where a byte stands in the escape-sequence grammar: only printed
/// characters are translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Parse {
    #[default]
    Ground,
    /// After ESC.
    Escape,
    /// After `ESC (` (G0) or `ESC )` (G1): the set's name follows.
    Designate(usize),
    /// After `ESC` and another intermediate byte: one final byte follows.
    EscapeFinal,
    /// After `ESC [`: until a final byte in 0x40..=0x7e.
    Csi,
    /// After `ESC ]` (and DCS, APC, PM, SOS): until BEL or `ESC \`.
    String,
    /// ESC inside a string.
    StringEscape,
}

/// The G0 and G1 character sets and which is in use (SO/SI), for DEC
/// special graphics (line drawing).
#[derive(Debug, Default)]
struct Charsets {
    graphics: [bool; 2],
    shifted: bool,
    parse: Parse,
}

impl Charsets {
    /// `bytes` with the printed characters of the graphics set as UTF-8;
    /// borrowed unchanged when the set is not in use and not named.
    fn translate<'a>(&mut self, bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        if !self.graphics[usize::from(self.shifted)] && !bytes.contains(&0x1b) && !bytes.contains(&0x0e) && self.parse == Parse::Ground {
            return std::borrow::Cow::Borrowed(bytes);
        }
        let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 2);
        for &b in bytes {
            match self.parse {
                Parse::Ground => match b {
                    0x1b => self.parse = Parse::Escape,
                    0x0e => self.shifted = true,
                    0x0f => self.shifted = false,
                    0x5f..=0x7e if self.graphics[usize::from(self.shifted)] => {
                        let mut buf = [0; 4];
                        out.extend_from_slice(dec_graphic(b).encode_utf8(&mut buf).as_bytes());
                        continue;
                    }
                    _ => {}
                },
                Parse::Escape => {
                    self.parse = match b {
                        b'[' => Parse::Csi,
                        b']' | b'P' | b'_' | b'^' | b'X' => Parse::String,
                        b'(' => Parse::Designate(0),
                        b')' => Parse::Designate(1),
                        0x20..=0x2f => Parse::EscapeFinal,
                        b'c' => {
                            // A full reset: both sets back to ASCII.
                            *self = Self::default();
                            Parse::Ground
                        }
                        _ => Parse::Ground,
                    }
                }
                Parse::Designate(g) => {
                    self.graphics[g] = b == b'0';
                    self.parse = Parse::Ground;
                }
                Parse::EscapeFinal => self.parse = Parse::Ground,
                Parse::Csi => {
                    if (0x40..=0x7e).contains(&b) {
                        self.parse = Parse::Ground;
                    }
                }
                Parse::String => match b {
                    0x07 => self.parse = Parse::Ground,
                    0x1b => self.parse = Parse::StringEscape,
                    _ => {}
                },
                Parse::StringEscape => self.parse = if b == b'\\' { Parse::Ground } else { Parse::String },
            }
            // CAN and SUB cancel a sequence.
            if matches!(b, 0x18 | 0x1a) {
                self.parse = Parse::Ground;
            }
            out.push(b);
        }
        std::borrow::Cow::Owned(out)
    }
}

/// The DEC special graphics character for `b` (0x5f..=0x7e), as xterm
/// draws it.
fn dec_graphic(b: u8) -> char {
    const TABLE: [char; 32] = [
        ' ', '◆', '▒', '␉', '␌', '␍', '␊', '°', '±', '␤', '␋', '┘', '┐', '┌', '└', '┼', '⎺', '⎻', '─', '⎼', '⎽', '├', '┤', '┴', '┬', '│', '≤', '≥', 'π', '≠', '£', '·',
    ];
    TABLE[usize::from(b.saturating_sub(0x5f)).min(31)]
}

pub struct Output {
    parser: vt100::Parser<Replies>,
    charsets: Charsets,
    /// Bytes received, in total.
    pub bytes: u64,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (rows, cols) = self.parser.screen().size();
        f.debug_struct("Output").field("rows", &rows).field("cols", &cols).field("bytes", &self.bytes).finish_non_exhaustive()
    }
}

fn nonzero(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

impl Output {
    /// A blank screen of `cols` x `rows` (each at least 1).
    pub fn new(cols: u16, rows: u16) -> Self {
        Self {
            parser: vt100::Parser::new_with_callbacks(nonzero(rows), nonzero(cols), MAX_SCROLLBACK, Replies::default()),
            charsets: Charsets::default(),
            bytes: 0,
        }
    }

    /// Feeds the command's bytes; returns the answers to its questions, to
    /// be written to its pty.
    pub fn push(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.bytes += bytes.len() as u64;
        let bytes = self.charsets.translate(bytes);
        self.parser.process(&bytes);
        let out = &mut self.parser.callbacks_mut().out;
        (!out.is_empty()).then(|| std::mem::take(out).into_bytes())
    }

    /// (columns, rows).
    #[cfg(test)]
    pub fn size(&self) -> (u16, u16) {
        let (rows, cols) = self.parser.screen().size();
        (cols.get(), rows.get())
    }

    /// Resizes the screen (rows leave for the scroll-back when it shrinks,
    /// and come back when it grows, as in xterm). Returns to the live
    /// screen.
    pub fn set_size(&mut self, cols: u16, rows: u16) {
        self.parser.set_size(nonzero(rows), nonzero(cols));
    }

    pub fn screen(&self) -> &vt100::Screen {
        self.parser.screen()
    }

    /// Rows scrolled back from the live screen (0: the live screen).
    pub fn scrolled(&self) -> usize {
        self.parser.screen().scrollback()
    }

    /// Scrolls back by `delta` rows (forward when negative), within the
    /// scroll-back kept.
    pub fn scroll(&mut self, delta: isize) {
        let to = self.scrolled().saturating_add_signed(delta);
        self.parser.screen_mut().set_scrollback(to);
    }

    /// Whether the command has written anything.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// The visible rows as text (wide characters once, trailing blanks
    /// kept): what a test or a reviewer compares.
    #[cfg(test)]
    pub fn rows_text(&self) -> Vec<String> {
        let (cols, _) = self.size();
        self.parser.screen().rows(0, cols).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_screen_programs_are_emulated() {
        let mut o = Output::new(20, 4);
        // Text, a carriage return overwriting, erase to end of line,
        // colours, then the alternate screen with cursor addressing.
        o.push(b"hello\r\nDownloading 10%\rDownloading 100%\r\x1b[Kdone\r\n\x1b[1;31mred\x1b[0m text\x1b]0;title\x07!");
        assert_eq!(o.rows_text(), ["hello", "done", "red text!", ""]);
        let cell = o.screen().cell(2, 0).unwrap();
        assert_eq!((cell.contents(), cell.fgcolor(), cell.bold()), ("r", vt100::Color::Idx(1), true));
        o.push(b"\x1b[?1049h\x1b[2J\x1b[3;5Hvim\x1b[1;1H~");
        assert!(o.screen().alternate_screen());
        assert_eq!(o.rows_text(), ["~", "", "    vim", ""]);
        o.push(b"\x1b[?1049l");
        assert_eq!(o.rows_text(), ["hello", "done", "red text!", ""]);
        // A wide character takes two cells.
        o.push("\r\n漢字ok".as_bytes());
        assert_eq!(o.rows_text()[3], "漢字ok");
        assert!(o.screen().cell(3, 0).unwrap().is_wide());
        assert!(o.screen().cell(3, 1).unwrap().is_wide_continuation());
    }

    #[test]
    fn dec_line_drawing_becomes_unicode() {
        let mut o = Output::new(20, 4);
        // G0 named graphics, with an SGR in between whose final byte (`m`)
        // is in the graphics range; then back to ASCII.
        o.push(b"\x1b(0lq\x1b[1mqk\x1b[0m\x1b(B lqk\r\n");
        // G1 named graphics, shifted in and out, split across two writes.
        o.push(b"\x1b)0x\x0ex\x1b");
        o.push(b"]0;title q\x07mj\x0fx");
        assert_eq!(o.rows_text()[..2], ["┌──┐ lqk", "x│└┘x"]);
        o.push(b"\x1b(0\x1bc");
        o.push(b"q");
        assert_eq!(o.rows_text()[0], "q");
    }

    #[test]
    fn questions_with_fixed_answers_are_answered_and_nothing_is_echoed() {
        let mut o = Output::new(20, 4);
        assert_eq!(o.push(b"ab\x1b[6n"), Some(b"\x1b[1;3R".to_vec()));
        assert_eq!(o.push(b"\x1b[5n\x1b[c"), Some(b"\x1b[0n\x1b[?1;2c".to_vec()));
        // Title reports and the like get nothing.
        assert_eq!(o.push(b"\x1b]2;rm -rf ~\x07\x1b[21t\x1b[>c"), None);
        // A flood is cut.
        let flood = b"\x1b[6n".repeat(10_000);
        assert!(o.push(&flood).unwrap().len() <= MAX_REPLY_BYTES + 16);
    }

    #[test]
    fn scrollback_is_bounded_and_follows_new_output() {
        let mut o = Output::new(10, 3);
        for i in 0..(MAX_SCROLLBACK + 50) {
            o.push(format!("{i}\r\n").as_bytes());
        }
        assert_eq!(o.screen().scrollback_len(), MAX_SCROLLBACK);
        o.scroll(isize::MAX);
        assert_eq!(o.scrolled(), MAX_SCROLLBACK);
        assert_eq!(o.rows_text()[0], "48");
        o.scroll(-(MAX_SCROLLBACK as isize) + 2);
        assert_eq!(o.rows_text(), [(MAX_SCROLLBACK + 46).to_string(), (MAX_SCROLLBACK + 47).to_string(), (MAX_SCROLLBACK + 48).to_string()]);
        // New output keeps the rows being read in place.
        o.push(b"more\r\n");
        assert_eq!(o.scrolled(), 3);
        assert_eq!(o.rows_text()[0], (MAX_SCROLLBACK + 46).to_string());
        o.scroll(-100);
        assert_eq!(o.rows_text(), [(MAX_SCROLLBACK + 49).to_string(), "more".into(), String::new()]);
    }

    #[test]
    fn resizing_keeps_the_rows_above_the_cursor() {
        let mut o = Output::new(10, 4);
        o.push(b"1\r\n2\r\n3\r\n4");
        o.set_size(10, 2);
        assert_eq!(o.size(), (10, 2));
        assert_eq!(o.rows_text(), ["3", "4"]);
        o.set_size(12, 4);
        assert_eq!(o.rows_text(), ["1", "2", "3", "4"]);
        o.set_size(0, 0);
        assert_eq!(o.size(), (1, 1));
    }
}
