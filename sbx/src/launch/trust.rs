//! Which bubblewrap sbx executes. Never the first match on `$PATH`: a
//! directory there that the sandboxed command could write (`~/.local/bin`,
//! `~/.bun/bin` under a template that allows `~/.bun`) would let it plant a
//! `bwrap` that the next `sbx run` executes unsandboxed. Only fixed
//! candidates are considered, and one is used only when nobody but root can
//! change it: the file and every directory above it (each step of a symlink
//! included) owned by root, writable by neither group nor others, and, for
//! an unprivileged user, not writable by them (ACLs).

use std::{
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Component, Path, PathBuf},
};

/// Where bubblewrap is looked for, in order. Distribution packages install
/// it in /usr/bin; a source build in /usr/local/bin.
pub const BWRAP_CANDIDATES: &[&str] = &["/usr/bin/bwrap", "/usr/local/bin/bwrap", "/bin/bwrap"];

/// The bubblewrap sbx will execute, and why it is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedBwrap {
    pub path: PathBuf,
    /// One sentence for `sbx doctor`.
    pub why: String,
}

/// Why a candidate was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub path: PathBuf,
    pub why: String,
}

/// What `probe` learns of one path, without following a final symlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub uid: u32,
    pub mode: u32,
    pub kind: NodeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    File,
    Symlink,
    Other,
}

/// A lookup of one path: what it is, and a symlink's target.
pub type Lookup = dyn Fn(&Path) -> Option<(Node, Option<PathBuf>)>;

/// The host's view of one path (lstat), and its symlink target.
pub fn host_node(path: &Path) -> Option<(Node, Option<PathBuf>)> {
    let m = std::fs::symlink_metadata(path).ok()?;
    let t = m.file_type();
    let kind = if t.is_symlink() {
        NodeKind::Symlink
    } else if t.is_dir() {
        NodeKind::Dir
    } else if t.is_file() {
        NodeKind::File
    } else {
        NodeKind::Other
    };
    let target = if kind == NodeKind::Symlink { std::fs::read_link(path).ok() } else { None };
    Some((Node { uid: m.uid(), mode: m.permissions().mode(), kind }, target))
}

/// Whether the invoking user may write `path` (for ACLs beyond the mode bits); root
/// is covered by the ownership rule instead.
fn writable_by_me(path: &Path) -> bool {
    !nix::unistd::geteuid().is_root() && nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_ok()
}

/// The first candidate that only root can change, or why each was rejected.
pub fn find_bwrap() -> Result<TrustedBwrap, Vec<Rejected>> {
    choose(BWRAP_CANDIDATES, &host_node, &writable_by_me)
}

/// `find_bwrap` with the host's lookups passed in, for tests.
pub fn choose(
    candidates: &[&str],
    node: &Lookup,
    writable: &dyn Fn(&Path) -> bool,
) -> Result<TrustedBwrap, Vec<Rejected>> {
    let mut rejected = Vec::new();
    for candidate in candidates {
        let path = Path::new(candidate);
        match check(path, node, writable) {
            Ok(resolved) => {
                let shown = if resolved == path { String::new() } else { format!(" (which is {})", resolved.display()) };
                return Ok(TrustedBwrap {
                    path: path.to_path_buf(),
                    why: format!(
                        "{}{shown}: it and every directory above it are owned by root and writable by no one else (sbx never takes bwrap from $PATH)",
                        path.display()
                    ),
                });
            }
            Err(why) => rejected.push(Rejected { path: path.to_path_buf(), why }),
        }
    }
    Err(rejected)
}

/// Walks `path` component by component from `/`, following symlinks (at most 16), and
/// checks every directory crossed, every symlink and the final file. Returns the
/// resolved path.
fn check(
    path: &Path,
    node: &Lookup,
    writable: &dyn Fn(&Path) -> bool,
) -> Result<PathBuf, String> {
    let trusted = |p: &Path, n: &Node| -> Result<(), String> {
        if n.uid != 0 {
            return Err(format!("{} is owned by uid {}, not root", p.display(), n.uid));
        }
        // A symlink's own mode means nothing; its directory is checked.
        if n.kind != NodeKind::Symlink && n.mode & 0o022 != 0 {
            return Err(format!("{} is writable by {} (mode {:o})", p.display(), if n.mode & 0o002 != 0 { "everyone" } else { "its group" }, n.mode & 0o7777));
        }
        if n.kind != NodeKind::Symlink && writable(p) {
            return Err(format!("{} is writable by you", p.display()));
        }
        Ok(())
    };
    let root = Path::new("/");
    let (root_node, _) = node(root).ok_or_else(|| "/ cannot be examined".to_string())?;
    trusted(root, &root_node)?;
    // Components still to walk, in order; a symlink's target is spliced in front.
    let mut todo: Vec<PathBuf> = path.components().filter(|c| matches!(c, Component::Normal(_))).map(|c| PathBuf::from(c.as_os_str())).rev().collect();
    let mut at = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = todo.pop() {
        let next = at.join(&name);
        let (n, target) = node(&next).ok_or_else(|| format!("{} does not exist", next.display()))?;
        trusted(&next, &n)?;
        match n.kind {
            NodeKind::Symlink => {
                links += 1;
                if links > 16 {
                    return Err(format!("{} has too many symlinks", path.display()));
                }
                let target = target.ok_or_else(|| format!("{} cannot be read", next.display()))?;
                if target.is_absolute() {
                    at = PathBuf::from("/");
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(s) => todo.push(PathBuf::from(s)),
                        Component::ParentDir => todo.push(PathBuf::from("..")),
                        _ => {}
                    }
                }
            }
            _ if name == Path::new("..") => {
                at.pop();
            }
            NodeKind::Dir => at = next,
            NodeKind::File if todo.is_empty() => {
                if n.mode & 0o111 == 0 {
                    return Err(format!("{} is not executable", next.display()));
                }
                return Ok(next);
            }
            _ if todo.is_empty() => return Err(format!("{} is not a regular file", next.display())),
            _ => return Err(format!("{} is not a directory", next.display())),
        }
    }
    Err(format!("{} is not a file", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(uid: u32, mode: u32, kind: NodeKind) -> Option<(Node, Option<PathBuf>)> {
        Some((Node { uid, mode, kind }, None))
    }

    /// A merged-/usr host: /bin -> usr/bin, /usr/bin/bwrap root's, /usr/local/bin/bwrap planted.
    fn host(p: &Path) -> Option<(Node, Option<PathBuf>)> {
        match p.to_str().unwrap() {
            "/" | "/usr" | "/usr/bin" | "/usr/local" => node(0, 0o40755, NodeKind::Dir),
            "/usr/local/bin" => node(0, 0o40777, NodeKind::Dir),
            "/bin" => Some((Node { uid: 0, mode: 0o120777, kind: NodeKind::Symlink }, Some("usr/bin".into()))),
            "/usr/bin/bwrap" => node(0, 0o100755, NodeKind::File),
            "/usr/local/bin/bwrap" => node(1000, 0o100755, NodeKind::File),
            _ => None,
        }
    }

    #[test]
    fn takes_the_first_candidate_only_root_can_change() {
        let got = choose(BWRAP_CANDIDATES, &host, &|_| false).unwrap();
        assert_eq!(got.path, PathBuf::from("/usr/bin/bwrap"));
        // Through the /bin symlink too.
        let got = choose(&["/bin/bwrap"], &host, &|_| false).unwrap();
        assert_eq!(got.why, "/bin/bwrap (which is /usr/bin/bwrap): it and every directory above it are owned by root and writable by no one else (sbx never takes bwrap from $PATH)");
    }

    #[test]
    fn rejects_a_writable_directory_a_foreign_owner_and_acls() {
        let err = choose(&["/usr/local/bin/bwrap", "/opt/bwrap"], &host, &|_| false).unwrap_err();
        assert_eq!(
            err,
            [
                Rejected { path: "/usr/local/bin/bwrap".into(), why: "/usr/local/bin is writable by everyone (mode 777)".into() },
                Rejected { path: "/opt/bwrap".into(), why: "/opt does not exist".into() },
            ]
        );
        let owned = |p: &Path| if p == Path::new("/usr/bin/bwrap") { node(1000, 0o100755, NodeKind::File) } else { host(p) };
        assert_eq!(choose(&["/usr/bin/bwrap"], &owned, &|_| false).unwrap_err()[0].why, "/usr/bin/bwrap is owned by uid 1000, not root");
        let group = |p: &Path| if p == Path::new("/usr/bin") { node(0, 0o40775, NodeKind::Dir) } else { host(p) };
        assert_eq!(choose(&["/usr/bin/bwrap"], &group, &|_| false).unwrap_err()[0].why, "/usr/bin is writable by its group (mode 775)");
        let acl = |p: &Path| p == Path::new("/usr/bin/bwrap");
        assert_eq!(choose(&["/usr/bin/bwrap"], &host, &acl).unwrap_err()[0].why, "/usr/bin/bwrap is writable by you");
    }

    #[test]
    fn a_symlink_into_a_users_directory_is_rejected() {
        let linked = |p: &Path| match p.to_str().unwrap() {
            "/usr/bin/bwrap" => Some((Node { uid: 0, mode: 0o120777, kind: NodeKind::Symlink }, Some("/home/u/bwrap".into()))),
            "/home" => node(0, 0o40755, NodeKind::Dir),
            "/home/u" => node(1000, 0o40755, NodeKind::Dir),
            _ => host(p),
        };
        assert_eq!(choose(&["/usr/bin/bwrap"], &linked, &|_| false).unwrap_err()[0].why, "/home/u is owned by uid 1000, not root");
    }

    /// The real host: whatever bwrap there is, it is never one in a temporary directory.
    #[test]
    fn a_file_under_tmp_is_never_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("bwrap");
        std::fs::write(&fake, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let candidate = fake.to_str().unwrap();
        assert!(choose(&[candidate], &host_node, &writable_by_me).is_err());
    }
}
