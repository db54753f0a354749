//! Keys forwarded to the command: a crossterm key event as the bytes a
//! terminal (xterm) would send for it.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What the arrow keys, Home and End send: the command chooses
/// (`CSI ? 1 h`, DECCKM; vim and less ask for application mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CursorKeys {
    /// `ESC [ A`.
    Normal,
    /// `ESC O A`.
    Application,
}

/// The bytes for `key`, or `None` for keys a terminal sends nothing for.
pub fn bytes(key: &KeyEvent, cursor: CursorKeys) -> Option<Vec<u8>> {
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let mut out = Vec::new();
    if alt {
        out.push(0x1b);
    }
    let seq: &[u8] = match key.code {
        KeyCode::Char(c) if ctrl => {
            let b = match c {
                'a'..='z' => c as u8 - b'a' + 1,
                'A'..='Z' => c as u8 - b'A' + 1,
                '@' | ' ' | '2' => 0,
                '[' | '3' => 0x1b,
                '\\' | '4' => 0x1c,
                ']' | '5' => 0x1d,
                '^' | '6' => 0x1e,
                '_' | '7' | '/' => 0x1f,
                '?' | '8' => 0x7f,
                _ => return None,
            };
            out.push(b);
            return Some(out);
        }
        KeyCode::Char(c) => {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            return Some(out);
        }
        KeyCode::Enter => b"\r",
        KeyCode::Backspace => b"\x7f",
        KeyCode::Esc => b"\x1b",
        KeyCode::Tab => b"\t",
        KeyCode::BackTab => b"\x1b[Z",
        KeyCode::Up | KeyCode::Down | KeyCode::Right | KeyCode::Left | KeyCode::Home | KeyCode::End => {
            out.extend_from_slice(if cursor == CursorKeys::Application { b"\x1bO" } else { b"\x1b[" });
            out.push(match key.code {
                KeyCode::Up => b'A',
                KeyCode::Down => b'B',
                KeyCode::Right => b'C',
                KeyCode::Left => b'D',
                KeyCode::Home => b'H',
                _ => b'F',
            });
            return Some(out);
        }
        KeyCode::PageUp => b"\x1b[5~",
        KeyCode::PageDown => b"\x1b[6~",
        KeyCode::Insert => b"\x1b[2~",
        KeyCode::Delete => b"\x1b[3~",
        KeyCode::F(n) => match n {
            1 => b"\x1bOP",
            2 => b"\x1bOQ",
            3 => b"\x1bOR",
            4 => b"\x1bOS",
            5 => b"\x1b[15~",
            6 => b"\x1b[17~",
            7 => b"\x1b[18~",
            8 => b"\x1b[19~",
            9 => b"\x1b[20~",
            10 => b"\x1b[21~",
            11 => b"\x1b[23~",
            12 => b"\x1b[24~",
            _ => return None,
        },
        _ => return None,
    };
    out.extend_from_slice(seq);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> Option<Vec<u8>> {
        bytes(&KeyEvent::new(code, modifiers), CursorKeys::Normal)
    }

    #[test]
    fn keys_become_terminal_bytes() {
        assert_eq!(key(KeyCode::Char('a'), KeyModifiers::NONE), Some(b"a".to_vec()));
        assert_eq!(key(KeyCode::Char('A'), KeyModifiers::SHIFT), Some(b"A".to_vec()));
        assert_eq!(key(KeyCode::Char('é'), KeyModifiers::NONE), Some("é".as_bytes().to_vec()));
        assert_eq!(key(KeyCode::Char('c'), KeyModifiers::CONTROL), Some(vec![3]));
        assert_eq!(key(KeyCode::Char('d'), KeyModifiers::CONTROL), Some(vec![4]));
        assert_eq!(key(KeyCode::Char('x'), KeyModifiers::ALT), Some(b"\x1bx".to_vec()));
        assert_eq!(key(KeyCode::Enter, KeyModifiers::NONE), Some(b"\r".to_vec()));
        assert_eq!(key(KeyCode::Backspace, KeyModifiers::NONE), Some(vec![0x7f]));
        assert_eq!(key(KeyCode::Up, KeyModifiers::NONE), Some(b"\x1b[A".to_vec()));
        assert_eq!(key(KeyCode::Left, KeyModifiers::NONE), Some(b"\x1b[D".to_vec()));
        assert_eq!(key(KeyCode::F(5), KeyModifiers::NONE), Some(b"\x1b[15~".to_vec()));
        assert_eq!(key(KeyCode::CapsLock, KeyModifiers::NONE), None);
        let app = |code| bytes(&KeyEvent::new(code, KeyModifiers::NONE), CursorKeys::Application);
        assert_eq!(app(KeyCode::Up), Some(b"\x1bOA".to_vec()));
        assert_eq!(app(KeyCode::End), Some(b"\x1bOF".to_vec()));
        assert_eq!(app(KeyCode::PageUp), Some(b"\x1b[5~".to_vec()));
    }
}
