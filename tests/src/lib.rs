//! Harness for sbx's integration tests: they run the real `sbx` binary (from
//! `SBX_BIN`, set by `cargo xtask test`) with real bubblewrap, Landlock,
//! seccomp and eBPF, as root and as an unprivileged user, and check effects
//! from the host side.
//!
//! A test that cannot run here says why, loudly; under `CI=true` that is a
//! failure, because CI runs on a machine that supports everything.

use std::{
    ffi::OsStr,
    os::unix::{
        fs::{DirBuilderExt as _, PermissionsExt as _},
        process::CommandExt as _,
    },
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
    time::Duration,
};

/// Skips the current test with a reason, or fails it under CI.
#[macro_export]
macro_rules! skip {
    ($($why:tt)*) => {{
        let why = format!($($why)*);
        if $crate::under_ci() {
            panic!("cannot run under CI: {why}");
        }
        eprintln!("SKIPPED: {why}");
        return;
    }};
}

pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The sbx binary under test.
pub fn sbx_bin() -> PathBuf {
    let bin = std::env::var_os("SBX_BIN")
        .map(PathBuf::from)
        .expect("SBX_BIN is not set: run the integration tests through `cargo xtask test`");
    assert!(bin.is_file(), "SBX_BIN={} does not exist", bin.display());
    bin
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

/// Asserts that a program the test drives exists: a missing tool is a test
/// error, never a pass.
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed; `cargo xtask test` provisions it"))
}

/// The unprivileged account the tests use, created once (as root).
pub struct TestUser {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
}

pub fn test_user() -> &'static TestUser {
    static USER: OnceLock<TestUser> = OnceLock::new();
    USER.get_or_init(|| {
        let name = "sbx-test";
        let id = |flag: &str| -> Option<u32> {
            let out = Command::new("id").args([flag, name]).output().ok()?;
            if !out.status.success() {
                return None;
            }
            String::from_utf8_lossy(&out.stdout).trim().parse().ok()
        };
        if id("-u").is_none() {
            let status = Command::new("useradd")
                .args(["--create-home", "--shell", "/bin/sh", "--user-group", name])
                .status()
                .expect("useradd");
            assert!(status.success() || id("-u").is_some(), "useradd {name} failed");
        }
        let home = PathBuf::from(format!("/home/{name}"));
        std::fs::create_dir_all(&home).unwrap();
        let (uid, gid) = (id("-u").unwrap(), id("-g").unwrap());
        chown(&home, uid, gid);
        TestUser { name, uid, gid, home }
    })
}

pub fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// A copy of the sbx binary that any user can execute, under /tmp:
/// unprivileged runs cannot reach a build tree under /root, and it proves
/// that sbx works when installed under /tmp.
///
/// One directory per user (`/tmp/sbx-it-bin-<uid>`) holds one copy per
/// build, named by the build's size and modification time, so every test
/// binary of a run shares one copy and runs leave no trail (copies of other
/// builds are removed once they are an hour old: a concurrent run from
/// another tree may still be using a newer one).
pub fn public_sbx() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        use std::os::unix::fs::MetadataExt as _;
        let src = sbx_bin();
        let meta = std::fs::metadata(&src).unwrap();
        // SAFETY: geteuid cannot fail and touches no memory.
        let uid = unsafe { libc::geteuid() };
        let dir = PathBuf::from(format!("/tmp/sbx-it-bin-{uid}"));
        match std::fs::DirBuilder::new().mode(0o755).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => panic!("create {}: {e}", dir.display()),
        }
        let dmeta = std::fs::symlink_metadata(&dir).unwrap();
        assert!(
            dmeta.is_dir() && dmeta.uid() == uid && dmeta.mode() & 0o022 == 0,
            "{} is not a directory of ours that only we may write: remove it",
            dir.display()
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let name = format!("sbx-{}-{}.{}", meta.len(), meta.mtime(), meta.mtime_nsec());
        let bin = dir.join(&name);
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let old = entry.file_name();
            let stale = entry.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| t.elapsed().ok());
            if old != *name && stale.is_some_and(|age| age.as_secs() > 3600) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        if std::fs::metadata(&bin).ok().map(|m| m.len()) != Some(meta.len()) {
            let part = dir.join(format!(".{name}.{}", std::process::id()));
            std::fs::copy(&src, &part).unwrap();
            std::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::rename(&part, &bin).unwrap();
        }
        bin
    })
    .clone()
}

/// Who runs sbx.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum As {
    Root,
    User,
}

/// A workspace directory for one test, owned by whoever runs sbx in it.
pub struct Workspace {
    dir: tempfile::TempDir,
    pub who: As,
}

impl Workspace {
    /// A fresh workspace under `parent` (default: the system temp dir).
    pub fn new(who: As) -> Self {
        Self::new_in(who, std::env::temp_dir())
    }

    pub fn new_in(who: As, parent: impl AsRef<Path>) -> Self {
        let dir = tempfile::Builder::new().prefix("sbx-it-ws").tempdir_in(parent).unwrap();
        if who == As::User {
            let u = test_user();
            chown(dir.path(), u.uid, u.gid);
        }
        Self { dir, who }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file in the workspace (as its owner).
    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let p = self.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
            if self.who == As::User {
                let u = test_user();
                let mut d = parent.to_path_buf();
                while d.starts_with(self.path()) {
                    chown(&d, u.uid, u.gid);
                    if !d.pop() {
                        break;
                    }
                }
            }
        }
        std::fs::write(&p, contents).unwrap();
        if self.who == As::User {
            let u = test_user();
            chown(&p, u.uid, u.gid);
        }
        p
    }

    /// `sbx ARGS` run in this workspace, as its owner, stdin closed.
    pub fn sbx<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let bin = match self.who {
            As::Root => sbx_bin(),
            As::User => public_sbx(),
        };
        self.sbx_at(&bin, args)
    }

    /// Like `sbx`, with the binary at `bin` (to test install locations).
    pub fn sbx_at<I, S>(&self, bin: &Path, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(bin);
        cmd.args(args).current_dir(self.path()).stdin(Stdio::null());
        // sbx's private directories under the home of whoever runs it, the
        // same on every machine (session_start's denyRead names them).
        cmd.env_remove("XDG_RUNTIME_DIR").env_remove("XDG_STATE_HOME");
        if self.who == As::User {
            let u = test_user();
            cmd.env("HOME", &u.home).env("USER", u.name).env_remove("XDG_CONFIG_HOME");
            as_test_user(&mut cmd);
        }
        cmd
    }

    /// Runs `sbx run -- sh -c SCRIPT` here and returns its output.
    pub fn run_sh(&self, script: &str) -> Output {
        self.sbx(["run", "--", "/bin/sh", "-c", script]).output().expect("start sbx")
    }
}

/// Makes `cmd` run as the test user (uid, gid, no supplementary groups).
pub fn as_test_user(cmd: &mut Command) -> &mut Command {
    let u = test_user();
    let (uid, gid) = (u.uid, u.gid);
    // SAFETY: setgroups, setgid and setuid between fork and exec are
    // async-signal-safe. std's uid()/gid() would switch before our
    // hook runs, and an unprivileged setgroups fails; so all three
    // happen here, in the order that works.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// A sudoers entry that lets the test user run `program` as root without a password,
/// removed when dropped.
pub struct SudoRule(PathBuf);

impl SudoRule {
    pub fn allow(program: &Path) -> SudoRule {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = PathBuf::from(format!("/etc/sudoers.d/sbx-it-{}-{n}", std::process::id()));
        std::fs::write(&path, format!("{} ALL=(root) NOPASSWD: {}\n", test_user().name, program.display())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o440)).unwrap();
        SudoRule(path)
    }
}

impl Drop for SudoRule {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Output as text, for assertions with context.
pub fn text(out: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Skips (or, under CI, fails) a test when not running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            $crate::skip!("needs root: it runs sandboxes as root and as another user, and loads eBPF programs");
        }
    };
}

/// Reads a JSON Lines log.
pub fn read_log(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}"))).collect()
}

/// An event with its volatile fields removed (times, ids, durations, the
/// version, `seq`, which depends on how many process events came between)
/// and the workspace path replaced by `$WS`, for golden files.
pub fn normalize_event(event: &serde_json::Value, workspace: &Path) -> serde_json::Value {
    let ws = workspace.to_string_lossy().into_owned();
    fn walk(v: &mut serde_json::Value, ws: &str) {
        match v {
            serde_json::Value::Object(map) => {
                for key in ["time", "pid", "tid", "duration_ms", "sbx_version", "seq", "client", "mac", "mac_key"] {
                    map.remove(key);
                }
                for (_, child) in map.iter_mut() {
                    walk(child, ws);
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|i| walk(i, ws)),
            serde_json::Value::String(s) if s.contains(ws) => *s = s.replace(ws, "$WS"),
            // session_start's home is the environment's, not the test's.
            serde_json::Value::String(s) if std::env::var("HOME").is_ok_and(|h| !h.is_empty() && *s == h) => *s = "$HOME".into(),
            // sbx's state directory, hidden in every session's view.
            serde_json::Value::String(s) if std::env::var("HOME").is_ok_and(|h| !h.is_empty() && s.starts_with(&format!("{h}/.local/state/sbx"))) => {
                let h = std::env::var("HOME").unwrap_or_default();
                *s = s.replacen(&h, "$HOME", 1);
            }
            _ => {}
        }
    }
    let mut v = event.clone();
    walk(&mut v, &ws);
    v
}

/// Compares `actual` lines with the golden file `tests/golden/NAME`; with
/// `SBX_BLESS=1` rewrites the file instead.
pub fn assert_golden(name: &str, actual: &[serde_json::Value]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("golden").join(name);
    let rendered: String = actual.iter().map(|v| format!("{}\n", serde_json::to_string(v).unwrap())).collect();
    if std::env::var_os("SBX_BLESS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("golden file {}: {e} (SBX_BLESS=1 writes it)", path.display()));
    for (i, (got, want)) in rendered.lines().zip(expected.lines()).enumerate() {
        assert_eq!(got, want, "line {} differs from {}", i + 1, path.display());
    }
    assert_eq!(rendered.lines().count(), expected.lines().count(), "the number of events differs from {}:\n{rendered}", path.display());
}

/// Checks the output of `tests/fixtures/blocked.c` (one `name result` line
/// per call): every blocked call failed with EPERM, clone3 with ENOSYS (so
/// that libc falls back to clone), and the allowed calls worked. Returns
/// the number of calls reported.
pub fn assert_blocked_calls(stdout: &str, who: As) -> usize {
    let mut seen = 0;
    for line in stdout.lines() {
        let (name, result) = line.split_once(' ').unwrap_or_else(|| panic!("{who:?}: bad line {line:?}"));
        let expected = match name {
            "clone3" => "ENOSYS",
            "getpid" | "personality_query" => "OK",
            _ => "EPERM",
        };
        assert_eq!(result, expected, "{who:?}: {name}");
        seen += 1;
    }
    seen
}

/// A Python script that fetches `argv[1]` through $HTTP_PROXY and exits 0
/// when the body is `ok\n`. (Python rather than curl: curl's glibc probes
/// nscd with socket(AF_UNIX), which the seccomp deny list refuses and
/// reports, and which no policy change answers.)
pub const FETCH_PY: &str = "import os, sys, urllib.request\n\
for k in ('NO_PROXY', 'no_proxy'): os.environ.pop(k, None)\n\
o = urllib.request.build_opener(urllib.request.ProxyHandler({'http': os.environ['HTTP_PROXY']}))\n\
sys.exit(0 if o.open(sys.argv[1], timeout=60).read() == b'ok\\n' else 1)\n";

/// A plain HTTP server on the host's loopback that answers every request
/// with `ok` and counts the connections it accepted.
pub fn http_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
        }
    });
    (port, hits)
}

/// Seals a recorded log (one writer) the way sbx documents it (`sbx::seal`,
/// the schema's `mac_key` and `mac`), with a fresh key stored in `keys`
/// (`<state>/keys` of the home sbx will run with): written independently of
/// sbx, so that `sbx log verify` accepting it checks the documented scheme.
pub fn seal_log(raw: &str, keys: &Path) -> String {
    use hmac::{Hmac, Mac as _};
    std::fs::create_dir_all(keys).unwrap();
    let mut dir = keys.to_path_buf();
    // sbx wants its state directories private.
    for _ in 0..2 {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        dir.pop();
    }
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut key = [0u8; 32];
    let mut id = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| {
        use std::io::Read as _;
        f.read_exact(&mut key)?;
        f.read_exact(&mut id)
    })
    .unwrap();
    let id = hex(&id);
    let mut prev = [0u8; 32];
    let mut out = String::new();
    let mut n = 0u64;
    for (i, line) in raw.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let mut body = line.trim().to_string();
        if i == 0 {
            body.insert_str(1, &format!("\"mac_key\":\"{id}\","));
        }
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        m.update(&prev);
        m.update(body.as_bytes());
        prev = m.finalize().into_bytes().into();
        body.pop();
        out.push_str(&format!("{body},\"mac\":\"{}\"}}\n", hex(&prev)));
        n += 1;
    }
    let key_file = keys.join(&id);
    std::fs::write(&key_file, format!("{}\n{n:020} {}\n", hex(&key), hex(&prev))).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    out
}

/// A tmux session running a command on a terminal of its own: the test reads the screen
/// and sends keys; the session is killed when dropped.
pub struct Tmux {
    pub session: String,
}

impl Tmux {
    /// A detached tmux session of `cols` x `rows` running `shell`.
    pub fn start(name: &str, cols: u16, rows: u16, shell: &str) -> Self {
        let t = Tmux { session: format!("sbx-{name}-{}", std::process::id()) };
        let (x, y) = (cols.to_string(), rows.to_string());
        assert!(Command::new("tmux").args(["new-session", "-d", "-s", &t.session, "-x", &x, "-y", &y, shell]).status().unwrap().success());
        t
    }
    /// The screen's rows, trailing blanks removed.
    pub fn rows(&self) -> Vec<String> {
        self.screen().lines().map(|l| l.trim_end().to_string()).collect()
    }
    pub fn resize(&self, cols: u16, rows: u16) {
        self.tmux(&["resize-window", "-t", &self.session, "-x", &cols.to_string(), "-y", &rows.to_string()]);
    }
    pub fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(args).output().expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-t", &self.session, "-p"])
    }
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }
    /// Waits (polling the screen) until `pred` holds; panics with the
    /// screen after a generous bound. The test waits; sbx never sleeps.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        for _ in 0..200 {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}; the screen:\n{}", self.screen());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.session]).status();
    }
}
