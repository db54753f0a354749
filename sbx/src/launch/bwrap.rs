//! bubblewrap's command line as typed values. sbx never builds a shell
//! string: the arguments are rendered to a NUL-separated list that bwrap
//! reads from a file descriptor (`--args FD`), so paths with spaces, quotes
//! or non-UTF-8 bytes arrive unchanged.

use std::{
    ffi::{OsStr, OsString},
    os::{fd::RawFd, unix::ffi::OsStrExt as _},
    path::PathBuf,
};

/// One bubblewrap option. The order of a list of these is the order in which
/// bwrap applies them, which matters for mounts: a later mount covers an
/// earlier one at the same or a parent path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    UnshareUser,
    UnsharePid,
    UnshareIpc,
    UnshareUts,
    UnshareNet,
    UnshareCgroupTry,
    /// Forbid new user namespaces inside (needs `UnshareUser`).
    DisableUserns,
    DieWithParent,
    NewSession,
    /// Drop every capability (bwrap keeps them when run by root otherwise).
    CapDropAll,
    Hostname(OsString),
    RoBind { src: PathBuf, dst: PathBuf },
    Bind { src: PathBuf, dst: PathBuf },
    Tmpfs(PathBuf),
    /// The mode of the next `Tmpfs` (or data file) bwrap creates.
    Perms(u32),
    /// The size limit in bytes of the next `Tmpfs`.
    Size(u64),
    Dev(PathBuf),
    Proc(PathBuf),
    Dir(PathBuf),
    Symlink { target: PathBuf, dst: PathBuf },
    RemountRo(PathBuf),
    Chdir(PathBuf),
    SetEnv(OsString, OsString),
    UnsetEnv(OsString),
    /// bwrap writes JSON documents (child-pid, exit-code) here.
    JsonStatusFd(RawFd),
    /// A read-only file at `dst` with the content of descriptor `fd` (bwrap reads it).
    RoBindData { fd: RawFd, dst: PathBuf },
}

impl Arg {
    fn render(&self, out: &mut Vec<OsString>) {
        let mut push = |parts: &[&OsStr]| out.extend(parts.iter().map(|p| p.to_os_string()));
        let s = OsStr::new;
        match self {
            Arg::UnshareUser => push(&[s("--unshare-user")]),
            Arg::UnsharePid => push(&[s("--unshare-pid")]),
            Arg::UnshareIpc => push(&[s("--unshare-ipc")]),
            Arg::UnshareUts => push(&[s("--unshare-uts")]),
            Arg::UnshareNet => push(&[s("--unshare-net")]),
            Arg::UnshareCgroupTry => push(&[s("--unshare-cgroup-try")]),
            Arg::DisableUserns => push(&[s("--disable-userns")]),
            Arg::DieWithParent => push(&[s("--die-with-parent")]),
            Arg::NewSession => push(&[s("--new-session")]),
            Arg::CapDropAll => push(&[s("--cap-drop"), s("ALL")]),
            Arg::Hostname(name) => push(&[s("--hostname"), name]),
            Arg::RoBind { src, dst } => push(&[s("--ro-bind"), src.as_os_str(), dst.as_os_str()]),
            Arg::Bind { src, dst } => push(&[s("--bind"), src.as_os_str(), dst.as_os_str()]),
            Arg::Tmpfs(dst) => push(&[s("--tmpfs"), dst.as_os_str()]),
            Arg::Perms(mode) => push(&[s("--perms"), OsStr::new(&format!("{mode:04o}"))]),
            Arg::Size(bytes) => push(&[s("--size"), OsStr::new(&bytes.to_string())]),
            Arg::Dev(dst) => push(&[s("--dev"), dst.as_os_str()]),
            Arg::Proc(dst) => push(&[s("--proc"), dst.as_os_str()]),
            Arg::Dir(dst) => push(&[s("--dir"), dst.as_os_str()]),
            Arg::Symlink { target, dst } => push(&[s("--symlink"), target.as_os_str(), dst.as_os_str()]),
            Arg::RemountRo(dst) => push(&[s("--remount-ro"), dst.as_os_str()]),
            Arg::Chdir(dir) => push(&[s("--chdir"), dir.as_os_str()]),
            Arg::SetEnv(k, v) => push(&[s("--setenv"), k, v]),
            Arg::UnsetEnv(k) => push(&[s("--unsetenv"), k]),
            Arg::JsonStatusFd(fd) => push(&[s("--json-status-fd"), OsStr::new(&fd.to_string())]),
            Arg::RoBindData { fd, dst } => push(&[s("--ro-bind-data"), OsStr::new(&fd.to_string()), dst.as_os_str()]),
        }
    }
}

/// A whole bwrap invocation: options, then the program run inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub args: Vec<Arg>,
    pub command: Vec<OsString>,
}

impl Invocation {
    /// The argument list after `bwrap`, as bwrap would see it.
    pub fn argv(&self) -> Vec<OsString> {
        let mut out = Vec::new();
        for arg in &self.args {
            arg.render(&mut out);
        }
        out.push("--".into());
        out.extend(self.command.iter().cloned());
        out
    }

    /// The options in the NUL-separated form that `bwrap --args FD` reads.
    /// The command is not part of it: bwrap takes the command from its real
    /// argument list only (bubblewrap 0.8 ignores a `--` inside `--args`).
    pub fn encode_options(&self) -> Vec<u8> {
        let mut options = Vec::new();
        for arg in &self.args {
            arg.render(&mut options);
        }
        let mut bytes = Vec::new();
        for arg in options {
            bytes.extend_from_slice(arg.as_bytes());
            bytes.push(0);
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_order_and_encodes_nul_separated() {
        let inv = Invocation {
            args: vec![
                Arg::UnshareNet,
                Arg::RoBind { src: "/".into(), dst: "/".into() },
                Arg::Bind { src: "/w s".into(), dst: "/w s".into() },
                Arg::SetEnv("A".into(), "b c".into()),
                Arg::JsonStatusFd(7),
            ],
            command: vec!["/bin/echo".into(), "hi".into()],
        };
        let expected: Vec<OsString> = [
            "--unshare-net", "--ro-bind", "/", "/", "--bind", "/w s", "/w s", "--setenv", "A", "b c",
            "--json-status-fd", "7", "--", "/bin/echo", "hi",
        ]
        .iter()
        .map(Into::into)
        .collect();
        assert_eq!(inv.argv(), expected);
        assert_eq!(
            inv.encode_options(),
            b"--unshare-net\0--ro-bind\0/\0/\0--bind\0/w s\0/w s\0--setenv\0A\0b c\0--json-status-fd\x007\0"
        );
    }

    #[test]
    fn non_utf8_paths_survive() {
        use std::os::unix::ffi::OsStringExt as _;
        let odd = OsString::from_vec(vec![b'/', 0xff, b'x']);
        let inv = Invocation { args: vec![Arg::Tmpfs(odd.clone().into())], command: vec![] };
        assert_eq!(inv.encode_options(), [b"--tmpfs\0".as_slice(), &[b'/', 0xff, b'x', 0]].concat());
    }
}
