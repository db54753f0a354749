//! Edits a policy file in place, keeping everything the edit does not touch:
//! comments, blank lines, key order, indentation and trailing commas.
//!
//! The structure is read from [`jsonc::strip`]'s output, whose byte offsets
//! are those of the original text, and each edit splices new text into the
//! original at those offsets. Every change is applied to the result of the
//! previous one, and the caller re-parses the result with
//! [`super::parse_str`] before writing it anywhere.

use std::fmt::Write as _;

use thiserror::Error;

use super::jsonc::{self, Node};

/// One change to a policy file. `key` is a member path from the root, such as
/// `["filesystem", "allowWrite"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Appends strings to an array, creating the array (and its parent
    /// objects) when missing. Each string may carry a comment, written after
    /// it when the array is laid out one item per line.
    Append { key: Vec<String>, items: Vec<(String, Option<String>)> },
    /// Removes every item of an array equal to `item`.
    Remove { key: Vec<String>, item: String },
    /// Sets a boolean member, creating it (and its parents) when missing.
    SetBool { key: Vec<String>, value: bool },
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum EditError {
    #[error("the policy file is not valid JSONC at byte {0}")]
    Syntax(usize),
    #[error("\"{key}\" is not {expected} in the policy file, so sbx cannot edit it")]
    Shape { key: String, expected: &'static str },
    #[error("\"{key}\" has no entry {item:?} in this file (it may come from a file this one extends)")]
    Missing { key: String, item: String },
}

/// Applies `changes` in order to the JSONC `text`. An empty text (or only
/// comments) is treated as `{}`.
pub fn apply(text: &str, changes: &[Change]) -> Result<String, EditError> {
    let mut out = text.to_string();
    for change in changes {
        out = apply_one(&out, change)?;
    }
    Ok(out)
}

fn apply_one(text: &str, change: &Change) -> Result<String, EditError> {
    let stripped = jsonc::strip(text).map_err(|e| EditError::Syntax(e.offset))?;
    if stripped.trim().is_empty() {
        let mut base = text.to_string();
        if !base.is_empty() && !base.ends_with('\n') {
            base.push('\n');
        }
        base.push_str("{\n}\n");
        return apply_one(&base, change);
    }
    let root = Node::parse(stripped.as_bytes()).map_err(EditError::Syntax)?;
    let doc = Doc { text, stripped: stripped.as_bytes() };
    let key = match change {
        Change::Append { key, .. } | Change::Remove { key, .. } | Change::SetBool { key, .. } => key,
    };
    // Walk down as far as the members exist.
    let mut node = &root;
    let mut depth = 0;
    while depth < key.len() {
        let Node::Object { members, .. } = node else {
            return Err(EditError::Shape { key: key[..depth].join("."), expected: "an object" });
        };
        match members.iter().rev().find(|m| m.name == key[depth]) {
            Some(m) => {
                node = &m.value;
                depth += 1;
            }
            None => break,
        }
    }
    let dotted = key.join(".");
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    if depth < key.len() {
        // Create the missing members below `node`, which is an object.
        let value = match change {
            Change::Append { items, .. } => NewValue::Array(items.clone()),
            Change::SetBool { value, .. } => NewValue::Bool(*value),
            Change::Remove { item, .. } => return Err(EditError::Missing { key: dotted, item: item.clone() }),
        };
        let Node::Object { .. } = node else {
            return Err(EditError::Shape { key: key[..depth].join("."), expected: "an object" });
        };
        doc.insert_member(node, &key[depth..], value, &mut edits);
    } else {
        match (change, node) {
            (Change::Append { items, .. }, Node::Array { .. }) => doc.append_items(node, items, &mut edits),
            (Change::Remove { item, .. }, Node::Array { items, .. }) => {
                let found: Vec<usize> = items.iter().enumerate().filter(|(_, n)| n.string(doc.stripped).as_deref() == Some(item.as_str())).map(|(i, _)| i).collect();
                if found.is_empty() {
                    return Err(EditError::Missing { key: dotted, item: item.clone() });
                }
                for &i in found.iter().rev() {
                    edits.push(doc.removal(items, i));
                }
                // Adjacent equal items on one line give overlapping ranges:
                // remove one and go again.
                if found.len() > 1 {
                    let once = splice(text, &edits[..1]);
                    return apply_one(&once, change);
                }
            }
            (Change::SetBool { value, .. }, n @ Node::Scalar { .. }) => edits.push((n.start(), n.end(), value.to_string())),
            (Change::Append { .. } | Change::Remove { .. }, _) => return Err(EditError::Shape { key: dotted, expected: "an array" }),
            (Change::SetBool { .. }, _) => return Err(EditError::Shape { key: dotted, expected: "a boolean" }),
        }
    }
    Ok(splice(text, &edits))
}

/// Applies non-overlapping `(start, end, replacement)` edits.
fn splice(text: &str, edits: &[(usize, usize, String)]) -> String {
    let mut edits: Vec<&(usize, usize, String)> = edits.iter().collect();
    edits.sort_by_key(|e| (e.0, e.1));
    let mut out = String::with_capacity(text.len() + 64);
    let mut at = 0;
    for (start, end, new) in edits {
        out.push_str(&text[at..*start]);
        out.push_str(new);
        at = *end;
    }
    out.push_str(&text[at..]);
    out
}

enum NewValue {
    Array(Vec<(String, Option<String>)>),
    Bool(bool),
}

struct Doc<'a> {
    text: &'a str,
    stripped: &'a [u8],
}

impl Doc<'_> {
    /// Indentation (spaces and tabs) of the line holding `offset`.
    fn indent_of(&self, offset: usize) -> String {
        let line_start = self.text[..offset].rfind('\n').map_or(0, |i| i + 1);
        self.text[line_start..].chars().take_while(|c| *c == ' ' || *c == '\t').collect()
    }

    fn same_line(&self, a: usize, b: usize) -> bool {
        !self.text[a.min(b)..a.max(b)].contains('\n')
    }

    /// Where to insert text after the element that ends at `end`: returns
    /// the edits that put a comma after it (unless one is there) and the
    /// offset at the end of its line (past any comment on that line), or
    /// right after the comma when something else follows on the same line.
    fn after(&self, end: usize, edits: &mut Vec<(usize, usize, String)>) -> (usize, bool) {
        let s = self.stripped;
        let mut q = end;
        while matches!(s.get(q), Some(b' ' | b'\t')) {
            q += 1;
        }
        if s.get(q) == Some(&b',') {
            q += 1;
        } else {
            // The comma may be a trailing comma that strip blanked: look
            // in the original text.
            let mut r = end;
            while r < self.text.len() && matches!(self.text.as_bytes()[r], b' ' | b'\t') {
                r += 1;
            }
            if self.text.as_bytes().get(r) == Some(&b',') {
                q = r + 1;
            } else {
                edits.push((end, end, ",".into()));
            }
        }
        let mut r = q;
        while matches!(s.get(r), Some(b' ' | b'\t')) {
            r += 1;
        }
        match s.get(r) {
            None | Some(b'\n' | b'\r') => (r, true),
            _ => (q, false),
        }
    }

    /// The range to delete to remove `items[i]`: its whole line when it
    /// stands alone on it (a comma left before `]` is a trailing comma,
    /// which JSONC allows), else the item and one neighbouring comma.
    fn removal(&self, items: &[Node], i: usize) -> (usize, usize, String) {
        let (start, end) = (items[i].start(), items[i].end());
        let line_start = self.text[..start].rfind('\n').map_or(0, |p| p + 1);
        let line_end = self.text[end..].find('\n').map_or(self.text.len(), |p| end + p + 1);
        let alone = |range: &[u8]| range.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b','));
        if alone(&self.stripped[line_start..start]) && alone(&self.stripped[end..line_end]) && self.stripped[end..line_end].iter().filter(|b| **b == b',').count() <= 1 {
            return (line_start, line_end, String::new());
        }
        if i + 1 < items.len() {
            (start, items[i + 1].start(), String::new())
        } else if i > 0 {
            (items[i - 1].end(), end, String::new())
        } else {
            (start, end, String::new())
        }
    }

    fn append_items(&self, array: &Node, items: &[(String, Option<String>)], edits: &mut Vec<(usize, usize, String)>) {
        let Node::Array { open, close, items: existing } = array else { return };
        let Some(last) = existing.last() else {
            // `[]`: the items go inline.
            let list: Vec<String> = items.iter().map(|(v, _)| quote(v)).collect();
            edits.push((open + 1, *close, list.join(", ")));
            return;
        };
        let multi_line = !self.same_line(*open, existing[0].start());
        if multi_line {
            let indent = self.indent_of(existing[0].start());
            let (at, _) = self.after(last.end(), edits);
            let mut new = String::new();
            for (i, (v, comment)) in items.iter().enumerate() {
                let comma = if i + 1 < items.len() { "," } else { "" };
                let _ = write!(new, "\n{indent}{}{comma}", quote(v));
                if let Some(c) = comment {
                    // A comment names processes and hosts the command chose:
                    // a raw newline in one would end the comment and put the
                    // rest into the policy.
                    let _ = write!(new, " // {}", crate::termtext::escape(c));
                }
            }
            edits.push((at, at, new));
        } else {
            let (at, _) = self.after(last.end(), edits);
            let list: Vec<String> = items.iter().map(|(v, _)| quote(v)).collect();
            edits.push((at, at, format!(" {}", list.join(", "))));
        }
    }

    /// Inserts `"path[0]": { "path[1]": ... value }` as the last member of `object`.
    fn insert_member(&self, object: &Node, path: &[String], value: NewValue, edits: &mut Vec<(usize, usize, String)>) {
        let Node::Object { open, close, members } = object else { return };
        let parent_indent = self.indent_of(*open);
        let (multi_line, indent) = match members.first() {
            Some(m) => (!self.same_line(*open, m.key), self.indent_of(m.key)),
            None => (true, format!("{parent_indent}  ")),
        };
        let unit = indent.strip_prefix(parent_indent.as_str()).filter(|u| !u.is_empty()).unwrap_or("  ").to_string();
        let rendered = render_member(path, &value, &indent, &unit, multi_line);
        match members.last() {
            None => edits.push((open + 1, *close, format!("\n{indent}{rendered}\n{parent_indent}"))),
            Some(last) => {
                let (at, eol) = self.after(last.value.end(), edits);
                if multi_line || eol {
                    edits.push((at, at, format!("\n{indent}{rendered}")));
                } else {
                    edits.push((at, at, format!(" {rendered}")));
                }
            }
        }
    }
}

fn render_member(path: &[String], value: &NewValue, indent: &str, unit: &str, multi_line: bool) -> String {
    let key = quote(&path[0]);
    if path.len() > 1 {
        let inner_indent = format!("{indent}{unit}");
        let inner = render_member(&path[1..], value, &inner_indent, unit, multi_line);
        return if multi_line { format!("{key}: {{\n{inner_indent}{inner}\n{indent}}}") } else { format!("{key}: {{ {inner} }}") };
    }
    match value {
        NewValue::Bool(b) => format!("{key}: {b}"),
        NewValue::Array(items) if multi_line => {
            let mut out = format!("{key}: [");
            for (i, (v, comment)) in items.iter().enumerate() {
                let comma = if i + 1 < items.len() { "," } else { "" };
                let _ = write!(out, "\n{indent}{unit}{}{comma}", quote(v));
                if let Some(c) = comment {
                    let _ = write!(out, " // {}", crate::termtext::escape(c));
                }
            }
            let _ = write!(out, "\n{indent}]");
            out
        }
        NewValue::Array(items) => {
            let list: Vec<String> = items.iter().map(|(v, _)| quote(v)).collect();
            format!("{key}: [{}]", list.join(", "))
        }
    }
}

fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Vec<String> {
        k.split('.').map(String::from).collect()
    }

    fn append(k: &str, items: &[(&str, Option<&str>)]) -> Change {
        Change::Append { key: key(k), items: items.iter().map(|(v, c)| (v.to_string(), c.map(String::from))).collect() }
    }

    fn check(text: &str, changes: &[Change], want: &str) {
        let got = apply(text, changes).unwrap();
        assert_eq!(got, want, "\n--- got ---\n{got}\n--- want ---\n{want}");
        super::super::parse_str(&got, std::path::Path::new("t.jsonc")).unwrap();
    }

    #[test]
    fn a_comment_cannot_end_itself_and_add_policy() {
        let text = "{\n  \"network\": {\n    \"allowedDomains\": [\n      \"a.com\"\n    ]\n  }\n}\n";
        let got = apply(text, &[append("network.allowedDomains", &[("b.com", Some("by x\n\"*\",\x1b[8m"))])]).unwrap();
        assert_eq!(got, "{\n  \"network\": {\n    \"allowedDomains\": [\n      \"a.com\",\n      \"b.com\" // by x\\n\"*\",\\x1b[8m\n    ]\n  }\n}\n");
        let parsed = super::super::parse_str(&got, std::path::Path::new("t.jsonc")).unwrap();
        assert_eq!(parsed.config.network.allowed_domains, ["a.com", "b.com"]);
    }

    #[test]
    fn appends_to_a_multi_line_array_keeping_comments_and_trailing_commas() {
        let text = "{\n  // mine\n  \"filesystem\": {\n    \"allowWrite\": [\n      \"~/a\", // why a\n      \"~/b\", // why b\n    ],\n  },\n}\n";
        check(
            text,
            &[append("filesystem.allowWrite", &[("~/.npm", Some("12 denials")), ("~/.cache/pip", None)])],
            "{\n  // mine\n  \"filesystem\": {\n    \"allowWrite\": [\n      \"~/a\", // why a\n      \"~/b\", // why b\n      \"~/.npm\", // 12 denials\n      \"~/.cache/pip\"\n    ],\n  },\n}\n",
        );
        let text = "{\n  \"filesystem\": {\n    \"allowWrite\": [\n      \"~/a\" /* why */\n    ]\n  }\n}\n";
        check(
            text,
            &[append("filesystem.allowWrite", &[("~/c", None)])],
            "{\n  \"filesystem\": {\n    \"allowWrite\": [\n      \"~/a\", /* why */\n      \"~/c\"\n    ]\n  }\n}\n",
        );
    }

    #[test]
    fn appends_inline_and_to_empty_arrays() {
        check(r#"{"network": {"allowedDomains": ["a.com"]}}"#, &[append("network.allowedDomains", &[("b.com", Some("x"))])], r#"{"network": {"allowedDomains": ["a.com", "b.com"]}}"#);
        check(r#"{"network": {"allowedDomains": ["a.com",]}}"#, &[append("network.allowedDomains", &[("b.com", None)])], r#"{"network": {"allowedDomains": ["a.com", "b.com"]}}"#);
        check(r#"{"network": {"allowedDomains": [ ]}}"#, &[append("network.allowedDomains", &[("b.com", None), ("c.com", None)])], r#"{"network": {"allowedDomains": ["b.com", "c.com"]}}"#);
    }

    #[test]
    fn creates_missing_keys_and_objects_in_the_files_style() {
        let text = "{\n    // network first\n    \"network\": {\n        \"allowedDomains\": [\"a.com\"] // keep\n    }\n}\n";
        check(
            text,
            &[append("filesystem.allowWrite", &[("~/.npm", Some("why"))])],
            "{\n    // network first\n    \"network\": {\n        \"allowedDomains\": [\"a.com\"] // keep\n    },\n    \"filesystem\": {\n        \"allowWrite\": [\n            \"~/.npm\" // why\n        ]\n    }\n}\n",
        );
        check(
            text,
            &[append("network.deniedDomains", &[("x.com", None)])],
            "{\n    // network first\n    \"network\": {\n        \"allowedDomains\": [\"a.com\"], // keep\n        \"deniedDomains\": [\n            \"x.com\"\n        ]\n    }\n}\n",
        );
        check("{}", &[Change::SetBool { key: key("filesystem.allowGitConfig"), value: true }], "{\n  \"filesystem\": {\n    \"allowGitConfig\": true\n  }\n}");
        check(r#"{"a": 1}"#.replace("\"a\": 1", "\"extends\": \"code\"").as_str(), &[append("network.allowedDomains", &[("b.com", None)])], r#"{"extends": "code", "network": { "allowedDomains": ["b.com"] }}"#);
        check("// only a comment\n", &[append("network.allowedDomains", &[("b.com", None)])], "// only a comment\n{\n  \"network\": {\n    \"allowedDomains\": [\n      \"b.com\"\n    ]\n  }\n}\n");
        check("", &[append("network.allowedDomains", &[("b.com", None)])], "{\n  \"network\": {\n    \"allowedDomains\": [\n      \"b.com\"\n    ]\n  }\n}\n");
    }

    #[test]
    fn sets_existing_booleans_and_removes_items() {
        check(r#"{"filesystem": {"allowGitConfig": false /* no */}}"#, &[Change::SetBool { key: key("filesystem.allowGitConfig"), value: true }], r#"{"filesystem": {"allowGitConfig": true /* no */}}"#);
        let rm = |item: &str| Change::Remove { key: key("network.deniedDomains"), item: item.into() };
        let text = "{\"network\": {\"deniedDomains\": [\n  \"a.io\", // A\n  \"b.io\", // B\n  \"c.io\" // C\n]}}";
        check(text, &[rm("a.io")], "{\"network\": {\"deniedDomains\": [\n  \"b.io\", // B\n  \"c.io\" // C\n]}}");
        check(text, &[rm("b.io")], "{\"network\": {\"deniedDomains\": [\n  \"a.io\", // A\n  \"c.io\" // C\n]}}");
        check(text, &[rm("c.io")], "{\"network\": {\"deniedDomains\": [\n  \"a.io\", // A\n  \"b.io\", // B\n]}}");
        check(r#"{"network": {"deniedDomains": ["a.io", "a.io"]}}"#, &[rm("a.io")], r#"{"network": {"deniedDomains": []}}"#);
        assert_eq!(apply(r#"{"network": {"deniedDomains": ["a"]}}"#, &[rm("z")]), Err(EditError::Missing { key: "network.deniedDomains".into(), item: "z".into() }));
        assert_eq!(
            apply(r#"{"network": {"deniedDomains": "a"}}"#, &[append("network.deniedDomains", &[("b", None)])]),
            Err(EditError::Shape { key: "network.deniedDomains".into(), expected: "an array" })
        );
    }
}
