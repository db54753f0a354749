//! Where provisioning caches bpf-linker: `$XDG_CACHE_HOME/sbx/bpf-linker/<key>/bin`, where the
//! key names the nightly's version, commit and LLVM version (the binary is tied to that
//! nightly's libLLVM). Shared, as this one file, by `cargo xtask provision` (which builds it
//! there) and `sbx/build.rs` (which looks for it there when no bpf-linker is on PATH, so that
//! plain `cargo build` works once provisioning has run): std only, errors as sentences.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// The toolchain that builds the eBPF programs.
pub const NIGHTLY: &str = "nightly";

/// The facts of the nightly toolchain that a bpf-linker build depends on.
pub struct Nightly {
    pub release: String,
    pub commit: String,
    pub llvm: String,
    pub sysroot: PathBuf,
}

impl Nightly {
    /// Asks the nightly's rustc (through rustup, whatever toolchain runs the caller).
    pub fn query() -> Result<Self, String> {
        let vv = nightly_rustc(&["-vV"])?;
        let field = |name: &str| {
            vv.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
                .ok_or_else(|| format!("`rustup run {NIGHTLY} rustc -vV` has no `{name}` line"))
        };
        let sysroot = nightly_rustc(&["--print", "sysroot"])?;
        Ok(Self {
            release: field("release:")?,
            commit: field("commit-hash:")?.chars().take(9).collect(),
            llvm: field("LLVM version:")?,
            sysroot: PathBuf::from(sysroot.trim()),
        })
    }

    pub fn cache_key(&self) -> String {
        format!("{}-{}-llvm{}", self.release, self.commit, self.llvm)
    }

    /// `<cache home>/sbx/bpf-linker/<key>`: bpf-linker is in its `bin`.
    pub fn cache_prefix(&self, cache_home: &Path) -> PathBuf {
        cache_home.join("sbx/bpf-linker").join(self.cache_key())
    }
}

fn nightly_rustc(args: &[&str]) -> Result<String, String> {
    let out = Command::new("rustup")
        .args(["run", NIGHTLY, "rustc"])
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run rustup ({e}): the eBPF programs are built with rustup's {NIGHTLY} toolchain"))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        // rustup's first line says why ("toolchain 'nightly-...' is not installed").
        let why = why.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("no reason given");
        return Err(format!("`rustup run {NIGHTLY} rustc {}` failed ({why})", args.join(" ")));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("`rustup run {NIGHTLY} rustc {}` printed non-UTF-8", args.join(" ")))
}

/// `$XDG_CACHE_HOME`, else `$HOME/.cache`.
pub fn cache_home() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).ok_or("neither XDG_CACHE_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".cache"))
}

/// Whether `linker --version` runs and succeeds.
pub fn works(linker: &Path) -> bool {
    Command::new(linker)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
