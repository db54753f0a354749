//! sbx's private state directories: where its temporary files (the file
//! that masks hidden files, the dashboard's stderr, temporary copies of a
//! policy edit) and its state (the audit logs' keys) live, instead of
//! predictable names in `/tmp`.
//!
//! * The runtime directory, for files that live as long as a session:
//!   `$XDG_RUNTIME_DIR/sbx` when `$XDG_RUNTIME_DIR` is set and belongs to
//!   the user running sbx, else `<state>/run`.
//! * The state directory, for what outlives a session (the logs' keys, see
//!   `report`): `$XDG_STATE_HOME/sbx`, else `~/.local/state/sbx`.
//!
//! Each is created with mode 0700 and checked (owned by the user running
//! sbx, not a symlink) each time it is used. Both are hidden inside the
//! sandbox (see [`hidden_in_sandbox`]): the command can neither read the
//! logs' keys nor touch sbx's temporary files. A session's files carry its
//! pid (`hidden-<pid>-<random>`); files of a session whose process is gone
//! (killed with SIGKILL) are removed by the next session ([`remove_stale`]).

use std::{
    ffi::OsString,
    io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::OFlag,
    sys::stat::{Mode, SFlag},
};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StateError {
    #[error("sbx needs a private state directory: set HOME or XDG_STATE_HOME")]
    NoHome,
    #[error("cannot create sbx's private directory {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("sbx's private directory {path} is not a directory owned by you (uid {me}); remove it or fix its owner")]
    NotPrivate { path: PathBuf, me: u32 },
}

fn env_abs(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).map(PathBuf::from).filter(|p| p.is_absolute())
}

/// `$XDG_STATE_HOME/sbx` or `~/.local/state/sbx`, without creating it.
pub fn state_path() -> Result<PathBuf, StateError> {
    env_abs("XDG_STATE_HOME")
        .or_else(|| env_abs("HOME").map(|h| h.join(".local/state")))
        .map(|p| p.join("sbx"))
        .ok_or(StateError::NoHome)
}

/// The runtime directory's path, without creating it.
pub fn runtime_path() -> Result<PathBuf, StateError> {
    let me = nix::unistd::geteuid().as_raw();
    // Under sudo, XDG_RUNTIME_DIR may still name the invoking user's
    // directory: only one of our own is used.
    if let Some(xdg) = env_abs("XDG_RUNTIME_DIR")
        && let Ok(st) = nix::sys::stat::stat(&xdg)
        && st.st_uid == me
        && st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits()
        && st.st_mode & 0o022 == 0
    {
        return Ok(xdg.join("sbx"));
    }
    Ok(state_path()?.join("run"))
}

/// The state directory, created private if needed.
pub fn state_dir() -> Result<PathBuf, StateError> {
    let path = state_path()?;
    ensure_private(&path)?;
    Ok(path)
}

/// The runtime directory, created private if needed.
pub fn runtime_dir() -> Result<PathBuf, StateError> {
    let path = runtime_path()?;
    if path.parent().is_some_and(|p| p.file_name() == Some("sbx".as_ref())) {
        // <state>/run: the state directory first, private too.
        state_dir()?;
    }
    ensure_private(&path)?;
    Ok(path)
}

/// Creates `path` (mode 0700, parents as usual) or checks the one there:
/// a directory, not a symlink, owned by the user running sbx; group and
/// other bits are removed.
pub fn ensure_private(path: &Path) -> Result<(), StateError> {
    let create = |source: io::Error| StateError::Create { path: path.to_path_buf(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(create)?;
    }
    match nix::unistd::mkdir(path, Mode::from_bits_truncate(0o700)) {
        Ok(()) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(create(e.into())),
    }
    let me = nix::unistd::geteuid().as_raw();
    let not_private = || StateError::NotPrivate { path: path.to_path_buf(), me };
    let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| match e {
        Errno::ELOOP | Errno::ENOTDIR => not_private(),
        e => create(e.into()),
    })?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| create(e.into()))?;
    if st.st_uid != me {
        return Err(not_private());
    }
    if st.st_mode & 0o077 != 0 {
        nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o700)).map_err(|e| create(e.into()))?;
    }
    Ok(())
}

/// A new name for one of this session's files in the runtime directory:
/// `<kind>-<pid>-<16 random hex digits><suffix>`. The caller creates it
/// with `O_EXCL` and removes it when the session ends.
pub fn session_file(kind: &str, suffix: &str) -> Result<PathBuf, StateError> {
    let dir = runtime_dir()?;
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| StateError::Create { path: dir.clone(), source: io::Error::other(e.to_string()) })?;
    let random: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(dir.join(format!("{kind}-{}-{random}{suffix}", std::process::id())))
}

/// The pid in a session file's name (`<kind>-<pid>-<random>...`).
fn pid_of(name: &[u8]) -> Option<i32> {
    let mut parts = name.split(|&b| b == b'-');
    let _kind = parts.next()?;
    let pid = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    parts.next()?;
    Some(pid)
}

/// The session files of `kind` (`<kind>-<pid>-...`) of the other sessions: those still
/// running (`live`), or those whose sbx is gone.
pub fn session_files_of_others(kind: &str, live: bool) -> Vec<PathBuf> {
    let Ok(dir) = runtime_dir() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let prefix = format!("{kind}-");
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            name.as_bytes().starts_with(prefix.as_bytes())
                && pid_of(name.as_bytes()).is_some_and(|pid| {
                    pid != std::process::id() as i32 && (nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) != Err(Errno::ESRCH)) == live
                })
        })
        .map(|e| e.path())
        .collect()
}

/// Removes the session files of sessions whose sbx process is gone (killed
/// before it could clean up), and temporary files sbx left there (a
/// `.sbx-tmp` whose writer is gone). Returns how many were removed.
pub fn remove_stale() -> usize {
    let Ok(dir) = runtime_dir() else { return 0 };
    remove_stale_in(&dir, &|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) != Err(Errno::ESRCH))
}

fn remove_stale_in(dir: &Path, alive: &dyn Fn(i32) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name: OsString = entry.file_name();
        let stale = match pid_of(name.as_bytes()) {
            Some(pid) => pid != std::process::id() as i32 && !alive(pid),
            // A policy edit's temporary file: its writer renamed or removed
            // it unless it was killed in between; an hour is plenty.
            None => {
                name.as_bytes().ends_with(b".sbx-tmp")
                    && entry.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok()).is_some_and(|age| age.as_secs() > 3600)
            }
        };
        // A killed session's placeholder list is `missing`'s to remove, with its placeholders.
        if stale && !name.as_bytes().starts_with(b"placeholders-") && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The directories the sandbox must not see (added to the session's
/// `denyRead`): sbx's state and runtime directories, those that exist.
pub fn hidden_in_sandbox() -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = [state_path().ok(), runtime_path().ok()].into_iter().flatten().filter(|p| p.is_dir()).collect();
    outermost(dirs)
}

/// `dirs` without those inside another one (`<state>/run` is hidden with
/// `<state>`; bwrap could not create a mount point inside the empty,
/// read-only directory that hides the outer one).
fn outermost(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    dirs.iter().filter(|d| !dirs.iter().any(|o| o != *d && d.starts_with(o))).cloned().collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn private_dirs_are_created_0700_and_fixed_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/sbx");
        ensure_private(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private(&p).unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o700);
        // A symlink in its place is refused, not followed.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(matches!(ensure_private(&link), Err(StateError::NotPrivate { .. })));
        // So is a file.
        std::fs::write(dir.path().join("file"), "").unwrap();
        assert!(matches!(ensure_private(&dir.path().join("file")), Err(StateError::NotPrivate { .. })));
    }

    #[test]
    fn another_users_directory_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to create a directory owned by another user");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sbx");
        std::fs::create_dir(&p).unwrap();
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
        assert_eq!(
            ensure_private(&p).unwrap_err().to_string(),
            format!("sbx's private directory {} is not a directory owned by you (uid 0); remove it or fix its owner", p.display())
        );
    }

    #[test]
    fn nested_directories_are_hidden_once() {
        let dirs = outermost(vec!["/h/.local/state/sbx".into(), "/h/.local/state/sbx/run".into()]);
        assert_eq!(dirs, [PathBuf::from("/h/.local/state/sbx")]);
        let dirs = outermost(vec!["/h/.local/state/sbx".into(), "/run/user/1000/sbx".into()]);
        assert_eq!(dirs.len(), 2);
    }

    #[test]
    fn stale_files_of_dead_sessions_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for name in ["hidden-111-00aa", "monitor-111-00bb.stderr", "hidden-222-00cc", "unrelated", "key-ab"] {
            std::fs::write(d.join(name), "").unwrap();
        }
        let mine = format!("hidden-{}-00dd", std::process::id());
        std::fs::write(d.join(&mine), "").unwrap();
        let removed = remove_stale_in(d, &|pid| pid == 222);
        assert_eq!(removed, 2);
        let mut left: Vec<String> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        left.sort();
        let mut want = vec!["hidden-222-00cc".to_string(), mine, "key-ab".into(), "unrelated".into()];
        want.sort();
        assert_eq!(left, want);
        assert_eq!(pid_of(b"hidden-12-ab"), Some(12));
        assert_eq!(pid_of(b"hidden-12"), None);
    }
}
