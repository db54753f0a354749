//! sbx as a user installs it: `--version` for bug reports, the shell completions and man
//! pages it generates, and the Debian package of `cargo xtask dist` (`SBX_DEB`, built by
//! `cargo xtask test`) installed with dpkg, run from /usr/bin and purged.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use sbx_integration_tests::{As, Workspace, require_root, require_tool, sbx_bin, skip, text};

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"))
}

#[test]
fn version_names_the_commit_the_ebpf_object_and_its_kernel_features() {
    let out = run(Command::new(sbx_bin()).arg("--version"));
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(lines[0], format!("sbx {}", env!("CARGO_PKG_VERSION")));
    let commit = lines[1].strip_prefix("commit: ").unwrap_or_else(|| panic!("{stdout}"));
    // Built from this checkout: the commit is HEAD's (build.rs reruns when HEAD moves).
    let head = run(Command::new("git").args(["-C", env!("CARGO_MANIFEST_DIR"), "rev-parse", "--short=12", "HEAD"]));
    assert!(head.status.success(), "{}", text(&head));
    assert_eq!(commit, String::from_utf8_lossy(&head.stdout).trim(), "{stdout}");
    let hash = lines[2].strip_prefix("ebpf: sha256 ").unwrap_or_else(|| panic!("{stdout}"));
    assert!(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()), "{stdout}");
    for feature in ["tp_btf (", "sys_exit", "fexit (security_file_open)", "ring buffer", "bpf_loop", "attach cookie", "BTF", "Linux 6.10 or later"] {
        assert!(lines[3].starts_with("kernel: ") && lines[3].contains(feature), "no {feature}: {stdout}");
    }
    // -V is the version alone.
    let short = run(Command::new(sbx_bin()).arg("-V"));
    assert_eq!(String::from_utf8_lossy(&short.stdout), format!("sbx {}\n", env!("CARGO_PKG_VERSION")));
}

/// What bash completes for `words` (the last is the word being completed) with the script
/// `sbx completions bash` printed, through the function it registers with `complete`.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'\n\
         fn=$(complete -p sbx | sed -n 's/.* -F \\([^ ]*\\) sbx$/\\1/p')\n\
         [ -n \"$fn\" ] || {{ echo 'no completion function registered for sbx' >&2; exit 1; }}\n\
         COMP_WORDS=({})\n\
         COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n\
         COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}\n\
         \"$fn\" sbx \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" ")
    );
    let out = run(Command::new(require_tool("bash")).args(["--norc", "--noprofile", "-c", &program]));
    assert!(out.status.success(), "{words:?}: {}", text(&out));
    String::from_utf8(out.stdout).unwrap().lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

fn bash_script(dir: &Path, bin: &Path) -> PathBuf {
    let out = run(Command::new(bin).args(["completions", "bash"]));
    assert!(out.status.success(), "{}", text(&out));
    let script = dir.join("sbx.bash");
    std::fs::write(&script, &out.stdout).unwrap();
    script
}

fn assert_completes(script: &Path) {
    let subcommands = bash_complete(script, &["sbx", ""]);
    for sub in ["run", "monitor", "doctor", "config", "templates", "completions", "man"] {
        assert!(subcommands.iter().any(|w| w == sub), "no {sub} in {subcommands:?}");
    }
    assert_eq!(bash_complete(script, &["sbx", "mon"]), ["monitor"]);
    // -t completes the built-in template names, which `sbx templates` lists.
    let templates = run(Command::new(sbx_bin()).arg("templates"));
    let names: Vec<String> = String::from_utf8_lossy(&templates.stdout).lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect();
    assert!(names.len() >= 3 && names.iter().any(|n| n == "code-strict"), "{names:?}");
    for prefix in [&["sbx", "run", "-t", ""][..], &["sbx", "monitor", "--template", ""], &["sbx", "config", "show", "-t", ""]] {
        assert_eq!(bash_complete(script, prefix), names, "{prefix:?}");
    }
    assert_eq!(bash_complete(script, &["sbx", "run", "-t", "code-s"]), ["code-strict"]);
    assert_eq!(bash_complete(script, &["sbx", "completions", "z"]), ["zsh"]);
}

#[test]
fn bash_completion_completes_subcommands_and_template_names() {
    let dir = tempfile::tempdir().unwrap();
    assert_completes(&bash_script(dir.path(), &sbx_bin()));
}

#[test]
fn zsh_and_fish_scripts_are_generated_for_their_shells() {
    for (shell, marker) in [("zsh", "#compdef sbx"), ("fish", "complete -c sbx")] {
        let out = run(Command::new(sbx_bin()).args(["completions", shell]));
        assert!(out.status.success(), "{}", text(&out));
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker) && script.contains("code-strict"), "{shell}: {script}");
    }
    let out = run(Command::new(sbx_bin()).args(["completions", "tcsh"]));
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("tcsh"), "{stderr}");
}

/// `man -l FILE` (or a page by name), rendered as plain text; roff's warnings fail the test.
fn man(args: &[&str]) -> String {
    let out = run(Command::new(require_tool("man")).args(args).env("MANWIDTH", "100").env("MAN_KEEP_FORMATTING", "").env("MANROFFOPT", "-ww").env("PAGER", "cat"));
    assert!(out.status.success(), "man {args:?}: {}", text(&out));
    assert!(out.stderr.is_empty(), "man {args:?} warned: {}", text(&out));
    // Plain text: no overstrike bold.
    let page = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut plain = String::new();
    let mut chars = page.chars().peekable();
    while let Some(c) = chars.next() {
        if chars.peek() == Some(&'\u{8}') {
            chars.next();
            continue;
        }
        plain.push(c);
    }
    plain
}

fn assert_top_page(page: &str) {
    for part in ["NAME", "sbx - Run an untrusted command", "SYNOPSIS", "SUBCOMMANDS", "sbx-run(1)", "sbx-completions(1)", "EXIT STATUS", "SEE ALSO", "bwrap(1)"] {
        assert!(page.contains(part), "no {part:?} in:\n{page}");
    }
    assert!(page.contains(&format!("v{}", env!("CARGO_PKG_VERSION"))), "{page}");
}

#[test]
fn man_page_renders_with_man() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(Command::new(sbx_bin()).arg("man"));
    assert!(out.status.success(), "{}", text(&out));
    let page = dir.path().join("sbx.1");
    std::fs::write(&page, &out.stdout).unwrap();
    assert_top_page(&man(&["-l", page.to_str().unwrap()]));

    // --out-dir: a page per subcommand, each of which renders and documents its flags.
    let pages = dir.path().join("man1");
    std::fs::create_dir(&pages).unwrap();
    let out = run(Command::new(sbx_bin()).args(["man", "--out-dir"]).arg(&pages));
    assert!(out.status.success(), "{}", text(&out));
    let run_page = man(&["-l", pages.join("sbx-run.1").to_str().unwrap()]);
    for part in ["sbx-run - Run a command in the sandbox", "--template", "code-strict", "--timeout"] {
        assert!(run_page.contains(part), "no {part:?} in:\n{run_page}");
    }
    assert!(pages.join("sbx-config-show.1").is_file() && pages.join("sbx-log-verify.1").is_file());
    let top = std::fs::read(pages.join("sbx.1")).unwrap();
    assert_eq!(top, out_of(&["man"]), "sbx man and sbx man --out-dir differ on sbx.1");

    // A directory that cannot be written: one sentence.
    let out = run(Command::new(sbx_bin()).args(["man", "--out-dir", "/nonexistent/sbx-man"]));
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().count() == 1 && stderr.contains("/nonexistent/sbx-man"), "{stderr}");
}

fn out_of(args: &[&str]) -> Vec<u8> {
    let out = run(Command::new(sbx_bin()).args(args));
    assert!(out.status.success(), "{}", text(&out));
    out.stdout
}

/// Purges the package when dropped: the machine is left as it was, even when the test fails.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let out = Command::new("dpkg").args(["--purge", "sbx"]).output();
        match out {
            Ok(out) if out.status.success() => {}
            other => eprintln!("dpkg --purge sbx failed: {other:?}"),
        }
    }
}

fn dpkg_status(package: &str) -> Option<String> {
    let out = run(Command::new("dpkg-query").args(["-W", "-f", "${db:Status-Status}", package]));
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn deb_installs_runs_from_usr_bin_and_purges() {
    require_root!();
    let Some(deb) = std::env::var_os("SBX_DEB").map(PathBuf::from) else {
        skip!("SBX_DEB is not set: `cargo xtask test` builds the package with `cargo xtask dist` and sets it");
    };
    assert!(deb.is_file(), "SBX_DEB={} does not exist", deb.display());
    require_tool("dpkg");
    let bin = Path::new("/usr/bin/sbx");
    // Installing over an sbx this machine already has would not leave it as it was.
    let before = dpkg_status("sbx");
    assert!(matches!(before.as_deref(), None | Some("not-installed")), "a package sbx is already on this machine ({before:?}); this test installs and purges its own");
    assert!(!bin.exists(), "{} exists outside any package; this test would replace it", bin.display());

    // The package's own description of itself.
    let info = run(Command::new("dpkg-deb").args(["--field"]).arg(&deb).args(["Package", "Depends", "Architecture"]));
    assert!(info.status.success(), "{}", text(&info));
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(info.contains("Package: sbx") && info.contains("bubblewrap") && info.contains("libc6 (>="), "{info}");

    let installed = Installed;
    let out = run(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(out.status.success(), "dpkg -i {}: {}", deb.display(), text(&out));
    assert_eq!(dpkg_status("sbx").as_deref(), Some("installed"));
    let listed = String::from_utf8_lossy(&run(Command::new("dpkg").args(["-L", "sbx"])).stdout).into_owned();
    for file in [
        "/usr/bin/sbx",
        "/usr/share/man/man1/sbx.1.gz",
        "/usr/share/man/man1/sbx-run.1.gz",
        "/usr/share/bash-completion/completions/sbx",
        "/usr/share/zsh/vendor-completions/_sbx",
        "/usr/share/fish/vendor_completions.d/sbx.fish",
        "/usr/share/doc/sbx/copyright",
    ] {
        assert!(listed.lines().any(|l| l == file) && Path::new(file).is_file(), "{file} not installed:\n{listed}");
    }
    // Every file as packaged (md5sums).
    let verify = run(Command::new("dpkg").args(["--verify", "sbx"]));
    assert!(verify.status.success() && verify.stdout.is_empty(), "{}", text(&verify));

    // The installed binary works as the built one: the doctor proves every layer (the
    // eBPF object survived strip) and a command runs in a sandbox.
    let ws = Workspace::new(As::Root);
    let out = run(&mut ws.sbx_at(bin, ["doctor"]));
    assert!(out.status.success(), "/usr/bin/sbx doctor: {}", text(&out));
    let out = run(&mut ws.sbx_at(bin, ["run", "--", "true"]));
    assert!(out.status.success(), "/usr/bin/sbx run -- true: {}", text(&out));
    let out = run(&mut ws.sbx_at(bin, ["run", "--", "sh", "-c", "echo sandboxed > inside.txt; touch /etc/sbx-deb-test"]));
    assert!(!out.status.success() && !Path::new("/etc/sbx-deb-test").exists(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(ws.path().join("inside.txt")).unwrap(), "sandboxed\n");
    let version = String::from_utf8_lossy(&run(Command::new(bin).arg("--version")).stdout).into_owned();
    assert_eq!(version.lines().count(), 4, "{version}");
    assert!(version.starts_with(&format!("sbx {}\n", env!("CARGO_PKG_VERSION"))), "{version}");

    // The installed page by name, and the installed bash completion.
    assert_top_page(&man(&["sbx"]));
    assert_completes(Path::new("/usr/share/bash-completion/completions/sbx"));

    drop(installed);
    let after = dpkg_status("sbx");
    assert!(matches!(after.as_deref(), None | Some("not-installed")), "sbx is still known to dpkg after the purge: {after:?}");
    assert!(!bin.exists() && !Path::new("/usr/share/man/man1/sbx.1.gz").exists() && !Path::new("/usr/share/doc/sbx").exists(), "the purge left files behind");
}

/// The build script cargo last ran for the sbx under test (`target/<profile>/build/sbx-*/`).
fn sbx_build_script() -> PathBuf {
    let build = sbx_bin().parent().expect("SBX_BIN is in a profile directory").join("build");
    let mut scripts: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&build)
        .unwrap_or_else(|e| panic!("{}: {e}", build.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("sbx-"))
        .map(|e| e.path().join("build-script-build"))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    scripts.sort();
    scripts.pop().unwrap_or_else(|| panic!("no sbx-*/build-script-build in {}", build.display())).1
}

#[test]
fn a_build_without_bpf_linker_names_cargo_xtask_provision_in_one_paragraph() {
    let out_dir = tempfile::tempdir().unwrap();
    let empty_cache = tempfile::tempdir().unwrap();
    // No bpf-linker on PATH (rustup's directory only, for the nightly's facts), nothing in
    // the cache; a backtrace would show with RUST_BACKTRACE=1.
    let rustup = require_tool("rustup");
    let out = run(Command::new(sbx_build_script())
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", rustup.parent().unwrap().display()))
        .envs(["HOME", "RUSTUP_HOME", "CARGO_HOME"].iter().filter_map(|k| Some((k, std::env::var_os(k)?))))
        .env("XDG_CACHE_HOME", empty_cache.path())
        .env("OUT_DIR", out_dir.path())
        .env("CARGO_CFG_TARGET_ENDIAN", "little")
        .env("CARGO_CFG_TARGET_ARCH", "x86_64")
        .env("RUST_BACKTRACE", "1"));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(out.stdout.is_empty(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let paragraph = stderr.trim();
    assert!(!paragraph.is_empty() && !paragraph.contains('\n'), "not one paragraph: {stderr}");
    assert!(paragraph.starts_with("bpf-linker is not on PATH, nor provisioned for "), "{paragraph}");
    assert!(paragraph.contains(&empty_cache.path().join("sbx/bpf-linker").display().to_string()), "{paragraph}");
    assert!(paragraph.contains("run `cargo xtask provision`"), "{paragraph}");
    assert!(!stderr.contains("backtrace") && !stderr.contains("panicked"), "{stderr}");
}
