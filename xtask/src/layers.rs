//! `cargo xtask layers` (also the first step of `cargo xtask test`): sbx's modules in layers,
//! and a check that no module imports from a layer above its own, nor sideways where its
//! layer forbids it, and that the top-level modules form no import circle.
//!
//! The check reads every `crate::NAME` path in sbx's sources (use lines, grouped imports
//! `crate::{a, b::c}` and inline paths), outside comments, strings and test-only code
//! (`#[cfg(test)] mod x { .. }` and `#[cfg(test)] mod x;` files): tests may reach anything.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result, bail};

/// sbx's layers, lowest first. A module may import from any layer below its own; from its
/// own layer only where `sideways` is true; never from a layer above. Every top-level module
/// of `sbx/src` must be listed. Keep this table and ARCHITECTURE.md's in step.
pub const LAYERS: &[Layer] = &[
    Layer { name: "leaf", sideways: false, modules: &["sandbox", "syscalls", "limits", "termtext", "sys", "state", "identity"] },
    Layer { name: "storage", sideways: true, modules: &["fsio", "seal"] },
    Layer { name: "proxy", sideways: false, modules: &["proxy"] },
    Layer { name: "policy", sideways: true, modules: &["command_rules", "config", "policy"] },
    Layer { name: "record", sideways: false, modules: &["report", "cgroup"] },
    Layer { name: "engines", sideways: false, modules: &["launch", "monitor"] },
    Layer { name: "tools", sideways: true, modules: &["snapshot", "suggest", "learn", "doctor", "missing", "agentconf", "import"] },
    Layer { name: "dashboard", sideways: false, modules: &["tui"] },
    Layer { name: "session", sideways: false, modules: &["session"] },
    Layer { name: "entry", sideways: true, modules: &["cli", "commands", "docs", "main"] },
];

/// One row of [`LAYERS`].
pub struct Layer {
    pub name: &'static str,
    /// Whether the modules of this layer may import each other.
    pub sideways: bool,
    pub modules: &'static [&'static str],
}

/// One import: `from` (a top-level module) names `to` at `file:line`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub from: String,
    pub to: String,
    pub file: PathBuf,
    pub line: usize,
}

/// Runs the check on `<root>/sbx/src`; an error lists every offending import.
pub fn check(root: &Path) -> Result<()> {
    let src = root.join("sbx/src");
    let imports = scan(&src)?;
    let problems = problems(&imports, &modules_of(&src)?);
    if !problems.is_empty() {
        bail!("{} import(s) against the layering (see xtask/src/layers.rs and ARCHITECTURE.md):\n  {}", problems.len(), problems.join("\n  "));
    }
    eprintln!("xtask: layers: {} imports between {} modules follow the layering", imports.len(), LAYERS.iter().map(|l| l.modules.len()).sum::<usize>());
    Ok(())
}

/// The top-level modules of `src`: its files and directories, `lib` aside.
fn modules_of(src: &Path) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for entry in fs::read_dir(src).with_context(|| format!("reading {}", src.display()))? {
        let path = entry?.path();
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
        if (path.is_dir() || path.extension().is_some_and(|e| e == "rs")) && name != "lib" {
            out.insert(name);
        }
    }
    Ok(out)
}

fn layer_of(module: &str) -> Option<(usize, &'static Layer)> {
    LAYERS.iter().enumerate().find(|(_, l)| l.modules.contains(&module))
}

/// Every violation, as a sentence.
fn problems(imports: &[Import], modules: &BTreeSet<String>) -> Vec<String> {
    let mut out = Vec::new();
    for m in modules {
        if layer_of(m).is_none() {
            out.push(format!("module `{m}` is in no layer: add it to LAYERS"));
        }
    }
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for i in imports {
        // Items of the crate root (the exit statuses) are for everyone.
        if !modules.contains(&i.to) || i.to == i.from {
            continue;
        }
        edges.entry(&i.from).or_default().insert(&i.to);
        let (Some((lf, from)), Some((lt, to))) = (layer_of(&i.from), layer_of(&i.to)) else { continue };
        let at = format!("{}:{}", i.file.display(), i.line);
        if lt > lf {
            out.push(format!("{at}: `{}` ({}) imports `{}` from the higher layer {}", i.from, from.name, i.to, to.name));
        } else if lt == lf && !from.sideways {
            out.push(format!("{at}: `{}` imports `{}`, beside it in layer {}, which forbids that", i.from, i.to, from.name));
        }
    }
    if let Some(circle) = find_circle(&edges) {
        out.push(format!("import circle: {}", circle.join(" -> ")));
    }
    out
}

/// A circle of imports between top-level modules, if there is one.
fn find_circle<'a>(edges: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Option<Vec<&'a str>> {
    fn visit<'a>(n: &'a str, edges: &BTreeMap<&'a str, BTreeSet<&'a str>>, path: &mut Vec<&'a str>, done: &mut BTreeSet<&'a str>) -> Option<Vec<&'a str>> {
        if let Some(i) = path.iter().position(|p| *p == n) {
            let mut circle = path[i..].to_vec();
            circle.push(n);
            return Some(circle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n);
        for next in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n);
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|n| visit(n, edges, &mut Vec::new(), &mut done))
}

/// Every `crate::` import of the non-test sources under `src`.
fn scan(src: &Path) -> Result<Vec<Import>> {
    let mut out = Vec::new();
    let mut stack = vec![(src.to_path_buf(), None::<String>)];
    let mut test_only: BTreeSet<PathBuf> = BTreeSet::new();
    let mut files = Vec::new();
    while let Some((dir, top)) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_owned();
            let top = top.clone().unwrap_or_else(|| stem.clone());
            if path.is_dir() {
                stack.push((path, Some(top)));
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push((path, top));
            }
        }
    }
    files.sort();
    // First pass: the files that `#[cfg(test)] mod x;` declares are test-only.
    let mut tokens_of = BTreeMap::new();
    for (path, _) in &files {
        let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let tokens = lex(&text);
        let dir = if path.file_name().is_some_and(|n| n == "mod.rs" || n == "lib.rs") {
            path.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            path.with_extension("")
        };
        for name in test_only_files(&tokens) {
            test_only.insert(dir.join(format!("{name}.rs")));
            test_only.insert(dir.join(&name).join("mod.rs"));
        }
        tokens_of.insert(path.clone(), tokens);
    }
    for (path, top) in &files {
        if test_only.contains(path) || top == "lib" {
            continue;
        }
        let tokens = &tokens_of[path];
        for (to, line) in crate_paths(tokens) {
            out.push(Import { from: top.clone(), to, file: path.strip_prefix(src.parent().and_then(Path::parent).unwrap_or(src)).unwrap_or(path).to_path_buf(), line });
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Path,
    Punct(char),
}

/// Rust source as identifiers, `::` and single punctuation, each with its line; comments,
/// string, byte-string, raw-string and char literals and lifetimes dropped.
fn lex(text: &str) -> Vec<(Tok, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let count = |s: &[u8]| s.iter().filter(|&&c| c == b'\n').count();
    while i < b.len() {
        let c = b[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let (mut depth, start) = (0, i);
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            line += count(&b[start..i.min(b.len())]);
        } else if (c == b'r' || (c == b'b' && b.get(i + 1) == Some(&b'r'))) && {
            let j = if c == b'b' { i + 2 } else { i + 1 };
            let hashes = b[j..].iter().take_while(|&&h| h == b'#').count();
            b.get(j + hashes) == Some(&b'"') && (hashes > 0 || c == b'b' || b.get(j) == Some(&b'"'))
        } {
            // Raw string: r"..", r#".."#, br"..".
            let j = if c == b'b' { i + 2 } else { i + 1 };
            let hashes = b[j..].iter().take_while(|&&h| h == b'#').count();
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            let start = i;
            i = j + hashes + 1;
            while i < b.len() && !b[i..].starts_with(&close) {
                i += 1;
            }
            i = (i + close.len()).min(b.len());
            line += count(&b[start..i]);
        } else if c == b'"' || (c == b'b' && b.get(i + 1) == Some(&b'"')) {
            let start = i;
            i += if c == b'b' { 2 } else { 1 };
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(b.len());
            line += count(&b[start..i]);
        } else if c == b'\'' || (c == b'b' && b.get(i + 1) == Some(&b'\'')) {
            // A char literal ('a', '\n', '\u{..}', b'x') or a lifetime ('a).
            let j = if c == b'b' { i + 1 } else { i };
            if b.get(j + 1) == Some(&b'\\') {
                i = j + 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
            } else if b.get(j + 2) == Some(&b'\'') {
                i = j + 3;
            } else if let Some(ch) = text[j + 1..].chars().next().filter(|ch| !ch.is_ascii()) {
                // A multi-byte char literal.
                i = j + 1 + ch.len_utf8() + 1;
            } else {
                // A lifetime: skip the quote, the name follows as an identifier.
                i = j + 1;
            }
        } else if c == b'_' || c.is_ascii_alphabetic() {
            let start = i;
            while i < b.len() && (b[i] == b'_' || b[i].is_ascii_alphanumeric()) {
                i += 1;
            }
            out.push((Tok::Ident(text[start..i].to_owned()), line));
        } else if b[i..].starts_with(b"::") {
            out.push((Tok::Path, line));
            i += 2;
        } else {
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push((Tok::Punct(ch), line));
            i += ch.len_utf8();
        }
    }
    out
}

fn ident(t: Option<&(Tok, usize)>) -> Option<&str> {
    match t {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

/// The names of `#[cfg(test)] mod NAME;` declarations.
fn test_only_files(tokens: &[(Tok, usize)]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in tokens.iter().enumerate() {
        if let Some(after) = cfg_test_at(tokens, i) {
            let mut k = after;
            // Other attributes between `#[cfg(test)]` and the `mod`.
            while matches!((tokens.get(k), tokens.get(k + 1)), (Some((Tok::Punct('#'), _)), Some((Tok::Punct('['), _)))) {
                let mut depth = 0;
                for (j, (t, _)) in tokens.iter().enumerate().skip(k + 1) {
                    match t {
                        Tok::Punct('[') => depth += 1,
                        Tok::Punct(']') => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        k = j + 1;
                        break;
                    }
                }
            }
            if ident(tokens.get(k)) == Some("pub") {
                k += 1;
            }
            if let (Some("mod"), Some(name), Some((Tok::Punct(';'), _))) = (ident(tokens.get(k)), ident(tokens.get(k + 1)), tokens.get(k + 2)) {
                out.push(name.to_owned());
            }
        }
    }
    out
}

/// If `#[cfg(test)]` starts at `i`, the index after it.
fn cfg_test_at(tokens: &[(Tok, usize)], i: usize) -> Option<usize> {
    let want = [Tok::Punct('#'), Tok::Punct('['), Tok::Ident("cfg".into()), Tok::Punct('('), Tok::Ident("test".into()), Tok::Punct(')'), Tok::Punct(']')];
    let window = tokens.get(i..i + want.len())?;
    window.iter().map(|(t, _)| t).eq(want.iter()).then_some(i + want.len())
}

/// Every top-level module a `crate::` path names, with its line, outside `#[cfg(test)]` items.
fn crate_paths(tokens: &[(Tok, usize)]) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if let Some(after) = cfg_test_at(tokens, i) {
            // Skip the item: up to its `;`, or its braced body.
            let mut k = after;
            while k < tokens.len() && !matches!(tokens[k].0, Tok::Punct(';') | Tok::Punct('{')) {
                k += 1;
            }
            if matches!(tokens.get(k), Some((Tok::Punct('{'), _))) {
                k = close_of(tokens, k);
            }
            i = k + 1;
            continue;
        }
        if ident(tokens.get(i)) == Some("crate") && matches!(tokens.get(i + 1), Some((Tok::Path, _))) {
            let line = tokens[i].1;
            match tokens.get(i + 2) {
                Some((Tok::Ident(name), _)) => out.push((name.clone(), line)),
                Some((Tok::Punct('{'), _)) => {
                    // `crate::{a, b::c, d::{e, f}}`: the first name of each item at depth 1.
                    let end = close_of(tokens, i + 2);
                    let mut expect = true;
                    let mut depth = 0;
                    for (t, l) in &tokens[i + 3..end] {
                        match t {
                            Tok::Punct('{') => depth += 1,
                            Tok::Punct('}') => depth -= 1,
                            Tok::Punct(',') if depth == 0 => expect = true,
                            Tok::Ident(name) if expect && depth == 0 => {
                                if name != "self" {
                                    out.push((name.clone(), *l));
                                }
                                expect = false;
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    out
}

/// The index of the `}` that closes the `{` at `open`.
fn close_of(tokens: &[(Tok, usize)], open: usize) -> usize {
    let mut depth = 0;
    for (k, (t, _)) in tokens.iter().enumerate().skip(open) {
        match t {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    tokens.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(src: &str) -> Vec<String> {
        crate_paths(&lex(src)).into_iter().map(|(m, _)| m).collect()
    }

    #[test]
    fn finds_plain_grouped_and_inline_paths() {
        let src = r##"
            use crate::launch::seccomp;
            use crate::{policy::Policy, sandbox::{Enforcement, LandlockStatus}, sys};
            fn f() { let _ = crate::termtext::escape("crate::tui"); } // crate::session
            /* crate::main */
            const C: char = '"'; fn g<'a>(x: &'a str) { crate::fsio::append(x) }
            #[cfg(test)]
            mod tests { use crate::tui; }
            #[cfg(test)]
            use crate::session;
            let s = r#"crate::cli"#;
        "##;
        assert_eq!(paths(src), ["launch", "policy", "sandbox", "sys", "termtext", "fsio"]);
    }

    #[test]
    fn test_only_module_files_are_found() {
        assert_eq!(test_only_files(&lex("#[cfg(test)]\nmod tests;\nmod real;\n#[cfg(test)]\n// why\n#[allow(unsafe_code)]\nmod fuzz;")), ["tests", "fuzz"]);
    }

    #[test]
    fn upward_sideways_and_circular_imports_are_refused() {
        let modules: BTreeSet<String> = ["launch", "monitor", "policy", "tui", "report"].iter().map(|s| s.to_string()).collect();
        let imp = |from: &str, to: &str| Import { from: from.into(), to: to.into(), file: "f.rs".into(), line: 1 };
        let found = problems(&[imp("policy", "tui"), imp("launch", "monitor"), imp("report", "policy")], &modules);
        assert_eq!(
            found,
            [
                "f.rs:1: `policy` (policy) imports `tui` from the higher layer dashboard",
                "f.rs:1: `launch` imports `monitor`, beside it in layer engines, which forbids that",
            ]
        );
        let mut edges = BTreeMap::new();
        edges.insert("a", BTreeSet::from(["b"]));
        edges.insert("b", BTreeSet::from(["a"]));
        assert_eq!(find_circle(&edges), Some(vec!["a", "b", "a"]));
    }

    #[test]
    fn sbx_follows_the_layering() {
        check(&crate::workspace_root()).unwrap();
    }
}
