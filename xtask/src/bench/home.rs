//! The home of issue 18's start-up goal: a developer's home of 200,000 files, shaped like
//! a real one (projects with their dependency and build trees and git objects, the
//! package managers' caches, toolchains, editor extensions, documents), with a workspace
//! in it that is a git repository. Made once under /var/tmp, kept across runs (the mark
//! file says it is whole), so that every run walks the same tree.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};

use super::check;

/// Where the home is made; its version is in the name, so that a change of shape makes a
/// new one rather than reusing an old one.
const HOME: &str = "/var/tmp/sbx-bench/home-200k-v2";
/// The workspace, inside the home, like a real project.
const WORKSPACE: &str = "projects/app";
/// Written last: the home is whole.
const MARK: &str = ".sbx-bench-complete";
/// Files in the home, the workspace's included.
pub const FILES: usize = 200_000;

/// One tree of the home: its path, its number of files, how many entries per directory
/// before it nests deeper, and the file names' extensions. The files are empty (200,000 of
/// them take no blocks), except the workspace's sources, which are committed: each has
/// its own content, so that the repository holds as many loose objects as a working one
/// (sbx's own repository: 2,700 entries in `.git`).
struct Tree {
    path: &'static str,
    files: usize,
    width: usize,
    exts: &'static [&'static str],
    content: bool,
}

const fn tree(path: &'static str, files: usize, width: usize, exts: &'static [&'static str]) -> Tree {
    Tree { path, files, width, exts, content: false }
}

const fn committed(path: &'static str, files: usize, width: usize, exts: &'static [&'static str]) -> Tree {
    Tree { path, files, width, exts, content: true }
}

const JS: &[&str] = &["js", "json", "d.ts", "md", "map"];
const PY: &[&str] = &["py", "pyc", "txt"];
const RS: &[&str] = &["rs", "toml", "md"];
const BIN: &[&str] = &["", "o", "rlib", "d"];
const OBJ: &[&str] = &[""];

/// The home's trees besides the workspace (whose files are in [`workspace`]): sizes as in a
/// developer's home that has a few projects, Node, Python and Rust.
const TREES: &[Tree] = &[
    tree(".cache/pip/http-v2", 14_000, 16, OBJ),
    tree(".cache/go-build", 15_000, 256, OBJ),
    tree(".cache/mozilla/firefox/profile/cache2/entries", 6_000, 6_000, OBJ),
    tree(".cache/pre-commit/repos", 4_000, 20, PY),
    tree(".cache/thumbnails/normal", 2_000, 2_000, &["png"]),
    tree(".npm/_cacache/content-v2/sha512", 12_000, 256, OBJ),
    tree(".npm/_cacache/index-v5", 6_000, 256, OBJ),
    tree(".cargo/registry/src/index.crates.io", 24_000, 40, RS),
    tree(".cargo/registry/cache/index.crates.io", 1_500, 1_500, &["crate"]),
    tree(".rustup/toolchains/stable-x86_64-unknown-linux-gnu", 14_000, 30, RS),
    tree(".vscode/extensions", 12_000, 24, JS),
    tree(".local/share/virtualenvs/tools/lib/python3.11/site-packages", 9_000, 30, PY),
    tree(".local/share/Trash/files", 1_500, 40, &["txt", "pdf"]),
    tree(".config/Code/User/workspaceStorage", 1_200, 30, &["json", "vscdb"]),
    tree(".mozilla/firefox/profile", 600, 60, &["sqlite", "json"]),
    tree("projects/web/node_modules", 22_000, 30, JS),
    tree("projects/web/src", 900, 20, &["ts", "tsx", "css"]),
    tree("projects/web/.git/objects", 1_800, 256, OBJ),
    tree("projects/cli/target/debug", 9_000, 40, BIN),
    tree("projects/cli/src", 300, 20, RS),
    tree("projects/cli/.git/objects", 1_200, 256, OBJ),
    tree("projects/ml/.venv/lib/python3.11/site-packages", 15_000, 30, PY),
    tree("projects/ml/notebooks", 400, 40, &["ipynb", "csv"]),
    tree("projects/ml/.git/objects", 900, 256, OBJ),
    tree("projects/old/node_modules", 8_000, 30, JS),
    tree("projects/old/src", 600, 20, JS),
    tree("Documents", 1_500, 30, &["pdf", "odt", "txt"]),
    tree("Downloads", 700, 700, &["zip", "pdf", "deb"]),
    tree("Pictures", 900, 60, &["jpg", "png"]),
];

/// The workspace's own trees: a project with its dependencies and build output.
const WORKSPACE_TREES: &[Tree] = &[
    committed("src", 1_500, 20, &["ts", "tsx", "css", "json"]),
    committed("test", 400, 20, &["ts"]),
    tree("node_modules", 9_000, 30, JS),
    tree("dist", 600, 30, &["js", "map"]),
];

/// The bench's home and workspace: made when missing or incomplete.
pub fn ensure() -> Result<(PathBuf, PathBuf)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        anyhow::bail!("the startup suite runs sbx as root in a home of its own under /var/tmp (as the issue measures it); run it as root");
    }
    let home = PathBuf::from(HOME);
    let workspace = home.join(WORKSPACE);
    if home.join(MARK).is_file() {
        return Ok((home, workspace));
    }
    eprintln!("xtask: making a home of {FILES} files in {HOME} (once)");
    if home.exists() {
        fs::remove_dir_all(&home).with_context(|| format!("removing the incomplete {HOME}"))?;
    }
    let mut made = 0usize;
    // A few small files every home has, the secrets the templates protect among them.
    for (path, text) in [
        (".bashrc", "# bashrc\n"),
        (".profile", "# profile\n"),
        (".gitconfig", "[user]\n\tname = Bench\n\temail = bench@example.invalid\n"),
        (".ssh/id_ed25519", "not a key\n"),
        (".ssh/known_hosts", ""),
        (".aws/credentials", "[default]\n"),
        (".config/gh/hosts.yml", "github.com: {}\n"),
        ("projects/web/.env", "TOKEN=x\n"),
        ("projects/ml/.env.local", "TOKEN=x\n"),
        ("projects/cli/.env", "TOKEN=x\n"),
    ] {
        write(&home.join(path), text)?;
        made += 1;
    }
    for t in TREES {
        made += fill(&home.join(t.path), t.files, t.width, t.exts, t.content)?;
    }
    // The workspace: a git repository whose sources are committed.
    let ws_files: [(&str, &str); 5] = [
        ("package.json", "{\"name\": \"app\"}\n"),
        (".gitignore", "node_modules/\ndist/\n.env\n"),
        (".env", "TOKEN=x\n"),
        ("README.md", "# app\n"),
        ("config/dev.pem", "not a key\n"),
    ];
    for (path, text) in ws_files {
        write(&workspace.join(path), text)?;
        made += 1;
    }
    for t in WORKSPACE_TREES {
        made += fill(&workspace.join(t.path), t.files, t.width, t.exts, t.content)?;
    }
    let git = |args: &[&str]| {
        let mut cmd = std::process::Command::new("git");
        cmd.current_dir(&workspace).env("HOME", &home).args(args).stdout(std::process::Stdio::null());
        check(&mut cmd)
    };
    git(&["init", "-q", "-b", "main"])?;
    git(&["add", "-A"])?;
    git(&["commit", "-q", "-m", "app"])?;
    let in_git = count_files(&workspace.join(".git"));
    // The rest of the 200,000: the projects' plain files, where a search tool or a glob
    // walk spends its time.
    let rest = FILES.saturating_sub(made + in_git);
    fill(&home.join("projects/notes"), rest, 40, &["md", "txt"], false)?;
    let total = count_files(&home);
    write(&home.join(MARK), &format!("{total}\n"))?;
    eprintln!("xtask: {HOME} holds {total} files");
    Ok((home, workspace))
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Makes `files` empty files under `dir`: `width` entries per directory, files first,
/// then subdirectories sharing the rest (a balanced tree). Returns the number made.
fn fill(dir: &Path, files: usize, width: usize, exts: &[&str], content: bool) -> Result<usize> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if files <= width {
        return flat(dir, files, exts, "f", content);
    }
    // A quarter of the width in files here, the rest in subdirectories.
    let here = width / 4;
    let mut made = flat(dir, here, exts, "top", content)?;
    let left = files - here;
    let subdirs = width.min(left);
    for d in 0..subdirs {
        let share = left / subdirs + usize::from(d < left % subdirs);
        made += fill(&dir.join(format!("d{d:02x}")), share, width, exts, content)?;
    }
    Ok(made)
}

/// `files` files in `dir`, named `{stem}{i}.{ext}` (or hex, like a cache's, without an
/// extension); with `content`, each holds its own path.
fn flat(dir: &Path, files: usize, exts: &[&str], stem: &str, content: bool) -> Result<usize> {
    for i in 0..files {
        let ext = exts[i % exts.len()];
        let path = if ext.is_empty() { dir.join(format!("{i:08x}")) } else { dir.join(format!("{stem}{i}.{ext}")) };
        let text = if content { path.to_string_lossy().into_owned() } else { String::new() };
        fs::write(&path, text).with_context(|| format!("creating {}", path.display()))?;
    }
    Ok(files)
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => n += 1,
                Err(_) => {}
            }
        }
    }
    n
}
