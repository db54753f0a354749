//! sbx's own file I/O: the one way sbx reads a policy file and writes a
//! log, an export, a policy edit or a state file.
//!
//! sbx runs outside the sandbox with the user's (or root's) rights, and the
//! places it writes (the workspace, the working directory) are places the
//! sandboxed command can write too. A command that plants a symlink named
//! like sbx's log (`audit.jsonl -> ~/.bashrc`), a FIFO named `sbx.jsonc`, or
//! a hard link, must not turn sbx's next write into a write of the user's
//! file, nor freeze sbx on a read. Hence, for every path here:
//!
//! * the last component is opened relative to a handle on its directory
//!   (`openat`), with `O_NOFOLLOW` (a symlink is an error, never followed)
//!   and `O_NONBLOCK` (opening a FIFO or a device does not wait), and the
//!   opened file is checked with `fstat` before a byte moves: anything but
//!   a regular file is one sentence naming the path and what it is;
//! * a new file is created with `O_EXCL` (nothing that exists is reused);
//! * a file appended to (the audit log) must be a regular file with one
//!   link, owned by the user running sbx;
//! * a file replaced (a policy edit) is written to a temporary file with an
//!   unpredictable name, preferably in sbx's private state directory (which
//!   the sandbox cannot see), then renamed over the target with `renameat`,
//!   which replaces a symlink instead of following it. When the state
//!   directory is on another filesystem the temporary file is made in the
//!   target's directory, and the rename is checked afterwards to have put
//!   sbx's own file in place.
//!
//! Directories above the last component are resolved normally: they are
//! the user's choice (`--log /some/dir/x.jsonl`), not the command's.

use std::{
    fs::File,
    io::{self, Read as _, Write as _},
    os::{
        fd::{AsFd, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{AtFlags, FcntlArg, OFlag},
    sys::stat::{FileStat, Mode, SFlag},
};
use thiserror::Error;

/// Files larger than this are refused: sbx reads policy files and logs
/// into memory (a busy session's log can be large; a policy file is tiny).
pub const MAX_READ: u64 = 2 * 1024 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum FsError {
    #[error("{path} is a symbolic link; sbx does not follow symbolic links in the files it reads and writes itself")]
    Symlink { path: PathBuf },
    #[error("{path} is {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path} belongs to uid {owner}, not to the user running sbx (uid {me}); sbx appends only to its own files")]
    ForeignOwner { path: PathBuf, owner: u32, me: u32 },
    #[error("{path} has {links} hard links; sbx writes only to files with one")]
    HardLinked { path: PathBuf, links: u64 },
    #[error("{path} is larger than {MAX_READ} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path} was replaced by another file while sbx wrote it; check its content")]
    Raced { path: PathBuf },
    #[error("cannot {op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: io::Error },
}

impl FsError {
    /// The error without the operation and path where the caller names
    /// them already ("cannot open the log file X: ..."): an I/O error's
    /// cause alone, otherwise the whole sentence.
    pub fn detail(&self) -> String {
        match self {
            FsError::Io { source, .. } => source.to_string(),
            other => other.to_string(),
        }
    }

    /// The path does not exist (reads and appends may treat that as empty).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FsError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> FsError + 'a {
        move |e| {
            if e == Errno::ELOOP {
                FsError::Symlink { path: path.to_path_buf() }
            } else {
                FsError::Io { op, path: path.to_path_buf(), source: e.into() }
            }
        }
    }
}

/// What a file type is called in errors.
fn kind_of(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFIFO => "a FIFO (named pipe)",
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFLNK => "a symbolic link",
        _ => "a special file",
    }
}

fn is_regular(st: &FileStat) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFREG.bits()
}

/// The directory of `path` (opened) and its last component.
fn split(path: &Path) -> Result<(OwnedFd, &std::ffi::OsStr), FsError> {
    let name = path.file_name().ok_or_else(|| FsError::Io {
        op: "open",
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "the path does not name a file"),
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let fd = nix::fcntl::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| FsError::Io { op: "open the directory of", path: path.to_path_buf(), source: e.into() })?;
    Ok((fd, name))
}

/// Opens the last component of `path` under `dir` without following a
/// symlink or blocking, and checks that it is a regular file.
/// The error for a file that is there but not a regular file.
fn describe(st: Option<FileStat>, path: &Path) -> Option<FsError> {
    let st = st?;
    if st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits() {
        return Some(FsError::Symlink { path: path.to_path_buf() });
    }
    (!is_regular(&st)).then(|| FsError::NotRegular { path: path.to_path_buf(), kind: kind_of(&st) })
}

fn open_regular(dir: impl AsFd, name: &std::ffi::OsStr, path: &Path, flags: OFlag, mode: Mode, op: &'static str) -> Result<(File, FileStat), FsError> {
    let fd = match nix::fcntl::openat(&dir, name, flags | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY, mode) {
        Ok(fd) => fd,
        // A socket cannot be opened (ENXIO), nor a FIFO for writing without
        // a reader: say what is there rather than the errno.
        Err(e) => return Err(describe(nix::sys::stat::fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok(), path).unwrap_or_else(|| FsError::io(op, path)(e))),
    };
    let st = nix::sys::stat::fstat(&fd).map_err(FsError::io("inspect", path))?;
    if !is_regular(&st) {
        return Err(FsError::NotRegular { path: path.to_path_buf(), kind: kind_of(&st) });
    }
    // Back to blocking I/O for a regular file (O_NONBLOCK only kept the
    // open itself from waiting).
    nix::fcntl::fcntl(&fd, FcntlArg::F_SETFL(flags & OFlag::O_APPEND)).map_err(FsError::io(op, path))?;
    Ok((File::from(fd), st))
}

/// Reads a whole regular file (a log, a key) as UTF-8 text; a symlink is
/// refused.
pub fn read_to_string(path: &Path) -> Result<String, FsError> {
    let (dir, name) = split(path)?;
    let (file, st) = open_regular(&dir, name, path, OFlag::O_RDONLY, Mode::empty(), "read")?;
    read_all(file, &st, path)
}

/// Opens a regular file for reading, however large (a log read line by line: `sbx monitor
/// --replay`); a symlink is refused.
pub fn open_read(path: &Path) -> Result<File, FsError> {
    let (dir, name) = split(path)?;
    open_regular(&dir, name, path, OFlag::O_RDONLY, Mode::empty(), "read").map(|(file, _)| file)
}

/// Reads a policy file: like [`read_to_string`], except that a symlink to a
/// regular file is followed (a policy file kept in a dotfiles repository
/// is often one). What it leads to must still be a regular file: a FIFO,
/// socket or device is refused without waiting on it.
pub fn read_policy(path: &Path) -> Result<String, FsError> {
    let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY, Mode::empty())
        .map_err(|e| describe(nix::sys::stat::stat(path).ok(), path).unwrap_or_else(|| FsError::io("read", path)(e)))?;
    let st = nix::sys::stat::fstat(&fd).map_err(FsError::io("inspect", path))?;
    if !is_regular(&st) {
        return Err(FsError::NotRegular { path: path.to_path_buf(), kind: kind_of(&st) });
    }
    nix::fcntl::fcntl(&fd, FcntlArg::F_SETFL(OFlag::empty())).map_err(FsError::io("read", path))?;
    read_all(File::from(fd), &st, path)
}

fn read_all(mut file: File, st: &FileStat, path: &Path) -> Result<String, FsError> {
    if st.st_size as u64 > MAX_READ {
        return Err(FsError::TooLarge { path: path.to_path_buf() });
    }
    let mut text = String::new();
    io::Read::by_ref(&mut file).take(MAX_READ + 1).read_to_string(&mut text).map_err(|source| FsError::Io { op: "read", path: path.to_path_buf(), source })?;
    if text.len() as u64 > MAX_READ {
        return Err(FsError::TooLarge { path: path.to_path_buf() });
    }
    Ok(text)
}

/// Reads `path` like [`read_to_string`]; `None` when it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<String>, FsError> {
    match read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens a log for appending: created (mode 0600) when it does not exist,
/// otherwise it must be a regular file with one link owned by the user
/// running sbx.
pub fn append(path: &Path) -> Result<File, FsError> {
    let (dir, name) = split(path)?;
    let create = OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT | OFlag::O_EXCL;
    match open_regular(&dir, name, path, create, Mode::from_bits_truncate(0o600), "create") {
        Ok((file, _)) => return Ok(file),
        Err(FsError::Io { source, .. }) if source.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(e),
    }
    let (file, st) = open_regular(&dir, name, path, OFlag::O_WRONLY | OFlag::O_APPEND, Mode::empty(), "open")?;
    check_owned(path, &st)?;
    Ok(file)
}

fn check_owned(path: &Path, st: &FileStat) -> Result<(), FsError> {
    let me = nix::unistd::geteuid().as_raw();
    if st.st_uid != me {
        return Err(FsError::ForeignOwner { path: path.to_path_buf(), owner: st.st_uid, me });
    }
    if st.st_nlink != 1 {
        return Err(FsError::HardLinked { path: path.to_path_buf(), links: st.st_nlink });
    }
    Ok(())
}

/// Creates a new file (it must not exist in any form) with `mode`.
pub fn create_new(path: &Path, mode: u32) -> Result<File, FsError> {
    let (dir, name) = split(path)?;
    let (file, _) = open_regular(&dir, name, path, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, Mode::from_bits_truncate(mode), "create")?;
    Ok(file)
}

/// A name no one can predict: `.{prefix}.{16 random hex digits}.sbx-tmp`.
fn temp_name(prefix: &std::ffi::OsStr) -> Result<std::ffi::OsString, FsError> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| FsError::Io { op: "name a temporary file for", path: PathBuf::from(prefix), source: io::Error::other(e.to_string()) })?;
    let mut name = std::ffi::OsString::from(".");
    // Only the printable part of the target's name, so that the temporary
    // name stays short and plain.
    let shown: String = String::from_utf8_lossy(prefix.as_bytes()).chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')).take(64).collect();
    name.push(shown);
    name.push(format!(".{}.sbx-tmp", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()));
    Ok(name)
}

/// Replaces `path` with `contents`, atomically: a reader sees the old file
/// or the new one. An existing target keeps its permission bits (it must be
/// a regular file; a symlink in its place is replaced, not followed); a new
/// one gets `new_mode`.
pub fn replace(path: &Path, contents: &[u8], new_mode: u32) -> Result<(), FsError> {
    let (dir, name) = split(path)?;
    let (mode, owner) = match nix::sys::stat::fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if is_regular(&st) => (st.st_mode & 0o7777, Some((st.st_uid, st.st_gid))),
        Ok(st) if st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFLNK.bits() => (new_mode, None),
        Ok(st) => return Err(FsError::NotRegular { path: path.to_path_buf(), kind: kind_of(&st) }),
        Err(Errno::ENOENT) => (new_mode, None),
        Err(e) => return Err(FsError::io("inspect", path)(e)),
    };
    // Root (`sudo sbx ...`) writing a user's file: it stays theirs (a new one: the
    // directory's owner's).
    let owner = match (nix::unistd::geteuid().is_root(), owner) {
        (false, _) => None,
        (true, Some(o)) => Some(o),
        (true, None) => nix::sys::stat::fstat(&dir).ok().map(|st| (st.st_uid, st.st_gid)),
    };
    // First choice: the private state directory, which the sandbox cannot
    // see, so no one can swap the temporary file before the rename.
    let state = crate::state::runtime_dir().ok().and_then(|d| {
        nix::fcntl::open(&d, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()).ok()
    });
    if let Some(state) = state {
        match write_temp_then_rename(&state, &dir, name, path, contents, mode, owner) {
            Err(FsError::Io { source, .. }) if source.raw_os_error() == Some(libc::EXDEV) => {}
            other => return other,
        }
    }
    // The state directory is on another filesystem: the temporary file goes
    // next to the target, and the rename is checked.
    write_temp_then_rename(&dir, &dir, name, path, contents, mode, owner)
}

fn write_temp_then_rename(tmp_dir: &impl AsFd, dir: &impl AsFd, name: &std::ffi::OsStr, path: &Path, contents: &[u8], mode: u32, owner: Option<(u32, u32)>) -> Result<(), FsError> {
    let tmp = temp_name(name)?;
    let (mut file, _) = open_regular(tmp_dir, &tmp, path, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, Mode::from_bits_truncate(0o600), "create a temporary file for")?;
    let cleanup = |e: FsError| {
        let _ = nix::unistd::unlinkat(tmp_dir, tmp.as_os_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
        e
    };
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| FsError::Io { op: "write", path: path.to_path_buf(), source })
        .and_then(|()| nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(mode)).map_err(FsError::io("set the permissions of", path)))
        .and_then(|()| match owner {
            Some((uid, gid)) => nix::unistd::fchown(&file, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid))).map_err(FsError::io("set the owner of", path)),
            None => Ok(()),
        });
    written.map_err(cleanup)?;
    nix::fcntl::renameat(tmp_dir, tmp.as_os_str(), dir, name).map_err(|e| cleanup(FsError::io("replace", path)(e)))?;
    // What is now at the target must be the file sbx wrote (another
    // process that can write the directory could have swapped the
    // temporary file in between).
    let ours = nix::sys::stat::fstat(&file).map_err(FsError::io("inspect", path))?;
    let there = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(FsError::io("inspect", path))?;
    if (ours.st_dev, ours.st_ino) != (there.st_dev, there.st_ino) {
        return Err(FsError::Raced { path: path.to_path_buf() });
    }
    Ok(())
}

/// Up to `max + 1` bytes of the file at `path`, opened without following a symlink put in
/// its place and without waiting on a FIFO: the comparisons before and after a session
/// (`snapshot`, `agentconf`), where the command may have replaced the file meanwhile.
pub fn read_no_follow(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
    let mut out = Vec::new();
    file.take(max + 1).read_to_end(&mut out)?;
    Ok(out)
}

/// Sets the permission bits of `path` without following a symlink there (a directory or
/// file is opened with `O_PATH | O_NOFOLLOW` and changed through `/proc/self/fd`).
pub fn set_mode_no_follow(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_NOFOLLOW).open(path)?;
    if f.metadata()?.file_type().is_symlink() {
        return Err(io::Error::other("it is a symbolic link"));
    }
    std::fs::set_permissions(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&f)), std::fs::Permissions::from_mode(mode))
}

/// Creates `dir` and the directories missing above it, outermost first, each with the
/// permissions `mode(the directory, the mode of the one it is made in)` and, when sbx is
/// root, the owner of the directory it is made in: `sudo sbx ...` making a directory in a
/// user's tree (a quarantine, a placeholder) leaves it theirs. Returns the directories
/// made, and the directory and error that stopped it if one did.
pub fn mkdir_owned(dir: &Path, mode: impl Fn(&Path, u32) -> u32) -> (Vec<PathBuf>, Result<(), (PathBuf, io::Error)>) {
    use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
    let missing: Vec<&Path> = dir.ancestors().take_while(|a| std::fs::symlink_metadata(a).is_err()).collect();
    let mut made = Vec::new();
    for d in missing.into_iter().rev() {
        let parent = match d.parent().map(std::fs::metadata) {
            Some(Ok(m)) => m,
            Some(Err(e)) => return (made, Err((d.to_path_buf(), e))),
            None => return (made, Err((d.to_path_buf(), io::ErrorKind::NotFound.into()))),
        };
        if let Err(e) = std::fs::create_dir(d) {
            return (made, Err((d.to_path_buf(), e)));
        }
        made.push(d.to_path_buf());
        // Through a descriptor of what was made, not its name: a process of the user's
        // could put a symlink in its place meanwhile (the directory is in their tree).
        let dirfd = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(d) {
            Ok(f) => f,
            Err(e) => return (made, Err((d.to_path_buf(), e))),
        };
        if nix::unistd::geteuid().is_root() {
            let _ = std::os::unix::fs::fchown(&dirfd, Some(parent.uid()), Some(parent.gid()));
        }
        if let Err(e) = dirfd.set_permissions(std::fs::Permissions::from_mode(mode(d, parent.mode()))) {
            return (made, Err((d.to_path_buf(), e)));
        }
    }
    (made, Ok(()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    use super::*;

    #[test]
    fn reads_a_regular_file_and_refuses_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("policy"), "{}").unwrap();
        assert_eq!(read_to_string(&d.join("policy")).unwrap(), "{}");
        std::os::unix::fs::symlink(d.join("policy"), d.join("link")).unwrap();
        assert_eq!(read_to_string(&d.join("link")).unwrap_err().to_string(), format!("{} is a symbolic link; sbx does not follow symbolic links in the files it reads and writes itself", d.join("link").display()));
        nix::unistd::mkfifo(&d.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        // A FIFO without a writer would block a plain open forever.
        assert_eq!(read_to_string(&d.join("fifo")).unwrap_err().to_string(), format!("{} is a FIFO (named pipe), not a regular file", d.join("fifo").display()));
        let _sock = std::os::unix::net::UnixListener::bind(d.join("sock")).unwrap();
        assert_eq!(read_to_string(&d.join("sock")).unwrap_err().to_string(), format!("{} is a socket, not a regular file", d.join("sock").display()));
        assert_eq!(read_to_string(Path::new("/dev/null")).unwrap_err().to_string(), "/dev/null is a character device, not a regular file");
        assert_eq!(read_to_string(d).unwrap_err().to_string(), format!("{} is a directory, not a regular file", d.display()));
        assert!(read_to_string(&d.join("missing")).unwrap_err().is_not_found());
        // Policy files: a symlink to a regular file is followed, one to a
        // FIFO is not waited on.
        assert_eq!(read_policy(&d.join("link")).unwrap(), "{}");
        std::os::unix::fs::symlink(d.join("fifo"), d.join("fifo-link")).unwrap();
        assert_eq!(read_policy(&d.join("fifo-link")).unwrap_err().to_string(), format!("{} is a FIFO (named pipe), not a regular file", d.join("fifo-link").display()));
        assert_eq!(read_policy(&d.join("sock")).unwrap_err().to_string(), format!("{} is a socket, not a regular file", d.join("sock").display()));
        assert_eq!(read_policy(Path::new("/dev/zero")).unwrap_err().to_string(), "/dev/zero is a character device, not a regular file");
        assert_eq!(read_optional(&d.join("missing")).unwrap(), None);
    }

    #[test]
    fn append_creates_private_files_and_refuses_planted_ones() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let log = d.join("audit.jsonl");
        append(&log).unwrap().write_all(b"a\n").unwrap();
        append(&log).unwrap().write_all(b"b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "a\nb\n");
        assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);

        // A symlink to a file the user owns (~/.bashrc) is not followed.
        let victim = d.join("bashrc");
        std::fs::write(&victim, "original\n").unwrap();
        std::os::unix::fs::symlink(&victim, d.join("planted.jsonl")).unwrap();
        assert!(matches!(append(&d.join("planted.jsonl")), Err(FsError::Symlink { .. })));
        // A dangling symlink is not created through either.
        std::os::unix::fs::symlink(d.join("new-victim"), d.join("dangling.jsonl")).unwrap();
        assert!(matches!(append(&d.join("dangling.jsonl")), Err(FsError::Symlink { .. })));
        assert!(!d.join("new-victim").exists());
        // A hard link to it is refused too.
        std::fs::hard_link(&victim, d.join("hard.jsonl")).unwrap();
        assert!(matches!(append(&d.join("hard.jsonl")), Err(FsError::HardLinked { links: 2, .. })));
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "original\n");
        // FIFO, socket.
        nix::unistd::mkfifo(&d.join("fifo.jsonl"), Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(append(&d.join("fifo.jsonl")), Err(FsError::NotRegular { kind: "a FIFO (named pipe)", .. })));
        let _sock = std::os::unix::net::UnixListener::bind(d.join("sock.jsonl")).unwrap();
        assert!(matches!(append(&d.join("sock.jsonl")), Err(FsError::NotRegular { kind: "a socket", .. })));
        // A device.
        assert!(matches!(append(Path::new("/dev/null")), Err(FsError::NotRegular { kind: "a character device", .. })));
    }

    #[test]
    fn append_refuses_a_file_of_another_user() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to create a file owned by another user");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("foreign.jsonl");
        std::fs::write(&log, "").unwrap();
        std::os::unix::fs::chown(&log, Some(65534), Some(65534)).unwrap();
        assert_eq!(
            append(&log).unwrap_err().to_string(),
            format!("{} belongs to uid 65534, not to the user running sbx (uid 0); sbx appends only to its own files", log.display())
        );
    }

    #[test]
    fn create_new_never_reuses_what_exists() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::os::unix::fs::symlink(d.join("target"), d.join("export.jsonl")).unwrap();
        assert!(matches!(create_new(&d.join("export.jsonl"), 0o600), Err(FsError::Symlink { .. })));
        std::fs::write(d.join("taken"), "").unwrap();
        assert!(matches!(create_new(&d.join("taken"), 0o600), Err(FsError::Io { .. })));
        assert!(!d.join("target").exists());
        create_new(&d.join("fresh"), 0o640).unwrap().write_all(b"x").unwrap();
        assert_eq!(std::fs::metadata(d.join("fresh")).unwrap().permissions().mode() & 0o777, 0o640);
    }

    #[test]
    fn replace_swaps_in_a_new_file_and_never_writes_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let policy = d.join("sbx.jsonc");
        std::fs::write(&policy, "old").unwrap();
        std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o640)).unwrap();
        let ino = std::fs::metadata(&policy).unwrap().ino();
        replace(&policy, b"new", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&policy).unwrap(), "new");
        assert_eq!(std::fs::metadata(&policy).unwrap().permissions().mode() & 0o777, 0o640);
        assert_ne!(std::fs::metadata(&policy).unwrap().ino(), ino);

        // A symlink at the target is replaced by a file; what it pointed at
        // is untouched.
        let victim = d.join("bashrc");
        std::fs::write(&victim, "original").unwrap();
        let planted = d.join("planted.jsonc");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        replace(&planted, b"{}", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "original");
        assert!(std::fs::symlink_metadata(&planted).unwrap().file_type().is_file());

        // A FIFO at the target is refused.
        nix::unistd::mkfifo(&d.join("fifo.jsonc"), Mode::from_bits_truncate(0o600)).unwrap();
        assert!(matches!(replace(&d.join("fifo.jsonc"), b"{}", 0o644), Err(FsError::NotRegular { .. })));
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(d).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().ends_with(".sbx-tmp")).collect();
        assert!(left.is_empty(), "{left:?}");
        // A new file gets the mode asked for.
        replace(&d.join("new.jsonc"), b"{}", 0o644).unwrap();
        assert_eq!(std::fs::metadata(d.join("new.jsonc")).unwrap().permissions().mode() & 0o777, 0o644);
    }

    /// The fallback when the private directory is on another filesystem:
    /// the temporary file next to the target, then the rename, checked.
    #[test]
    fn replace_next_to_the_target_works_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = nix::fcntl::open(dir.path(), OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        let target = dir.path().join("sbx.jsonc");
        std::os::unix::fs::symlink("/etc/passwd", &target).unwrap();
        write_temp_then_rename(&d, &d, std::ffi::OsStr::new("sbx.jsonc"), &target, b"{}", 0o600, None).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "{}");
        assert_eq!(std::fs::metadata(&target).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["sbx.jsonc"]);
        // Temporary names are not predictable.
        assert_ne!(temp_name(std::ffi::OsStr::new("x")).unwrap(), temp_name(std::ffi::OsStr::new("x")).unwrap());
    }
}
