//! Issue 17, 3: doctor tells the truth where developers run sbx, and sbx says in one
//! sentence why it cannot sandbox where namespaces are refused (sbx inside sbx, a
//! container's profile).

use std::{os::unix::fs::PermissionsExt as _, process::Command};

use sbx_integration_tests::{As, SudoRule, Workspace, public_sbx, require_root, require_tool, test_user, text};

fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {name} check: {report}"))
}

/// sbx inside sbx (bubblewrap's --disable-userns, a seccomp filter): `run` refuses in one
/// sentence that names the cause and the way out, and doctor fails the same checks `run`
/// would, with that sentence as the fix; nothing says "allowed".
#[test]
fn nested_sbx_says_why_in_one_sentence_and_doctor_agrees() {
    require_root!();
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        // Inside, /tmp is the sandbox's own: the inner sbx comes from the workspace.
        let sbx = ws.path().join("sbx");
        std::fs::copy(public_sbx(), &sbx).unwrap();
        std::fs::set_permissions(&sbx, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = ws.sbx(["run", "--memory", "off", "--"]).arg(&sbx).args(["run", "--", "true"]).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{who:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("sbx: cannot create the namespaces a sandbox needs here (unshare: Operation not permitted): sbx runs inside another sandbox or container")
                && err.lines().count() == 1,
            "{who:?}: {err}"
        );
        let out = ws.sbx(["run", "--"]).arg(&sbx).args(["doctor", "--json"]).output().unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{who:?}: {e}: {}", text(&out)));
        for name in ["user namespace", "pid namespace", "net namespace", "unprivileged userns"] {
            let c = check(&report, name);
            assert_eq!(c["verdict"], "fail", "{who:?}: {c}");
            assert!(c["fix"].as_str().unwrap().contains("run sbx outside it"), "{who:?}: {c}");
        }
        let p = check(&report, "privileges");
        assert_eq!(p["verdict"], "warn", "{who:?}: uid 0 in the sandbox's namespace is not the host's root: {p}");
    }
}

/// doctor's advice for the tracer works: as a user the privileges check warns and says
/// `sudo sbx ...`; following it (with a real sudo), the same doctor passes it and loads
/// the tracer.
#[test]
fn doctors_advice_for_the_tracer_is_sudo_and_it_works() {
    require_root!();
    require_tool("sudo");
    require_tool("runuser");
    let u = test_user();
    let sbx = public_sbx();
    let ws = Workspace::new(As::User);
    let out = ws.sbx(["doctor", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    let p = check(&report, "privileges");
    assert_eq!(p["verdict"], "warn", "{p}");
    assert!(p["fix"].as_str().unwrap().contains("sudo sbx monitor"), "{p}");
    assert!(!report.to_string().contains("setcap"), "advice that does not work: {report}");
    let sudo = SudoRule::allow(&sbx);
    let out = Command::new("runuser").args(["-u", u.name, "--", "sudo", "-n"]).arg(&sbx).args(["doctor", "--json"]).current_dir(ws.path()).output().unwrap();
    drop(sudo);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert_eq!(check(&report, "privileges")["verdict"], "ok", "{report}");
    assert_eq!(check(&report, "ebpf load+attach")["verdict"], "ok", "{report}");
}

/// Docker's default capability set has no CAP_SYS_ADMIN: doctor said the pid and net
/// namespaces failed (it tried them without a user namespace) although `run` enforces both.
/// Now doctor checks them as `run` uses them, and both agree: ok, and enforced.
#[test]
fn without_cap_sys_admin_doctor_and_run_agree() {
    require_root!();
    require_tool("setpriv");
    confined_the_same(&["--bounding-set=-sys_admin"]);
    // no_new_privs already set (systemd's NoNewPrivileges=, some CI runners): the same.
    confined_the_same(&["--no-new-privs"]);
}

fn confined_the_same(setpriv: &[&str]) {
    let ws = Workspace::new(As::Root);
    let dropped = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(setpriv).arg("--").arg(sbx_integration_tests::sbx_bin()).args(args).current_dir(ws.path());
        cmd.output().unwrap()
    };
    // What setpriv sets is really in force for what it starts.
    let out = Command::new("setpriv").args(setpriv).args(["--", "grep", "-E", "CapEff|NoNewPrivs", "/proc/self/status"]).output().unwrap();
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or_default().to_owned();
    if setpriv.contains(&"--no-new-privs") {
        assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    } else {
        let eff = u64::from_str_radix(&field("CapEff:"), 16).unwrap();
        assert_eq!(eff & (1 << 21), 0, "CAP_SYS_ADMIN is still effective: {status}");
    }
    let out = dropped(&["doctor", "--json"]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    for name in ["user namespace", "pid namespace", "net namespace", "unprivileged userns"] {
        assert_eq!(check(&report, name)["verdict"], "ok", "{setpriv:?}: {}", check(&report, name));
    }
    let out = dropped(&["run", "--log", "audit.jsonl", "--", "sh", "-c", "echo pid=$$; echo > /etc/z; true"]);
    assert!(out.status.success(), "{setpriv:?}: {}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "pid=2\n", "{setpriv:?}: not in a pid namespace of its own: {}", text(&out));
    let events = sbx_integration_tests::read_log(&ws.path().join("audit.jsonl"));
    assert!(events.iter().any(|e| e["type"] == "denial" && e["path"] == "/etc/z"), "{setpriv:?}: {events:?}");
}
