//! `suggest`'s tests.

use super::*;

mod printed {
    use std::os::unix::ffi::OsStringExt as _;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// `policy suggest`'s and `learn`'s report, and the diff, hold no
        /// control character whatever the log's paths, hosts and names.
        #[test]
        fn no_report_holds_a_control_character(
            path in proptest::collection::vec(any::<u8>(), 1..40),
            host in any::<String>(),
            comm in any::<String>(),
            call in any::<String>(),
        ) {
            let mut p = b"/w/".to_vec();
            p.extend(path);
            let path = PathBuf::from(std::ffi::OsString::from_vec(p));
            let denials = vec![
                Observed { source: "landlock".into(), syscall: Some("openat".into()), operation: Some("create".into()), path: Some(path.clone()), comm: Some(comm.clone()), ..Default::default() },
                Observed { source: "landlock".into(), syscall: Some("openat".into()), operation: Some("create".into()), path: Some(PathBuf::from("/opt").join(path.file_name().unwrap_or_default())), comm: Some(comm.clone()), ..Default::default() },
                Observed { source: "proxy".into(), host: Some(host), port: Some(8443), rule: Some(NO_RULE.into()), operation: Some("connect".into()), comm: Some(comm), ..Default::default() },
                Observed { source: "seccomp".into(), syscall: Some("mount".into()), call: Some(call), ..Default::default() },
            ];
            let policy = Policy::builtin("/w".into(), Some("/h".into()));
            let own = Config::default();
            let exists = |_: &Path| false;
            let ctx = Context { policy: &policy, own: &own, include_protected: true, exists: &exists };
            let mut s = ctx.suggest(&denials);
            distrust(&mut s);
            let report = render_report(&s, &denials, &|_| true);
            prop_assert!(crate::termtext::is_inert(&report), "{report:?}");
            let target = Target { file: "/w/sbx.jsonc".into(), text: String::new(), exists: false, own: Config::default(), merged: Config::default() };
            let all: Vec<&Proposal> = s.proposals.iter().collect();
            if let Ok(new) = target.edited(&all, &denials, "policy suggest") {
                prop_assert!(crate::termtext::is_inert(&crate::termtext::escape_lines(&target.diff(&new))));
            }
        }
    }
}

fn ctx_with(policy: &Policy, own: &Config, protected: bool, f: impl Fn(&Suggestions)) {
    let exists = |p: &Path| p == Path::new("/h/.cache");
    let ctx = Context { policy, own, include_protected: protected, exists: &exists };
    f(&ctx.suggest(&sample()));
}

fn fs(source: &str, syscall: &str, op: &str, path: &str, comm: &str) -> Observed {
    Observed { source: source.into(), syscall: Some(syscall.into()), operation: Some(op.into()), path: Some(path.into()), comm: Some(comm.into()), errno: Some("EROFS".into()), ..Default::default() }
}

fn proxy(host: &str, port: u16, rule: &str) -> Observed {
    Observed { source: "proxy".into(), host: Some(host.into()), port: Some(port), rule: Some(rule.into()), operation: Some("connect".into()), ..Default::default() }
}

fn sample() -> Vec<Observed> {
    vec![
        fs("mount", "mkdir", "create", "/h/.npm", "npm"),
        fs("mount", "openat", "create", "/h/.npm/_cacache/x", "npm"),
        fs("mount", "openat", "create", "/h/.cache/pip/http/a", "pip"),
        fs("mount", "mkdir", "create", "/h/.cache/pip", "pip"),
        fs("mount", "openat", "write", "/h/.bashrc", "sh"),
        fs("mount", "openat", "write", "/w/.git/config", "git"),
        fs("mount", "openat", "create", "/h/.ssh/known_hosts", "ssh"),
        fs("mount", "openat", "create", "/opt/tool/a", "make"),
        fs("mount", "openat", "create", "/opt/tool/b", "make"),
        fs("landlock", "openat", "write", "/w/already/x", "sh"),
        proxy("registry.npmjs.org", 443, NO_RULE),
        proxy("a.example.com", 443, NO_RULE),
        proxy("b.example.com", 443, NO_RULE),
        proxy("c.example.com", 443, NO_RULE),
        proxy("db.internal", 5432, NO_RULE),
        proxy("10.1.2.3", 443, NO_RULE),
        proxy("evil.test", 443, "deniedDomains: evil.test"),
        proxy("rebind.test", 443, "allowedDomains: rebind.test; resolved to private address 10.0.0.1, refused: DNS rebinding defence, name not in allowPrivateResolution"),
        Observed { source: "seccomp".into(), syscall: Some("socket".into()), domain: Some("AF_UNIX".into()), call: Some("socket(AF_UNIX, SOCK_STREAM, 0)".into()), comm: Some("curl".into()), ..Default::default() },
        Observed { source: "seccomp".into(), syscall: Some("unshare".into()), call: Some("unshare(CLONE_NEWUSER)".into()), ..Default::default() },
        Observed { source: "seccomp".into(), syscall: Some("connect".into()), path: Some("/h/.docker/run/docker.sock".into()), comm: Some("docker".into()), ..Default::default() },
        proxy("meta.test", 80, "allowedDomains: meta.test; resolved to cloud-metadata address 169.254.169.254, refused: only reachable when listed as an IP literal"),
    ]
}

fn summary(s: &Suggestions) -> Vec<String> {
    s.proposals.iter().map(|p| format!("{} {} {} {:?} {}={:?} mkdir={:?}", p.key, p.op, p.value, p.answers, if p.hold { "hold" } else { "note" }, p.risk, p.create_dir)).collect()
}

/// PATH directories, autostart, systemd units and agent configuration are risky, and
/// a path protected unless named exactly is proposed by that exact name.
#[test]
fn writes_that_would_run_outside_the_sandbox_are_risky() {
    let own = Config::default();
    let policy = Policy::from_config(&own, "/w".into(), Some("/h".into())).unwrap();
    let exists = |_: &Path| true;
    let ctx = Context { policy: &policy, own: &own, include_protected: false, exists: &exists };
    let s = ctx.suggest(&[
        fs("mount", "openat", "create", "/h/.local/bin/ls", "sh"),
        fs("mount", "openat", "create", "/h/.config/autostart/x.desktop", "sh"),
        fs("mount", "openat", "create", "/h/.config/systemd/user/x.service", "sh"),
        fs("mount", "openat", "create", "/h/.bun/bin/bwrap", "sh"),
        fs("mount", "openat", "write", "/h/.claude/settings.json", "claude"),
        fs("mount", "openat", "write", "/h/.claude.json", "claude"),
    ]);
    assert_eq!(
        summary(&s),
        [
            r#"filesystem.allowWrite add ~/.bun/bin [3] hold=["~/.bun/bin: a directory on PATH: a program placed there runs outside the sandbox", "write outside the workspace"] mkdir=None"#,
            r#"filesystem.allowWrite add ~/.claude [4] hold=["/h/.claude: agent or editor configuration, whose hooks, MCP servers and tasks run outside the sandbox", "write outside the workspace"] mkdir=None"#,
            r#"filesystem.allowWrite add ~/.claude.json [5] hold=["/h/.claude.json: agent or editor configuration, whose hooks, MCP servers and tasks run outside the sandbox", "write outside the workspace"] mkdir=None"#,
            r#"filesystem.allowWrite add ~/.config/autostart [1] hold=["~/.config/autostart: desktop autostart entries run at your next login", "write outside the workspace"] mkdir=None"#,
            r#"filesystem.allowWrite add ~/.config/systemd [2] hold=["~/.config/systemd: systemd user units and their environment run outside the sandbox", "write outside the workspace"] mkdir=None"#,
            r#"filesystem.allowWrite add ~/.local/bin [0] hold=["~/.local/bin: a directory on PATH: a program placed there runs outside the sandbox", "write outside the workspace"] mkdir=None"#,
        ]
    );
}

#[test]
fn denials_become_generalised_flagged_proposals() {
    let mut own = Config::default();
    own.network.denied_domains = vec!["evil.test".into()];
    own.filesystem.allow_write = vec!["already".into()];
    let policy = Policy::from_config(&own, "/w".into(), Some("/h".into())).unwrap();
    ctx_with(&policy, &own, false, |s| {
        assert_eq!(
            summary(s),
            [
                r#"filesystem.allowWrite add ~/.cache/pip [2, 3] note=["write outside the workspace"] mkdir=Some("/h/.cache/pip")"#,
                r#"filesystem.allowWrite add ~/.npm [0, 1] note=["write outside the workspace"] mkdir=Some("/h/.npm")"#,
                r#"filesystem.allowWrite add ~/.ssh [6] hold=["credentials: ~/.ssh", "~/.ssh: ssh configuration and authorized keys", "write outside the workspace"] mkdir=Some("/h/.ssh")"#,
                r#"filesystem.allowWrite add /opt/tool [7, 8] hold=["write to a system path outside the home directory"] mkdir=None"#,
                r#"network.allowedDomains add *.example.com [11, 12, 13] hold=["wildcard name: every subdomain of example.com"] mkdir=None"#,
                r#"network.allowedDomains add 10.1.2.3:443 [15] hold=["an IP address: no name to check and no DNS rebinding defence"] mkdir=None"#,
                r#"network.allowedDomains add db.internal:5432 [14] note=[] mkdir=None"#,
                r#"network.allowedDomains add registry.npmjs.org [10] note=[] mkdir=None"#,
                r#"network.allowPrivateResolution add rebind.test [17] hold=["the name may then lead to private and loopback addresses: whoever controls its DNS can point it at services on this machine or network"] mkdir=None"#,
                r#"network.allowUnixSockets add ~/.docker/run/docker.sock [20] hold=["a host service becomes reachable from the sandbox through this socket"] mkdir=None"#,
                r#"network.deniedDomains remove evil.test [16] hold=["removes an explicit deny rule (network.deniedDomains)"] mkdir=None"#,
            ]
        );
        assert_eq!(s.already, [9]);
        let no: Vec<(&str, &str, usize)> = s.unanswered.iter().map(|u| (u.why.as_str(), u.what.as_str(), u.answers.len())).collect();
        assert_eq!(no.len(), 5, "{no:?}");
        assert!(no.iter().any(|(why, what, _)| why.starts_with("a mandatory protection that no policy lifts: ~/.bashrc") && what == &"write /h/.bashrc"));
        assert!(no.iter().any(|(why, _, _)| why.contains("--include-protected to propose filesystem.allowGitConfig")));
        assert!(no.iter().any(|(why, _, _)| why.contains("--include-protected to propose network.allowAllUnixSockets")));
        assert!(no.iter().any(|(why, what, _)| why.contains("which no policy changes") && what == &"unshare(CLONE_NEWUSER)"));
        assert!(no.iter().any(|(why, what, _)| why.starts_with("resolved to cloud-metadata address") && what == &"meta.test:80"));
    });
    ctx_with(&policy, &own, true, |s| {
        let sets: Vec<String> = summary(s).into_iter().filter(|l| l.contains(" set ")).collect();
        assert_eq!(sets.len(), 2, "{sets:?}");
        assert!(sets[0].starts_with("filesystem.allowGitConfig set true [5] hold=[\"lifts a mandatory protection"), "{sets:?}");
        assert!(sets[1].starts_with("network.allowAllUnixSockets set true [18] hold=[\"weakens the seccomp deny list"), "{sets:?}");
    });
}

#[test]
fn explanations_name_counts_processes_and_examples() {
    let d = sample();
    assert_eq!(explain(&d, &[0, 1]), "2 denials (create) by npm ×2; e.g. /h/.npm, /h/.npm/_cacache/x");
    assert_eq!(explain(&d, &[10]), "1 denial (connect); e.g. registry.npmjs.org:443");
}

#[test]
fn logs_are_read_with_line_numbers_in_errors() {
    let log = "{\"v\":1,\"type\":\"session_start\",\"seq\":0,\"workspace\":\"/w\",\"home\":\"/h\"}\n{\"v\":1,\"type\":\"denial\",\"seq\":1,\"source\":\"proxy\",\"host\":\"x.io\",\"port\":443,\"detail\":{\"rule\":\"no rule allows it\"}}\n";
    let r = parse_log(log, Path::new("l.jsonl")).unwrap();
    assert_eq!((r.sessions, r.next_seq, r.denials.len()), (1, 2, 1));
    assert_eq!(r.denials[0].rule.as_deref(), Some(NO_RULE));
    assert_eq!(r.workspace.as_deref(), Some(Path::new("/w")));
    let err = parse_log("{\"v\":1,\"type\":\"session_start\"}\nnot json\n", Path::new("l.jsonl")).unwrap_err().to_string();
    assert!(err.starts_with("l.jsonl:2: not a JSON event"), "{err}");
    let err = parse_log("{\"v\":2,\"type\":\"x\"}\n", Path::new("l.jsonl")).unwrap_err().to_string();
    assert_eq!(err, "l.jsonl:1: not an sbx event of schema version 1 (\"v\" is 2)");
    let err = parse_log("", Path::new("l.jsonl")).unwrap_err().to_string();
    assert!(err.contains("holds no session_start event"), "{err}");
}
