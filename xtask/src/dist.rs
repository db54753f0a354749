//! `cargo xtask dist`: the release build of sbx packaged as a Debian package, with dpkg-deb
//! (no cargo-deb to install): `target/debian/sbx_<version>_<arch>.deb` with
//!
//! - `/usr/bin/sbx` (stripped);
//! - `/usr/share/man/man1/sbx.1.gz` and a page per subcommand (`sbx man --out-dir`);
//! - the completions where bash-completion, zsh and fish look for a package's
//!   (`sbx completions bash|zsh|fish`);
//! - `/usr/share/doc/sbx/copyright`;
//!
//! depending on bubblewrap and on the shared libraries dpkg-shlibdeps finds.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// Debian's name for the package (and the binary).
const PACKAGE: &str = "sbx";

/// Builds the package from the release binary `bin`; returns its path.
pub fn deb(root: &Path, bin: &Path) -> Result<PathBuf> {
    let version = package_version(root)?;
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"))?.trim().to_owned();
    let out_dir = root.join("target/debian");
    let stage = out_dir.join(format!("{PACKAGE}_{version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }

    fs::create_dir_all(&stage)?;
    fs::set_permissions(&stage, fs::Permissions::from_mode(0o755))?;
    let usr_bin = mkdir(&stage, "usr/bin")?;
    let installed = usr_bin.join(PACKAGE);
    run(Command::new("strip").args(["--strip-unneeded", "-o"]).arg(&installed).arg(bin))?;
    fs::set_permissions(&installed, fs::Permissions::from_mode(0o755))?;

    // The pages and scripts come from the binary that is packaged.
    let man1 = mkdir(&stage, "usr/share/man/man1")?;
    run(Command::new(&installed).arg("man").arg("--out-dir").arg(&man1).stderr(Stdio::null()))?;
    let mut pages: Vec<PathBuf> = fs::read_dir(&man1)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    pages.sort();
    if !pages.iter().any(|p| p.ends_with("sbx.1")) {
        bail!("`sbx man --out-dir` wrote no sbx.1 into {}", man1.display());
    }
    // Debian's pages are gzipped, -n so that the package is reproducible.
    run(Command::new("gzip").args(["-9", "-n", "-f"]).args(&pages))?;
    for page in &pages {
        let mut gz = page.clone().into_os_string();
        gz.push(".gz");
        fs::set_permissions(&gz, fs::Permissions::from_mode(0o644))?;
    }
    for (shell, dir, name) in [
        ("bash", "usr/share/bash-completion/completions", "sbx"),
        ("zsh", "usr/share/zsh/vendor-completions", "_sbx"),
        ("fish", "usr/share/fish/vendor_completions.d", "sbx.fish"),
    ] {
        let script = stdout(Command::new(&installed).args(["completions", shell]))?;
        write(&mkdir(&stage, dir)?.join(name), &script)?;
    }
    write(&mkdir(&stage, "usr/share/doc/sbx")?.join("copyright"), COPYRIGHT)?;

    let shlibs = shlib_depends(&stage, &installed)?;
    let installed_kib = du_kib(&stage)?;
    // The extended description: lines of at most 79 columns, each indented by one space.
    let description = wrap(&cargo_field(root, "description")?, 78);
    let control = format!(
        "Package: {PACKAGE}\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: sbx developers <sbx@localhost>\n\
         Installed-Size: {installed_kib}\n\
         Depends: {shlibs}, bubblewrap\n\
         Section: admin\n\
         Priority: optional\n\
         Description: run untrusted commands in a sandbox\n\
         {description}\n \
         .\n \
         As root, `sbx monitor` also loads an eBPF tracer that reports every denial\n \
         (Linux 6.10 or later, with BTF); `sbx doctor` says what this host enforces.\n"
    );
    let debian = mkdir(&stage, "DEBIAN")?;
    write(&debian.join("control"), &control)?;
    write(&debian.join("md5sums"), &md5sums(&stage)?)?;

    let deb = out_dir.join(format!("{PACKAGE}_{version}_{arch}.deb"));
    run(Command::new("dpkg-deb").args(["--root-owner-group", "--build"]).arg(&stage).arg(&deb).stdout(Stdio::null()))?;
    fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    let size = fs::metadata(&deb)?.len();
    eprintln!("xtask: dist: {} ({:.1} MB, {installed_kib} KiB installed)", deb.display(), size as f64 / 1e6);
    Ok(deb)
}

const COPYRIGHT: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
Upstream-Name: sbx\n\
\n\
Files: *\n\
Copyright: the sbx developers\n\
License: MIT or Apache-2.0\n \
sbx is dual-licensed under the MIT license and the Apache License 2.0; you may\n \
use it under either. On Debian systems the Apache License 2.0 is in\n \
/usr/share/common-licenses/Apache-2.0.\n";

/// The crate's version as Debian's (`0.1.0-alpha.1` sorts before `0.1.0` as `0.1.0~alpha.1`).
fn package_version(root: &Path) -> Result<String> {
    Ok(cargo_field(root, "version")?.replace('-', "~"))
}

/// A `key = "value"` line of sbx/Cargo.toml's [package].
fn cargo_field(root: &Path, key: &str) -> Result<String> {
    let manifest = root.join("sbx/Cargo.toml");
    let text = fs::read_to_string(&manifest).with_context(|| format!("reading {}", manifest.display()))?;
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .with_context(|| format!("{} has no {key}", manifest.display()))
}

/// `libc6 (>= 2.34), libgcc-s1 (>= 4.2)` for the binary, from dpkg-shlibdeps (which wants a
/// `debian/control` beside it: a minimal one, removed after).
fn shlib_depends(stage: &Path, bin: &Path) -> Result<String> {
    let debian = mkdir(stage, "debian")?;
    write(&debian.join("control"), &format!("Source: {PACKAGE}\n\nPackage: {PACKAGE}\nArchitecture: any\n"))?;
    let out = stdout(Command::new("dpkg-shlibdeps").arg("-O").arg("-e").arg(bin).current_dir(stage).stderr(Stdio::null()));
    fs::remove_dir_all(&debian)?;
    let out = out?;
    let depends = out
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .with_context(|| format!("dpkg-shlibdeps printed no shlibs:Depends for {}: {out}", bin.display()))?;
    Ok(depends.trim().to_owned())
}

fn wrap(text: &str, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines.iter().map(|l| format!(" {l}")).collect::<Vec<_>>().join("\n")
}

/// The staged tree's size in KiB, as Installed-Size wants it.
fn du_kib(stage: &Path) -> Result<u64> {
    let out = stdout(Command::new("du").args(["-s", "-k", "--apparent-size"]).arg(stage))?;
    out.split_whitespace().next().and_then(|n| n.parse().ok()).with_context(|| format!("du printed {out:?}"))
}

/// DEBIAN/md5sums: every file, relative to the root (for `dpkg --verify`).
fn md5sums(stage: &Path) -> Result<String> {
    let mut files = Vec::new();
    let mut dirs = vec![stage.join("usr")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path.strip_prefix(stage)?.to_owned());
            }
        }
    }
    files.sort();
    stdout(Command::new("md5sum").args(&files).current_dir(stage))
}

fn mkdir(stage: &Path, rel: &str) -> Result<PathBuf> {
    let dir = stage.join(rel);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // A umask must not decide the package's modes.
    let mut d = dir.as_path();
    while d != stage {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755))?;
        d = d.parent().expect("below the stage");
    }
    Ok(dir)
}

fn write(file: &Path, text: &str) -> Result<()> {
    fs::write(file, text).with_context(|| format!("writing {}", file.display()))?;
    fs::set_permissions(file, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn stdout(cmd: &mut Command) -> Result<String> {
    let out = cmd.stdout(Stdio::piped()).output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", out.status);
    }
    String::from_utf8(out.stdout).with_context(|| format!("{cmd:?} printed non-UTF-8"))
}
