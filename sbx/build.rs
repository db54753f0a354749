//! Builds the kernel programs of `sbx-ebpf` with the nightly toolchain for bpfel-unknown-none
//! and leaves the object in OUT_DIR, where `src/monitor/ebpf.rs` embeds it with
//! `include_bytes_aligned!`; writes `OUT_DIR/long_version`, the text of `sbx --version` (the
//! version, the git commit, the object's hash and the kernel features its programs use).
//!
//! The inner build is aya-build's (the same command, flags and target directory), with its
//! output kept quiet: cargo shows a build script's stderr only when it fails or under `-vv`,
//! and only the eBPF crate's own compiler warnings are relayed as `cargo:warning`.

use std::{
    env,
    ffi::OsString,
    fmt::Write as _,
    fs,
    io::{BufRead as _, BufReader, Read as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

// The cache layout `cargo xtask provision` uses (its libLLVM facts are provisioning's only).
#[path = "../xtask/src/bpf_linker_cache.rs"]
#[allow(dead_code)]
mod bpf_linker_cache;

const EBPF_PACKAGE: &str = "sbx-ebpf";

fn main() {
    if let Err(paragraph) = run() {
        // One paragraph on stderr, which cargo shows under "failed to run custom build
        // command"; no `Error:` prefix and no backtrace.
        eprintln!("\n{paragraph}\n");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR is not set: build.rs runs under cargo")?);
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let ebpf_dir = manifest_dir.join("../sbx-ebpf");
    let path = linker_path()?;
    println!("cargo:rerun-if-changed={}", ebpf_dir.display());
    let object = build_ebpf(&ebpf_dir, &out_dir, path)?;
    let bytes = fs::read(&object).map_err(|e| format!("cannot read the eBPF object {}: {e}", object.display()))?;
    let long_version = format!(
        "{}\ncommit: {}\nebpf: sha256 {}\nkernel: {}",
        env!("CARGO_PKG_VERSION"),
        git_commit(&manifest_dir),
        sha256_hex(&bytes),
        kernel_features(&bytes)?
    );
    // The pinned programs' directory name carries the object's hash (`monitor::pins`).
    let hash = out_dir.join("ebpf_sha256");
    fs::write(&hash, sha256_hex(&bytes)).map_err(|e| format!("cannot write {}: {e}", hash.display()))?;
    let file = out_dir.join("long_version");
    fs::write(&file, long_version).map_err(|e| format!("cannot write {}: {e}", file.display()))
}

/// PATH for the inner build: as it is when it has a working bpf-linker, else with the one
/// `cargo xtask provision` cached for this nightly in front.
fn linker_path() -> Result<OsString, String> {
    let path = env::var_os("PATH").unwrap_or_default();
    if env::split_paths(&path).any(|dir| bpf_linker_cache::works(&dir.join("bpf-linker"))) {
        return Ok(path);
    }
    let advice = "The eBPF programs that sbx embeds are linked by bpf-linker, built against the nightly \
                  toolchain's LLVM: run `cargo xtask provision` once (it installs the nightly's rust-src \
                  and builds bpf-linker into ~/.cache/sbx/bpf-linker), then build again, or put a working \
                  bpf-linker on PATH.";
    let nightly = bpf_linker_cache::Nightly::query().map_err(|e| format!("bpf-linker is not on PATH, and {e}. {advice}"))?;
    let home = bpf_linker_cache::cache_home().map_err(|e| format!("bpf-linker is not on PATH, and {e}. {advice}"))?;
    let bin = nightly.cache_prefix(&home).join("bin");
    if !bpf_linker_cache::works(&bin.join("bpf-linker")) {
        return Err(format!("bpf-linker is not on PATH, nor provisioned for {} in {}. {advice}", nightly.release, bin.display()));
    }
    env::join_paths(std::iter::once(bin).chain(env::split_paths(&path))).map_err(|e| format!("cannot put the provisioned bpf-linker on PATH: {e}"))
}

/// `cargo build` of the eBPF crate for bpfel (or bpfeb), as aya-build runs it; returns the
/// object's path. Cargo's progress goes to our stderr (shown on failure or with `-vv`); the
/// crate's compiler warnings become `cargo:warning`s, its errors go to stderr.
fn build_ebpf(ebpf_dir: &Path, out_dir: &Path, path: OsString) -> Result<PathBuf, String> {
    let endian = env::var("CARGO_CFG_TARGET_ENDIAN").map_err(|_| "CARGO_CFG_TARGET_ENDIAN is not set")?;
    let target = match endian.as_str() {
        "little" => "bpfel-unknown-none",
        "big" => "bpfeb-unknown-none",
        other => return Err(format!("unsupported target endianness {other}")),
    };
    let arch = env::var("CARGO_CFG_TARGET_ARCH").map_err(|_| "CARGO_CFG_TARGET_ARCH is not set")?;
    let arch = if arch.starts_with("riscv64") { "riscv64".to_owned() } else { arch };
    let target_dir = out_dir.join("aya-build/target").join(EBPF_PACKAGE);
    let mut cmd = Command::new("rustup");
    cmd.args(["run", bpf_linker_cache::NIGHTLY, "cargo", "build", "--package", EBPF_PACKAGE, "--bins", "--message-format=json", "--release", "--target", target])
        .args(["-Z", "build-std=core"])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(ebpf_dir)
        .env("PATH", path)
        .env("CARGO_ENCODED_RUSTFLAGS", ["--cfg=bpf_target_arch=\"", &arch, "\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf"].concat())
        // The nightly's own rustc, whatever runs this build.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run rustup to build the eBPF programs: {e}"))?;
    let mut stderr = child.stderr.take().expect("piped");
    let progress = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut executable = None;
    let mut errors = String::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.map_err(|e| format!("cannot read the eBPF build's output: {e}"))?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            eprintln!("{line}");
            continue;
        };
        match message["reason"].as_str() {
            Some("compiler-artifact") if message["target"]["name"] == EBPF_PACKAGE => {
                executable = message["executable"].as_str().map(PathBuf::from);
            }
            Some("compiler-message") => {
                let rendered = message["message"]["rendered"].as_str().unwrap_or_default();
                if message["message"]["level"] == "warning" {
                    for l in rendered.lines() {
                        println!("cargo:warning={l}");
                    }
                } else {
                    errors.push_str(rendered);
                }
            }
            _ => {}
        }
    }
    let status = child.wait().map_err(|e| format!("cannot wait for the eBPF build: {e}"))?;
    let progress = progress.join().unwrap_or_default();
    // Cargo's order: what it compiled, the diagnostics, then its verdict ("error: could not
    // compile").
    let (verdicts, steps): (Vec<&str>, Vec<&str>) = progress.lines().partition(|l| l.starts_with("error"));
    eprint!("{}\n{errors}{}\n", steps.join("\n"), verdicts.join("\n"));
    if !status.success() {
        return Err(format!("building the eBPF programs of {EBPF_PACKAGE} failed ({status}): the inner build's output is above"));
    }
    let executable = executable.ok_or_else(|| format!("the eBPF build of {EBPF_PACKAGE} succeeded but named no executable"))?;
    let object = out_dir.join(EBPF_PACKAGE);
    fs::copy(&executable, &object).map_err(|e| format!("cannot copy {} to {}: {e}", executable.display(), object.display()))?;
    Ok(object)
}

/// The commit sbx is built from (12 hex digits), or why there is none. Rebuilt when HEAD or
/// the branch it names moves.
fn git_commit(dir: &Path) -> String {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git").arg("-C").arg(dir).args(args).stderr(Stdio::null()).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()).filter(|s| !s.is_empty())
    };
    let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown (not built from a git checkout)".into();
    };
    // HEAD's reflog too: a commit on a packed branch creates the loose ref, not yet watched.
    let mut watched = vec!["HEAD".to_owned(), "logs/HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["rev-parse", "--symbolic-full-name", "HEAD"]));
    for name in watched {
        if let Some(file) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name]).filter(|f| Path::new(f).is_file()) {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    commit
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The kernel features the object's programs use, read from the ELF: the program types and
/// their attach points (section names), the notable helpers they call, BTF, and the oldest
/// Linux that offers all of them.
fn kernel_features(elf: &[u8]) -> Result<String, String> {
    let sections = elf_sections(elf)?;
    let mut kinds: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut helpers = std::collections::BTreeSet::new();
    for s in &sections {
        const SHF_EXECINSTR: u64 = 0x4;
        if s.flags & SHF_EXECINSTR == 0 {
            continue;
        }
        if let Some((kind, hook)) = s.name.split_once('/') {
            match kinds.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, hooks)) => hooks.push(hook),
                None => kinds.push((kind, vec![hook])),
            }
        }
        // BPF_JMP | BPF_CALL with src_reg 0: a helper, its number in imm.
        for insn in s.data.chunks_exact(8) {
            if insn[0] == 0x85 && insn[1] >> 4 == 0 {
                helpers.insert(i32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]));
            }
        }
    }
    if kinds.is_empty() {
        return Err("the eBPF object has no program sections".into());
    }
    // (feature, the Linux release that introduced it)
    let mut used: Vec<(String, (u32, u32))> = Vec::new();
    kinds.sort();
    for (kind, mut hooks) in kinds {
        hooks.sort_unstable();
        let since = match kind {
            "tp_btf" | "fentry" | "fexit" => (5, 5),
            "lsm" => (5, 7),
            _ => (4, 18),
        };
        used.push((format!("{kind} ({})", hooks.join(", ")), since));
    }
    if helpers.iter().any(|h| (130..=134).contains(h)) {
        used.push(("ring buffer".into(), (5, 8)));
    }
    if helpers.contains(&181) {
        used.push(("bpf_loop".into(), (5, 17)));
    }
    // bpf_get_attach_cookie, which tp_btf programs may call from 6.10.
    if helpers.contains(&174) {
        used.push(("attach cookie".into(), (6, 10)));
    }
    if sections.iter().any(|s| s.name == ".BTF") {
        used.push(("BTF".into(), (5, 5)));
    }
    let (major, minor) = used.iter().map(|(_, v)| *v).max().unwrap_or((4, 18));
    let names: Vec<&str> = used.iter().map(|(n, _)| n.as_str()).collect();
    Ok(format!("{}; Linux {major}.{minor} or later", names.join(", ")))
}

struct Section<'a> {
    name: &'a str,
    flags: u64,
    data: &'a [u8],
}

/// The sections of a little-endian ELF64 file (what bpfel objects are).
fn elf_sections(elf: &[u8]) -> Result<Vec<Section<'_>>, String> {
    let bad = || "the eBPF object is not a little-endian ELF64 file".to_string();
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Err(bad());
    }
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u64_at = |o: usize| elf.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    let shoff = u64_at(0x28).ok_or_else(bad)? as usize;
    let (shentsize, shnum, shstrndx) = (u16_at(0x3a).ok_or_else(bad)?, u16_at(0x3c).ok_or_else(bad)?, u16_at(0x3e).ok_or_else(bad)?);
    let header = |i: usize| -> Option<(u32, u64, &[u8])> {
        let h = shoff + i * shentsize;
        let name = u32::from_le_bytes(elf.get(h..h + 4)?.try_into().ok()?);
        let kind = u32::from_le_bytes(elf.get(h + 4..h + 8)?.try_into().ok()?);
        const SHT_NOBITS: u32 = 8;
        let (offset, size) = (u64_at(h + 0x18)? as usize, u64_at(h + 0x20)? as usize);
        let data = if kind == SHT_NOBITS { &[][..] } else { elf.get(offset..offset.checked_add(size)?)? };
        Some((name, u64_at(h + 8)?, data))
    };
    let (_, _, names) = header(shstrndx).ok_or_else(bad)?;
    (0..shnum)
        .map(|i| {
            let (name, flags, data) = header(i).ok_or_else(bad)?;
            let name = names.get(name as usize..).and_then(|n| n.split(|&b| b == 0).next()).ok_or_else(bad)?;
            Ok(Section { name: std::str::from_utf8(name).map_err(|_| bad())?, flags, data })
        })
        .collect()
}
