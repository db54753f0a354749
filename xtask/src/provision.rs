//! Host provisioning: idempotent, and nothing comes from anywhere but Debian's
//! package archive, rustup's components, crates.io and (for the tests) npm.
//!
//! - bubblewrap (and, for the tests, the tools they drive) from apt-get;
//! - for the tests, real agent CLIs, pinned: Claude Code, Codex, opencode and
//!   gemini-cli from the npm registry, aider from PyPI (in a virtual
//!   environment), each under `/opt/sbx-test/agents/<name>-<version>`, readable
//!   by everyone (the tests run them as root and as another user, inside
//!   sandboxes), installed once;
//! - the nightly toolchain's `rust-src` component (for `-Z build-std=core`);
//! - bpf-linker 0.13.0 built from crates.io against the nightly toolchain's
//!   own libLLVM, cached under `$XDG_CACHE_HOME/sbx/bpf-linker/<key>`, where
//!   the key names the nightly's version, commit and LLVM version: the binary
//!   is tied to that nightly's libLLVM file name.

use std::{
    ffi::OsString,
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::bpf_linker_cache::{NIGHTLY, Nightly, cache_home, works};

const BPF_LINKER_VERSION: &str = "0.13.0";

/// What the caller is about to do, which decides what must be present.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Build,
    Test,
    Bench,
    /// `cargo xtask dist`: the Debian package.
    Dist,
}

/// Where the provisioned tools are.
pub struct Tools {
    bpf_linker_bin: PathBuf,
    /// The agent CLI the integration tests start (`Needs::Test` only).
    pub claude: Option<PathBuf>,
    /// The other agent CLIs (`Needs::Test` only): the environment variable that
    /// names each for the tests, and its program.
    pub agents: Vec<(&'static str, PathBuf)>,
}

impl Tools {
    /// PATH with the bpf-linker directory in front.
    pub fn path_env(&self) -> OsString {
        let mut paths = vec![self.bpf_linker_bin.clone()];
        if let Some(path) = std::env::var_os("PATH") {
            paths.extend(std::env::split_paths(&path));
        }
        std::env::join_paths(paths).expect("PATH entries never contain ':' here")
    }
}

pub fn host(_root: &Path, needs: Needs) -> Result<Tools> {
    let started = Instant::now();
    // Packages: (program that proves it is installed, Debian package).
    let mut packages: Vec<(&str, &str)> = vec![("bwrap", "bubblewrap")];
    if matches!(needs, Needs::Test | Needs::Dist) {
        // The package (`cargo xtask test` builds and installs it).
        packages.extend([("dpkg-deb", "dpkg"), ("dpkg-shlibdeps", "dpkg-dev"), ("strip", "binutils"), ("gzip", "gzip")]);
    }
    if needs == Needs::Test {
        packages.extend([
            ("man", "man-db"),
            ("git", "git"),
            ("cc", "gcc"),
            ("python3", "python3"),
            ("tmux", "tmux"),
            ("ip", "iproute2"),
            ("strace", "strace"),
            ("sudo", "sudo"),
            ("curl", "curl"),
            ("openssl", "openssl"),
            ("npm", "npm"),
            // git over ssh to a test host under transparent egress (issue 21); Debian's
            // package does not start the service without an init system.
            ("sshd", "openssh-server"),
            // The dashboard's terminal tests compare full-screen programs.
            ("vim", "vim"),
            ("less", "less"),
        ]);
    }
    if needs == Needs::Bench {
        packages.extend([("git", "git"), ("cc", "gcc"), ("make", "make"), ("strace", "strace"), ("bpftrace", "bpftrace")]);
    }
    apt_install_missing(&packages)?;
    if needs == Needs::Bench {
        tracefs()?;
    }
    rust_src()?;
    let mut tools = bpf_linker()?;
    if needs == Needs::Test && is_root() {
        tools.claude = Some(claude_code()?);
        for agent in AGENTS {
            tools.agents.push((agent.env, agent.install()?));
        }
    }
    eprintln!("xtask: provisioned in {:.1?}", started.elapsed());
    Ok(tools)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}

unsafe extern "C" {
    fn geteuid() -> u32;
}

fn apt_install_missing(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        bail!(
            "missing Debian packages {}: run `sudo apt-get install -y {}` and try again",
            missing.join(", "),
            missing.join(" ")
        );
    }
    eprintln!("xtask: apt-get install {}", missing.join(" "));
    let install = |update: bool| -> Result<bool> {
        if update {
            let status = Command::new("apt-get")
                .args(["update", "-q"])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .context("running apt-get update")?;
            if !status.success() {
                bail!("apt-get update failed: {status}");
            }
        }
        let status = Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get install")?;
        Ok(status.success())
    };
    // A fresh machine may have stale package lists: update only when needed.
    if !install(false)? && !install(true)? {
        bail!("apt-get install {} failed", missing.join(" "));
    }
    Ok(())
}

/// bpftrace's tracepoints (fence's approach, in the monitor bench) need
/// tracefs; sbx's own tracer does not.
fn tracefs() -> Result<()> {
    if Path::new("/sys/kernel/tracing/events").is_dir() || !is_root() {
        return Ok(());
    }
    let status = Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"]).status().context("running mount")?;
    if !status.success() {
        bail!("mount -t tracefs tracefs /sys/kernel/tracing failed: {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    String::from_utf8(out.stdout).with_context(|| format!("{cmd:?} printed non-UTF-8"))
}

const CLAUDE_CODE_VERSION: &str = "2.1.197";

/// Claude Code from the npm registry, pinned, installed without running its
/// install scripts; the native binary of its linux-x64 package is the CLI.
fn claude_code() -> Result<PathBuf> {
    let dir = PathBuf::from(format!("/opt/sbx-test/agents/claude-code-{CLAUDE_CODE_VERSION}"));
    let bin = dir.join("node_modules/@anthropic-ai/claude-code-linux-x64/claude");
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!("xtask: npm install @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION} into {}", dir.display());
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let status = Command::new("npm")
        .args(["install", "--ignore-scripts", "--no-audit", "--no-fund", "--os=linux", "--cpu=x64", "--prefix"])
        .arg(&dir)
        .arg(format!("@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}"))
        .status()
        .context("running npm install")?;
    if !status.success() || !bin.is_file() {
        bail!("npm install @anthropic-ai/claude-code@{CLAUDE_CODE_VERSION} did not install {}", bin.display());
    }
    // Readable and runnable by the tests' unprivileged user.
    let status = Command::new("chmod").args(["-R", "a+rX", "/opt/sbx-test"]).status().context("running chmod")?;
    if !status.success() {
        bail!("chmod -R a+rX /opt/sbx-test failed");
    }
    Ok(bin)
}

/// Where an agent comes from.
enum Source {
    /// An npm package, installed without its install scripts, for linux-x64.
    Npm(&'static str),
    /// A PyPI package, installed into a virtual environment of Debian's python3 (a
    /// python under /root would not run for the tests' other user, nor in a sandbox
    /// that hides /root).
    PyPi(&'static str),
}

/// An agent CLI the integration tests start under the coding templates.
struct Agent {
    /// The directory's name: `/opt/sbx-test/agents/<name>-<version>`.
    name: &'static str,
    version: &'static str,
    source: Source,
    /// The program, relative to the directory.
    bin: &'static str,
    /// The variable that gives the tests its path.
    env: &'static str,
}

/// First installs measured here with empty npm and pip caches: codex 10 s (424 MB: its
/// musl binary and voice resources), opencode 11 s (354 MB), gemini-cli 5 s, aider 129 s
/// (pip, about 150 packages; 69 s with pip's cache); later runs find them in place.
const AGENTS: &[Agent] = &[
    Agent {
        name: "codex",
        version: "0.171.0",
        source: Source::Npm("@openai/codex"),
        bin: "node_modules/@openai/codex/bin/codex.js",
        env: "SBX_TEST_CODEX",
    },
    Agent {
        name: "opencode",
        version: "1.18.33",
        source: Source::Npm("opencode-ai"),
        bin: "node_modules/opencode-linux-x64/bin/opencode",
        env: "SBX_TEST_OPENCODE",
    },
    Agent {
        name: "gemini-cli",
        version: "0.61.0",
        source: Source::Npm("@google/gemini-cli"),
        bin: "node_modules/@google/gemini-cli/bundle/gemini.js",
        env: "SBX_TEST_GEMINI",
    },
    Agent {
        name: "aider",
        version: "0.86.2",
        source: Source::PyPi("aider-chat"),
        bin: "bin/aider",
        env: "SBX_TEST_AIDER",
    },
];

/// Written last: a directory without it is an interrupted install, made again.
const INSTALLED: &str = ".sbx-installed";

impl Agent {
    /// Installs the agent unless it is there already; its program.
    fn install(&self) -> Result<PathBuf> {
        let dir = PathBuf::from(format!("/opt/sbx-test/agents/{}-{}", self.name, self.version));
        let bin = dir.join(self.bin);
        if dir.join(INSTALLED).is_file() && bin.is_file() {
            return Ok(bin);
        }
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("removing the interrupted install {}", dir.display()))?;
        }
        let started = Instant::now();
        let spec = match self.source {
            Source::Npm(package) => format!("{package}@{}", self.version),
            Source::PyPi(package) => format!("{package}=={}", self.version),
        };
        eprintln!("xtask: installing {spec} into {}", dir.display());
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        match self.source {
            Source::Npm(_) => {
                let status = Command::new("npm")
                    .args(["install", "--ignore-scripts", "--no-audit", "--no-fund", "--os=linux", "--cpu=x64", "--prefix"])
                    .arg(&dir)
                    .arg(&spec)
                    .status()
                    .context("running npm install")?;
                if !status.success() {
                    bail!("npm install {spec} failed: {status}");
                }
            }
            Source::PyPi(_) => {
                // Debian's python3 makes virtual environments with python3-venv only.
                let has_venv = Command::new("/usr/bin/python3").args(["-c", "import ensurepip"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
                if !has_venv {
                    let status = Command::new("apt-get")
                        .args(["install", "-y", "-q", "--no-install-recommends", "python3-venv"])
                        .env("DEBIAN_FRONTEND", "noninteractive")
                        .status()
                        .context("running apt-get install python3-venv")?;
                    if !status.success() {
                        bail!("apt-get install python3-venv failed: {status}");
                    }
                }
                let status = Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(&dir).status().context("running python3 -m venv")?;
                if !status.success() {
                    bail!("/usr/bin/python3 -m venv {} failed: {status} (Debian's python3-venv is needed)", dir.display());
                }
                let status = Command::new(dir.join("bin/pip"))
                    .args(["install", "--no-input", "--quiet", "--disable-pip-version-check"])
                    .arg(&spec)
                    .status()
                    .context("running pip install")?;
                if !status.success() {
                    bail!("pip install {spec} failed: {status}");
                }
            }
        }
        if !bin.is_file() {
            bail!("installing {spec} did not install {}", bin.display());
        }
        // Readable and runnable by the tests' unprivileged user.
        let status = Command::new("chmod").args(["-R", "a+rX"]).arg(&dir).status().context("running chmod")?;
        if !status.success() {
            bail!("chmod -R a+rX {} failed", dir.display());
        }
        fs::write(dir.join(INSTALLED), &spec).with_context(|| format!("writing {}", dir.join(INSTALLED).display()))?;
        eprintln!("xtask: installed {spec} in {:.1?}", started.elapsed());
        Ok(bin)
    }
}

fn rust_src() -> Result<()> {
    let installed = output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", NIGHTLY]))
        .context("the nightly toolchain is needed to build the eBPF programs (`rustup toolchain install nightly`)")?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        return Ok(());
    }
    eprintln!("xtask: rustup component add rust-src --toolchain {NIGHTLY}");
    let status = Command::new("rustup")
        .args(["component", "add", "rust-src", "--toolchain", NIGHTLY])
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!("rustup component add rust-src --toolchain {NIGHTLY} failed: {status}");
    }
    Ok(())
}

/// The nightly's LLVM major version, for bpf-linker's `llvm-<major>` feature.
fn llvm_major(nightly: &Nightly) -> Result<&str> {
    nightly
        .llvm
        .split('.')
        .next()
        .filter(|m| !m.is_empty())
        .with_context(|| format!("unexpected LLVM version {:?}", nightly.llvm))
}

/// The nightly's own shared libLLVM: `libLLVM.so.<ver>-rust-<release>`.
fn libllvm(nightly: &Nightly) -> Result<PathBuf> {
    let lib = nightly.sysroot.join("lib");
    let wanted = format!("-rust-{}", nightly.release);
    for entry in fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("libLLVM.so.") && name.ends_with(&wanted) {
            return Ok(lib.join(&*name));
        }
    }
    bail!("no libLLVM.so.*{wanted} in {}: this nightly does not ship a shared libLLVM", lib.display())
}

fn bpf_linker() -> Result<Tools> {
    let nightly = Nightly::query().map_err(anyhow::Error::msg)?;
    let prefix = nightly.cache_prefix(&cache_home().map_err(anyhow::Error::msg)?);
    let bin_dir = prefix.join("bin");
    let tools = Tools { bpf_linker_bin: bin_dir.clone(), claude: None, agents: Vec::new() };
    let linker = bin_dir.join("bpf-linker");
    if works(&linker) {
        return Ok(tools);
    }

    // bpf-linker's RUNPATH is <LLVM_PREFIX>/lib, and it links against the
    // exact soname: both names must point at the nightly's libLLVM, or the
    // build succeeds and the binary fails to start.
    let libllvm = libllvm(&nightly)?;
    let llvm_lib = prefix.join("llvm/lib");
    fs::create_dir_all(&llvm_lib).with_context(|| format!("creating {}", llvm_lib.display()))?;
    let soname = libllvm.file_name().context("libLLVM path has no file name")?;
    for link in [llvm_lib.join("libLLVM.so"), llvm_lib.join(soname)] {
        let _ = fs::remove_file(&link);
        symlink(&libllvm, &link).with_context(|| format!("linking {}", link.display()))?;
    }

    let feature = format!("llvm-{}", llvm_major(&nightly)?);
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} ({feature}, against {}) into {} (about a minute, once per nightly)",
        libllvm.display(),
        prefix.display()
    );
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        // Outside the workspace so that its .cargo/config.toml does not apply.
        .current_dir(&prefix)
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION, "--locked", "--force", "--no-default-features", "--features", &feature, "--root"])
        .arg(&prefix)
        .env("LLVM_PREFIX", prefix.join("llvm"))
        .env("CARGO_TARGET_DIR", prefix.join("build"))
        .status()
        .context("running cargo install bpf-linker")?;
    if !status.success() {
        bail!("cargo install bpf-linker {BPF_LINKER_VERSION} failed: {status}");
    }
    let _ = fs::remove_dir_all(prefix.join("build"));
    if !works(&linker) {
        bail!("{} was built but does not start (`bpf-linker --version` failed)", linker.display());
    }
    Ok(tools)
}
