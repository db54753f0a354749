//! JSONC support for the policy file: turns JSONC into plain JSON without
//! moving any byte, finds where each key and value sits, and converts byte
//! offsets into line and column numbers of the original text.
//!
//! [`strip`] replaces `//` and `/* */` comments, trailing commas before `]`
//! or `}`, and a leading byte-order mark with spaces (newlines inside block
//! comments are kept), so every byte offset and line number in the stripped
//! text is also valid in the original text.

use std::collections::HashMap;

/// A JSONC text that cannot be turned into JSON (only an unterminated block
/// comment; everything else is left for the JSON parser to report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripError {
    /// Byte offset in the original text.
    pub offset: usize,
    pub message: &'static str,
}

/// Returns `text` with comments, trailing commas and a leading BOM replaced
/// by spaces. The result has exactly the same length and line structure.
pub fn strip(text: &str) -> Result<String, StripError> {
    let src = text.as_bytes();
    let mut out = src.to_vec();
    let mut i = 0;
    if src.starts_with(&[0xEF, 0xBB, 0xBF]) {
        out[..3].fill(b' ');
        i = 3;
    }

    // Pass 1: comments.
    let mut in_string = false;
    while i < src.len() {
        let b = src[i];
        if in_string {
            match b {
                b'\\' => i += 2,
                b'"' => {
                    in_string = false;
                    i += 1;
                }
                _ => i += 1,
            }
            continue;
        }
        match (b, src.get(i + 1)) {
            (b'"', _) => {
                in_string = true;
                i += 1;
            }
            (b'/', Some(b'/')) => {
                while i < src.len() && src[i] != b'\n' {
                    out[i] = b' ';
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                let start = i;
                let end = find(src, i + 2, b"*/").ok_or(StripError {
                    offset: start,
                    message: "unterminated /* comment",
                })? + 2;
                for (o, s) in out[start..end].iter_mut().zip(&src[start..end]) {
                    if *s != b'\n' && *s != b'\r' {
                        *o = b' ';
                    }
                }
                i = end;
            }
            _ => i += 1,
        }
    }

    // Pass 2: trailing commas (comments are gone, so only whitespace can sit
    // between the comma and the closing bracket).
    let mut in_string = false;
    let mut i = 0;
    while i < out.len() {
        let b = out[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b',' {
            let mut j = i + 1;
            while j < out.len() && matches!(out[j], b' ' | b'\t' | b'\n' | b'\r') {
                j += 1;
            }
            if matches!(out.get(j), Some(b']' | b'}')) {
                out[i] = b' ';
            }
        }
        i += 1;
    }

    // Only whole ASCII-delimited ranges were blanked, so this cannot fail;
    // map the error anyway rather than panic.
    String::from_utf8(out).map_err(|e| StripError {
        offset: e.utf8_error().valid_up_to(),
        message: "invalid UTF-8",
    })
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// 1-based line and column (in characters) of a byte offset in `text`.
/// Offsets past the end or inside a character are clamped.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Byte offset of a 1-based line and 1-based *byte* column (as reported by
/// `serde_json`), clamped to the text.
pub fn offset_of(text: &str, line: usize, byte_column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line {
        match text[start..].find('\n') {
            Some(p) => start += p + 1,
            None => return text.len(),
        }
    }
    (start + byte_column.saturating_sub(1)).min(text.len())
}

/// Where a key and its value start (byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Offset of the key's opening quote; `None` for the root and array items.
    pub key: Option<usize>,
    /// Offset of the value's first byte.
    pub value: usize,
}

impl Span {
    /// The key's offset if there is one, else the value's.
    pub fn start(&self) -> usize {
        self.key.unwrap_or(self.value)
    }
}

/// Maps every value of a (stripped, valid) JSON text to its [`Span`], keyed
/// by a dotted path: `""` for the root, `network.allowedDomains` for a
/// member, `network.allowedDomains[2]` for an array item. When a key occurs
/// twice in one object the last one wins, as in `serde_json`.
pub fn positions(json: &str) -> HashMap<String, Span> {
    let mut map = HashMap::new();
    // A text that does not parse gives no positions (errors then point at
    // the start); callers pass text serde_json has accepted.
    if let Ok(root) = Node::parse(json.as_bytes()) {
        spans(&root, String::new(), None, &mut map);
    }
    map
}

fn spans(node: &Node, path: String, key: Option<usize>, map: &mut HashMap<String, Span>) {
    match node {
        Node::Object { members, .. } => {
            for m in members {
                spans(&m.value, join_key(&path, &m.name), Some(m.key), map);
            }
        }
        Node::Array { items, .. } => {
            for (i, item) in items.iter().enumerate() {
                spans(item, join_index(&path, i), None, map);
            }
        }
        Node::Scalar { .. } => {}
    }
    map.insert(path, Span { key, value: node.start() });
}

/// Joins a member key onto a dotted path.
pub fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// Joins an array index onto a dotted path.
pub fn join_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// A JSON value with the byte offsets of its parts.
#[derive(Debug)]
pub(crate) enum Node {
    Object { open: usize, close: usize, members: Vec<Member> },
    Array { open: usize, close: usize, items: Vec<Node> },
    Scalar { start: usize, end: usize },
}

#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) name: String,
    /// Offset of the key's opening quote.
    pub(crate) key: usize,
    pub(crate) value: Node,
}

impl Node {
    pub(crate) fn start(&self) -> usize {
        match self {
            Node::Object { open, .. } | Node::Array { open, .. } => *open,
            Node::Scalar { start, .. } => *start,
        }
    }

    /// One past the last byte.
    pub(crate) fn end(&self) -> usize {
        match self {
            Node::Object { close, .. } | Node::Array { close, .. } => close + 1,
            Node::Scalar { end, .. } => *end,
        }
    }

    pub(crate) fn string(&self, s: &[u8]) -> Option<String> {
        match self {
            Node::Scalar { start, end } if s[*start] == b'"' => serde_json::from_slice(&s[*start..*end]).ok(),
            _ => None,
        }
    }

    /// Parses a stripped, valid JSON text; `Err` holds the offset where
    /// it stopped making sense.
    pub(crate) fn parse(s: &[u8]) -> Result<Node, usize> {
        let mut p = NodeParser { s, i: 0 };
        let node = p.value()?;
        Ok(node)
    }
}

struct NodeParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl NodeParser<'_> {
    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), usize> {
        self.ws();
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.i)
        }
    }

    fn value(&mut self) -> Result<Node, usize> {
        self.ws();
        let start = self.i;
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                self.ws();
                if self.s.get(self.i) != Some(&b'}') {
                    loop {
                        self.ws();
                        let key = self.i;
                        let Node::Scalar { end, .. } = self.string()? else { unreachable!() };
                        let name = serde_json::from_slice(&self.s[key..end]).map_err(|_| key)?;
                        self.expect(b':')?;
                        let value = self.value()?;
                        members.push(Member { name, key, value });
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b'}') => break,
                            _ => return Err(self.i),
                        }
                    }
                }
                let close = self.i;
                self.i += 1;
                Ok(Node::Object { open: start, close, members })
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) != Some(&b']') {
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b']') => break,
                            _ => return Err(self.i),
                        }
                    }
                }
                let close = self.i;
                self.i += 1;
                Ok(Node::Array { open: start, close, items })
            }
            Some(b'"') => self.string(),
            Some(_) => {
                while matches!(self.s.get(self.i), Some(b) if !matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')) {
                    self.i += 1;
                }
                if self.i == start {
                    return Err(start);
                }
                Ok(Node::Scalar { start, end: self.i })
            }
            None => Err(start),
        }
    }

    fn string(&mut self) -> Result<Node, usize> {
        let start = self.i;
        if self.s.get(self.i) != Some(&b'"') {
            return Err(start);
        }
        self.i += 1;
        loop {
            match self.s.get(self.i) {
                Some(b'\\') => self.i += 2,
                Some(b'"') => {
                    self.i += 1;
                    return Ok(Node::Scalar { start, end: self.i });
                }
                Some(_) => self.i += 1,
                None => return Err(start),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_comments_and_trailing_commas_keeping_layout() {
        let text = "{\n  // line comment\n  \"a\": [1, 2,], /* block\n  comment */ \"b\": \"//not a comment\",\n}\n";
        let out = strip(text).unwrap();
        assert_eq!(out.len(), text.len());
        assert_eq!(
            out,
            "{\n                 \n  \"a\": [1, 2 ],         \n             \"b\": \"//not a comment\" \n}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["b"], "//not a comment");
    }

    #[test]
    fn escaped_quotes_do_not_end_strings() {
        let text = r#"{"a": "x\" // y", "b": "\\", /* c */ }"#;
        let out = strip(text).unwrap();
        assert_eq!(out, r#"{"a": "x\" // y", "b": "\\"          }"#);
    }

    #[test]
    fn unterminated_block_comment() {
        assert_eq!(
            strip("{ /* oops }"),
            Err(StripError {
                offset: 2,
                message: "unterminated /* comment"
            })
        );
    }

    #[test]
    fn bom_is_blanked() {
        assert_eq!(strip("\u{feff}{}").unwrap(), "   {}");
    }

    #[test]
    fn line_col_counts_characters() {
        let text = "ab\n\u{e9}\u{e9}x";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 3), (2, 1));
        assert_eq!(line_col(text, 7), (2, 3)); // 'x' after two 2-byte chars
        assert_eq!(line_col(text, 4), (2, 1)); // inside a char: clamped
        assert_eq!(offset_of(text, 2, 5), 7);
    }

    #[test]
    fn positions_of_keys_and_items() {
        let json = "{\n \"n\": {\"a\": [10, \"x\"]},\n \"k\\u0041\": true }";
        let p = positions(json);
        assert_eq!(
            p[""],
            Span {
                key: None,
                value: 0
            }
        );
        assert_eq!(
            p["n"],
            Span {
                key: Some(3),
                value: 8
            }
        );
        assert_eq!(
            p["n.a"],
            Span {
                key: Some(9),
                value: 14
            }
        );
        assert_eq!(
            p["n.a[0]"],
            Span {
                key: None,
                value: 15
            }
        );
        assert_eq!(
            p["n.a[1]"],
            Span {
                key: None,
                value: 19
            }
        );
        assert_eq!(p["kA"].key, Some(27));
    }
}
