//! Hidden paths stay hidden when the host replaces them, and the sandbox's own
//! `/etc/resolv.conf` and `/etc/hosts` (transparent egress) stay its own.
//!
//! A denyRead file is hidden by a mount over it in the sandbox's mount namespace. When a
//! program on the host replaces it (an editor that saves by writing a new file and
//! renaming it over the old one, `passwd` rewriting `/etc/shadow`), the kernel detaches
//! that mount, and the new file would be readable in the running sandbox. The session
//! watches the directories of the hidden paths (`missing::Watch`) and, for a path whose
//! file changed, asks the *masker* to hide it again. sbx (multi-threaded, so unable to
//! enter a user or mount namespace) starts it, on the first need, as a copy of itself
//! that joins the sandbox's user and mount namespaces; for each request it opens the path
//! as the sandbox sees it, checks that it is the very file the host has there now (device
//! and inode: a path the command redirected with a symlink cannot make it mount over
//! anything else), and mounts a fresh empty mask over it, read-only, with mode 000, as the
//! launch does: a file from a tmpfs of its own (cloned from a detached mount, Linux 6.15),
//! a directory as an empty tmpfs; a file sbx gave the sandbox (its `/etc/resolv.conf`)
//! as a new file with that content, read-only. It joins no pid namespace, so no process
//! of the sandbox can see or signal it; it holds nothing but the masks.

use std::{
    ffi::OsStr,
    io::{self, Read as _, Write as _},
    os::{
        fd::{AsFd as _, OwnedFd},
        unix::{ffi::OsStrExt as _, fs::MetadataExt as _, net::UnixStream},
    },
    path::{Path, PathBuf},
};

use crate::sys;

/// The first argument that makes `sbx` run as the masker.
pub const MASKER_ARG: &str = "__sbx_masker";

/// A request: kind, device, inode, the path's length, the content's length; then the path
/// and the content.
const HEAD: usize = 1 + 8 + 8 + 4 + 4;
const KIND_FILE: u8 = 0;
const KIND_DIR: u8 = 1;
const KIND_CONTENT: u8 = 2;
/// The longest content a request carries (sbx's resolv.conf and hosts are a few lines).
const MAX_CONTENT: usize = 64 * 1024;

/// A file of the host's, at a hidden path: what the sandbox must not see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
    pub dir: bool,
}

impl Target {
    /// What is at `path` on the host now (following a symlink, as the launch's mask
    /// does), `None` when nothing is.
    pub fn at(path: &Path) -> Option<Target> {
        let m = std::fs::metadata(path).ok()?;
        Some(Target { path: path.to_path_buf(), dev: m.dev(), ino: m.ino(), dir: m.is_dir() })
    }

    /// [`Target::at`], named by the real path of its directory (symlinks above it
    /// resolved now).
    pub fn at_real(path: &Path) -> Option<Target> {
        let real = std::fs::canonicalize(path.parent()?).ok()?.join(path.file_name()?);
        Some(Target { path: real.clone(), ..Self::at(&real)? })
    }

    /// The same file as `other`.
    pub fn same_file(&self, other: &Target) -> bool {
        (self.dev, self.ino) == (other.dev, other.ino)
    }
}

/// A running masker: one request at a time, each answered before the next.
pub struct Masker {
    sock: UnixStream,
    child: std::process::Child,
}

/// What the masker did about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Masked {
    /// A mask is over the file now.
    Hidden,
    /// The sandbox does not see that file at the path (it is hidden already, or the path
    /// leads elsewhere there): nothing to do.
    NotSeen,
}

impl Masker {
    /// Starts the masker for the sandbox whose pid 1 is `init` (host pid).
    pub fn spawn(init: i32) -> io::Result<Self> {
        let (ours, child) = super::helper::spawn(MASKER_ARG, init)?;
        ours.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
        Ok(Self { sock: ours, child })
    }

    /// Hides `target` inside the sandbox: under an empty mask, or under a read-only file
    /// holding `content`. Blocking (well under a millisecond).
    pub fn hide(&mut self, target: &Target, content: Option<&[u8]>) -> io::Result<Masked> {
        let path = target.path.as_os_str().as_bytes();
        let mut req = Vec::with_capacity(HEAD + path.len() + content.map_or(0, <[u8]>::len));
        req.push(match (target.dir, content) {
            (true, _) => KIND_DIR,
            (false, None) => KIND_FILE,
            (false, Some(_)) => KIND_CONTENT,
        });
        req.extend_from_slice(&target.dev.to_le_bytes());
        req.extend_from_slice(&target.ino.to_le_bytes());
        req.extend_from_slice(&u32::try_from(path.len()).map_err(io::Error::other)?.to_le_bytes());
        req.extend_from_slice(&u32::try_from(content.map_or(0, <[u8]>::len)).map_err(io::Error::other)?.to_le_bytes());
        req.extend_from_slice(path);
        req.extend_from_slice(content.unwrap_or_default());
        self.sock.write_all(&req)?;
        let mut answer = [0u8; 4];
        self.sock.read_exact(&mut answer)?;
        match i32::from_le_bytes(answer) {
            1 => Ok(Masked::Hidden),
            0 => Ok(Masked::NotSeen),
            errno => Err(io::Error::from_raw_os_error(-errno)),
        }
    }
}

impl Drop for Masker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The masker's entry point: `sbx __sbx_masker INIT_PID FD`.
pub fn main(init: &OsStr, fd: &OsStr) -> ! {
    super::helper::main("masker of hidden paths", init, fd, serve)
}

fn serve(init: i32, mut sock: UnixStream) -> io::Result<()> {
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, "a bad request to the masker");
    super::helper::join(init, "mnt", libc::CLONE_NEWNS)?;
    // The file masks are clones of one empty file with mode 000 on a tmpfs of our own.
    let files = sys::mount::detached_tmpfs("0", false)?;
    sys::mount::create_empty_file(files.as_fd(), "m")?;
    loop {
        let mut head = [0u8; HEAD];
        if sock.read_exact(&mut head).is_err() {
            return Ok(());
        }
        let kind = head[0];
        let dev = u64::from_le_bytes(head[1..9].try_into().expect("8 bytes"));
        let ino = u64::from_le_bytes(head[9..17].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(head[17..21].try_into().expect("4 bytes")) as usize;
        let content_len = u32::from_le_bytes(head[21..25].try_into().expect("4 bytes")) as usize;
        if len > libc::PATH_MAX as usize || content_len > MAX_CONTENT || kind > KIND_CONTENT {
            return Err(bad());
        }
        let mut path = vec![0u8; len];
        sock.read_exact(&mut path)?;
        let mut content = vec![0u8; content_len];
        sock.read_exact(&mut content)?;
        let target = Target { path: PathBuf::from(OsStr::from_bytes(&path)), dev, ino, dir: kind == KIND_DIR };
        let answer: i32 = match hide(&target, (kind == KIND_CONTENT).then_some(content.as_slice()), &files) {
            Ok(Masked::Hidden) => 1,
            Ok(Masked::NotSeen) => 0,
            Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
        };
        sock.write_all(&answer.to_le_bytes())?;
    }
}

/// Inside the sandbox's mount namespace: a mask over `target`, if the sandbox sees that
/// very file there.
fn hide(target: &Target, content: Option<&[u8]>, files: &OwnedFd) -> io::Result<Masked> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let seen = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH).open(&target.path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Masked::NotSeen),
        Err(e) => return Err(e),
    };
    let m = seen.metadata()?;
    if (m.dev(), m.ino()) != (target.dev, target.ino) || m.is_dir() != target.dir {
        return Ok(Masked::NotSeen);
    }
    let mask = match (target.dir, content) {
        (true, _) => sys::mount::detached_tmpfs("0", true)?,
        (false, None) => sys::mount::clone_locked_down(files.as_fd(), "m")?,
        (false, Some(content)) => {
            let fs = sys::mount::detached_tmpfs("0755", false)?;
            sys::mount::create_file_with(fs.as_fd(), "f", content)?;
            sys::mount::clone_locked_down(fs.as_fd(), "f")?
        }
    };
    sys::mount::move_mount_onto(mask.as_fd(), seen.as_fd())?;
    Ok(Masked::Hidden)
}
