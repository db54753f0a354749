//! `sbx monitor` on a real terminal: tmux runs it, the test reads the screen
//! and sends keys.

use std::{os::unix::fs::FileTypeExt as _, process::Command, time::Duration};

use sbx_integration_tests::{As, FETCH_PY, Tmux, Workspace, http_server, public_sbx, read_log, require_root, require_tool, sbx_bin, test_user};

#[test]
fn the_dashboard_shows_denials_takes_keys_and_restores_the_terminal() {
    require_root!();
    require_tool("tmux");
    require_tool("curl");
    let ws = Workspace::new(As::Root);
    let done = ws.path().join("exit-status");
    let script = "echo hello-from-the-command; touch /etc/sbx-dash; unshare -U true; \
                  curl -s -x $HTTP_PROXY http://evil.example/ >/dev/null; read line; echo got-$line; sleep 60";
    let shell = format!(
        "cd {} && {} monitor -- sh -c '{}'; echo $? > {}; sleep 30",
        ws.path().display(),
        sbx_bin().display(),
        script.replace('\'', "'\\''"),
        done.display()
    );
    let t = Tmux { session: format!("sbx-test-{}", std::process::id()) };
    let status = Command::new("tmux")
        .args(["new-session", "-d", "-s", &t.session, "-x", "120", "-y", "40", &shell])
        .status()
        .unwrap();
    assert!(status.success());

    // The violations and counters.
    let screen = t.wait_for("the three denials", |s| s.contains("evil.example:80") && s.contains("/etc/sbx-dash") && s.contains("unshare(CLONE_NEWUSER)"));
    assert!(screen.contains("landlock full (ABI 7)"), "{screen}");
    assert!(screen.contains("proxy 1"), "{screen}");
    assert!(screen.contains("mount 1"), "{screen}");
    assert!(screen.contains("hello-from-the-command"), "the command's output is shown:\n{screen}");

    // Keys reach the command through its pty when the output pane has focus.
    t.keys(&["2"]);
    t.keys(&["abc", "Enter"]);
    t.wait_for("the command's answer", |s| s.contains("got-abc"));
    t.keys(&["Tab"]);

    // Filter as you type, then the detail pane.
    t.keys(&["1", "/", "unsh"]);
    let screen = t.wait_for("the filter", |s| s.contains("filter \"unsh\""));
    // One row of the four is left.
    assert!(screen.contains("Violations 1/"), "filtered:\n{screen}");
    t.keys(&["Enter", "Enter"]);
    let screen = t.wait_for("the detail pane", |s| s.contains("Violation detail"));
    assert!(screen.contains("creating namespaces"), "the reason is shown:\n{screen}");
    // A key right after Escape would read as Alt+key: wait for each effect.
    t.keys(&["Escape"]);
    t.wait_for("the detail pane to close", |s| !s.contains("Violation detail"));

    // Help, then quit: it asks first while the command runs.
    t.keys(&["?"]);
    t.wait_for("help", |s| s.contains("this help"));
    t.keys(&["Escape"]);
    t.wait_for("help to close", |s| !s.contains("this help"));
    std::thread::sleep(Duration::from_millis(200));
    t.keys(&["q"]);
    t.wait_for("the confirmation", |s| s.contains("kill the command and quit"));
    t.keys(&["y"]);
    let screen = t.wait_for("the exit summary", |s| s.contains("denials:"));
    assert!(!screen.contains("Violations"), "the dashboard is gone:\n{screen}");
    assert!(screen.contains("(create /etc/sbx-dash)"), "{screen}");
    assert_eq!(t.tmux(&["display-message", "-t", &t.session, "-p", "#{alternate_on}"]).trim(), "0", "left the alternate screen");
    for _ in 0..100 {
        if done.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(std::fs::read_to_string(&done).unwrap().trim(), "137", "killed on request");
}

/// Regression: when the terminal went away (its window closed), the
/// dashboard's input thread spun on EOF and sbx never exited.
#[test]
fn closing_the_terminal_ends_the_session() {
    require_root!();
    require_tool("tmux");
    let ws = Workspace::new(As::Root);
    let t = Tmux { session: format!("sbx-test-hup-{}", std::process::id()) };
    let shell = format!("cd {} && exec {} monitor -- sleep 120", ws.path().display(), sbx_bin().display());
    assert!(Command::new("tmux").args(["new-session", "-d", "-s", &t.session, "-x", "100", "-y", "30", &shell]).status().unwrap().success());
    t.wait_for("the dashboard", |s| s.contains("running"));
    let pid: i32 = t.tmux(&["display-message", "-t", &t.session, "-p", "#{pane_pid}"]).trim().parse().unwrap();
    t.tmux(&["kill-session", "-t", &t.session]);
    for _ in 0..100 {
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill with a valid pid and signal, to leave nothing behind.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    panic!("sbx monitor (pid {pid}) did not exit after its terminal closed");
}

#[test]
fn ask_holds_unlisted_connections_until_answered_and_remembers_always() {
    require_root!();
    require_tool("tmux");
    require_tool("/usr/bin/python3");
    let (port, hits) = http_server();
    let ws = Workspace::new(As::Root);
    ws.write("fetch.py", FETCH_PY);
    let config = ws.write("sbx.jsonc", "// mine\n{\n  \"network\": {\n    \"allowedDomains\": [] // none yet\n  }\n}\n");
    let log = ws.path().join("audit.jsonl");
    let fetch = |n: &str, ip: &str| format!("/usr/bin/python3 fetch.py http://{ip}:{port}/ 2>/dev/null && echo {n}-ok || echo {n}-denied");
    let script = format!("{}; {}; {}; sleep 60", fetch("first", "127.0.0.1"), fetch("second", "127.0.0.2"), fetch("third", "127.0.0.2"));
    let shell = format!("cd {} && {} monitor --ask --log {} -- sh -c '{script}'; sleep 30", ws.path().display(), sbx_bin().display(), log.display());
    let t = Tmux { session: format!("sbx-ask-{}", std::process::id()) };
    assert!(Command::new("tmux").args(["new-session", "-d", "-s", &t.session, "-x", "120", "-y", "40", &shell]).status().unwrap().success());

    // Held: the server has seen nothing while the prompt is up.
    let screen = t.wait_for("the first prompt", |s| s.contains(&format!("Reach 127.0.0.1:{port}")));
    assert!(screen.contains("Tab to answer"), "{screen}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    // Until the prompt has the keyboard, its keys answer nothing.
    t.keys(&["a"]);
    std::thread::sleep(Duration::from_millis(600));
    assert!(t.screen().contains(&format!("Reach 127.0.0.1:{port}")), "answered without the keyboard");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    t.keys(&["Tab"]);
    let screen = t.wait_for("the prompt to take the keyboard", |s| s.contains("answering"));
    assert!(screen.contains("allow always") && screen.contains("deny always"), "{screen}");
    std::thread::sleep(Duration::from_millis(600));
    t.keys(&["a"]);
    t.wait_for("the second prompt", |s| s.contains(&format!("Reach 127.0.0.2:{port}")));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "allow once let exactly one connection through");
    // A new prompt needs the keyboard again.
    t.keys(&["Tab"]);
    t.wait_for("the prompt to take the keyboard", |s| s.contains("answering"));
    std::thread::sleep(Duration::from_millis(600));
    t.keys(&["D"]);
    // The third request is denied by the remembered answer, without a prompt.
    let screen = t.wait_for("all three outcomes", |s| s.contains("first-ok") && s.contains("second-denied") && s.contains("third-denied"));
    assert!(!screen.contains("Reach 127.0.0.2"), "{screen}");
    t.keys(&["q"]);
    t.wait_for("the quit confirmation", |s| s.contains("kill the command and quit?"));
    t.keys(&["y"]);
    t.wait_for("the session's end", |_| read_log(&log).iter().any(|e| e["type"] == "session_end"));

    // "Deny always" was written to the policy file in place; "allow once" was not.
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.starts_with("// mine\n") && text.contains("// none yet"), "{text}");
    assert!(text.contains(&format!("\"deniedDomains\": [\n      \"127.0.0.2:{port}\" // denied at the dashboard (sbx monitor --ask)")), "{text}");
    assert!(!text.contains("127.0.0.1"), "{text}");

    let events = read_log(&log);
    let policy: Vec<(String, String, String)> = events
        .iter()
        .filter(|e| e["type"] == "policy")
        .map(|e| (e["action"].as_str().unwrap().to_string(), e["host"].as_str().unwrap().to_string(), e["change"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        policy,
        [("allow_once".into(), "127.0.0.1".into(), "none".into()), ("deny_always".into(), "127.0.0.2".into(), "add".into())]
    );
    let always = events.iter().find(|e| e["action"] == "deny_always").unwrap();
    assert_eq!(always["origin"], "ask");
    assert_eq!(always["config"].as_str(), Some(config.to_str().unwrap()));
    let rules: Vec<&str> = events.iter().filter(|e| e["type"] == "net").map(|e| e["rule"].as_str().unwrap()).collect();
    assert_eq!(rules, ["asked: allowed once", "asked: denied always", "asked: denied always"]);
}

/// The shell words that run sbx as `who` (`runuser` for the unprivileged user).
fn sbx_as(who: As) -> String {
    match who {
        As::Root => sbx_bin().display().to_string(),
        As::User => {
            let u = test_user();
            format!("runuser -u {} -- env HOME={} USER={} {}", u.name, u.home.display(), u.name, public_sbx().display())
        }
    }
}

/// Starts `sbx monitor ARGS -- sh -c SCRIPT` in tmux in `ws`, as the
/// workspace's owner (`runuser` for the unprivileged user).
fn start(ws: &Workspace, name: &str, args: &str, script: &str) -> Tmux {
    let sbx = sbx_as(ws.who);
    let shell = format!("cd {} && {sbx} monitor {args} -- sh -c '{}'; sleep 30", ws.path().display(), script.replace('\'', "'\\''"));
    let t = Tmux { session: format!("sbx-{name}-{:?}-{}", ws.who, std::process::id()) };
    assert!(Command::new("tmux").args(["new-session", "-d", "-s", &t.session, "-x", "120", "-y", "40", &shell]).status().unwrap().success());
    t
}

/// Issue 14, 4: "Add unit tests" typed into the command's pane while a
/// prompt was up answered "allow always", written to sbx.jsonc.
#[test]
fn typing_into_the_command_while_a_prompt_is_up_answers_nothing() {
    require_root!();
    require_tool("tmux");
    require_tool("/usr/bin/python3");
    require_tool("runuser");
    for who in [As::Root, As::User] {
        typing_into_the_command_while_a_prompt_is_up(who);
    }
}

fn typing_into_the_command_while_a_prompt_is_up(who: As) {
    let (port, hits) = http_server();
    let ws = Workspace::new(who);
    ws.write("fetch.py", FETCH_PY);
    let log = ws.path().join("audit.jsonl");
    let script = format!(
        "(/usr/bin/python3 fetch.py http://127.0.0.1:{port}/ 2>/dev/null && echo fetch-\"ok\" || echo fetch-\"denied\") & read line; echo \"got-$line\"; wait; sleep 60"
    );
    let t = start(&ws, "typing", &format!("--ask --log {}", log.display()), &script);
    t.wait_for("the prompt", |s| s.contains(&format!("Reach 127.0.0.1:{port}")));
    // The output pane, then the user types for the command.
    t.keys(&["2"]);
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["-l", "Add unit tests aAdD"]);
    t.keys(&["Enter"]);
    let screen = t.wait_for("the command's answer", |s| s.contains("got-Add unit tests aAdD"));
    assert!(screen.contains(&format!("Reach 127.0.0.1:{port}")), "the prompt was answered:\n{screen}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(!ws.path().join("sbx.jsonc").exists(), "an answer was written");
    // Answered deliberately.
    t.keys(&["Tab"]);
    t.wait_for("the prompt to take the keyboard", |s| s.contains("answering"));
    std::thread::sleep(Duration::from_millis(600));
    t.keys(&["d"]);
    t.wait_for("the denial", |s| s.contains("fetch-denied"));
    // The output pane has the keys again: Tab leaves it, then quit.
    t.keys(&["Tab"]);
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["q"]);
    t.wait_for("the quit confirmation", |s| s.contains("kill the command and quit?"));
    t.keys(&["y"]);
    t.wait_for("the session's end", |_| read_log(&log).iter().any(|e| e["type"] == "session_end"));
    let answers: Vec<String> = read_log(&log).iter().filter(|e| e["type"] == "policy").map(|e| e["action"].as_str().unwrap().to_string()).collect();
    assert_eq!(answers, ["deny_once"]);
}

/// Issue 14, 2: the command makes sbx.jsonc a FIFO, then an "allow always"
/// answer would have blocked sbx's runtime thread reading it: the
/// dashboard, proxy and supervisor froze and `q` did nothing.
#[test]
fn an_always_answer_into_a_fifo_policy_file_freezes_nothing() {
    require_root!();
    require_tool("tmux");
    require_tool("/usr/bin/python3");
    require_tool("runuser");
    for who in [As::Root, As::User] {
        always_into_a_fifo(who);
    }
}

fn always_into_a_fifo(who: As) {
    let (port, _hits) = http_server();
    let ws = Workspace::new(who);
    ws.write("fetch.py", FETCH_PY);
    let log = ws.path().join("audit.jsonl");
    let script = format!("mkfifo sbx.jsonc; /usr/bin/python3 fetch.py http://127.0.0.1:{port}/ 2>/dev/null && echo fetch-\"ok\" || echo fetch-\"denied\"; sleep 60");
    let t = start(&ws, "fifo", &format!("--ask --log {}", log.display()), &script);
    t.wait_for("the prompt", |s| s.contains(&format!("Reach 127.0.0.1:{port}")));
    assert!(ws.path().join("sbx.jsonc").metadata().unwrap().file_type().is_fifo());
    t.keys(&["Tab"]);
    t.wait_for("the prompt to take the keyboard", |s| s.contains("answering"));
    std::thread::sleep(Duration::from_millis(600));
    t.keys(&["A"]);
    // The connection goes through (the answer holds for the session) and
    // the dashboard still answers keys.
    t.wait_for("the fetch", |s| s.contains("fetch-ok"));
    t.keys(&["q"]);
    t.wait_for("the quit confirmation", |s| s.contains("kill the command and quit?"));
    t.keys(&["y"]);
    let screen = t.wait_for("the exit", |s| s.replace('\n', "").contains("could not remember the answer"));
    assert!(screen.replace('\n', "").contains("sbx.jsonc is a FIFO (named pipe), not a regular file"), "{screen}");
    let events = read_log(&log);
    let always = events.iter().find(|e| e["action"] == "allow_always").expect("the answer is recorded");
    assert!(always["risk"][0].as_str().unwrap().starts_with("not written to the policy file"), "{always}");
    assert!(ws.path().join("sbx.jsonc").metadata().unwrap().file_type().is_fifo());
}

/// Issue 14, 1, the dashboard's export: `e` writes a predictable name in
/// the working directory, which the command planted as symlinks.
#[test]
fn export_never_writes_through_a_planted_name() {
    require_root!();
    require_tool("tmux");
    let ws = Workspace::new(As::Root);
    let victims = tempfile::tempdir().unwrap();
    let victim = victims.path().join("bashrc");
    std::fs::write(&victim, "# my shell\n").unwrap();
    let script = format!(
        "now=$(date +%s); for t in $(seq $((now - 5)) $((now + 5))); do ln -s {} sbx-session-$t.jsonl; done; echo planted; sleep 60",
        victim.display()
    );
    let t = start(&ws, "export", "", &script);
    t.wait_for("the plant", |s| s.contains("planted"));
    t.keys(&["e"]);
    let screen = t.wait_for("the export", |s| s.contains("exported "));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "# my shell\n", "written through the symlink");
    let exported: Vec<std::path::PathBuf> = std::fs::read_dir(ws.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.symlink_metadata().is_ok_and(|m| m.file_type().is_file()) && p.file_name().unwrap().to_string_lossy().starts_with("sbx-session-"))
        .collect();
    assert_eq!(exported.len(), 1, "{exported:?}\n{screen}");
    assert!(exported[0].to_string_lossy().ends_with("-2.jsonl"), "{exported:?}");
    // The export is sealed like a log.
    let out = Command::new(sbx_bin()).args(["log", "verify"]).arg(&exported[0]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    t.keys(&["q"]);
    t.wait_for("the quit confirmation", |s| s.contains("kill the command and quit?"));
    t.keys(&["y"]);
}

/// Issue 14, 1, the `--ask` "always" write: the command plants sbx.jsonc
/// as a symlink to a file of the user's (valid JSONC, so that sbx gets as
/// far as writing); the answer replaces the link and leaves the file alone.
#[test]
fn an_always_answer_never_writes_through_a_planted_policy_symlink() {
    require_root!();
    require_tool("tmux");
    require_tool("/usr/bin/python3");
    let (port, _hits) = http_server();
    let ws = Workspace::new(As::Root);
    ws.write("fetch.py", FETCH_PY);
    let victims = tempfile::tempdir().unwrap();
    let victim = victims.path().join("settings.json");
    std::fs::write(&victim, "{}\n").unwrap();
    let log = ws.path().join("audit.jsonl");
    let script = format!("ln -s {} sbx.jsonc; /usr/bin/python3 fetch.py http://127.0.0.1:{port}/ 2>/dev/null && echo fetch-\"ok\" || echo fetch-\"denied\"; sleep 60", victim.display());
    let t = start(&ws, "link", &format!("--ask --log {}", log.display()), &script);
    t.wait_for("the prompt", |s| s.contains(&format!("Reach 127.0.0.1:{port}")));
    t.keys(&["Tab"]);
    t.wait_for("the prompt to take the keyboard", |s| s.contains("answering"));
    std::thread::sleep(Duration::from_millis(600));
    t.keys(&["A"]);
    t.wait_for("the fetch", |s| s.contains("fetch-ok"));
    t.keys(&["q"]);
    t.wait_for("the quit confirmation", |s| s.contains("kill the command and quit?"));
    t.keys(&["y"]);
    t.wait_for("the session's end", |_| read_log(&log).iter().any(|e| e["type"] == "session_end"));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "{}\n", "written through the symlink");
    let policy = ws.path().join("sbx.jsonc");
    assert!(policy.symlink_metadata().unwrap().file_type().is_file(), "the link was not replaced");
    assert!(std::fs::read_to_string(&policy).unwrap().contains(&format!("\"127.0.0.1:{port}\"")));
}

/// Regression: the terminal closed right after "kill the command and quit" (the export test's
/// end, or a user closing the window): crossterm's reader then read end-of-file for ever, and
/// sbx waited for it at exit, spinning at a fifth of a CPU for hours. sbx now exits.
#[test]
fn sbx_exits_when_its_terminal_closes_as_it_quits() {
    require_root!();
    require_tool("tmux");
    let ws = Workspace::new(As::Root);
    let marker = format!("sbx-closed-terminal-{}", std::process::id());
    for _ in 0..3 {
        let t = start(&ws, "closed", "", &format!("echo ready; sleep 30 # {marker}"));
        t.wait_for("the command", |s| s.contains("ready"));
        t.keys(&["q"]);
        t.wait_for("the quit confirmation", |s| s.contains("kill the command and quit?"));
        t.keys(&["y"]);
        drop(t);
    }
    let left = || Command::new("pgrep").args(["-f", &marker]).output().unwrap().stdout;
    for _ in 0..100 {
        if left().is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pids = String::from_utf8_lossy(&left()).into_owned();
    for pid in pids.split_whitespace() {
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
    panic!("sbx (or its command) is still running after its terminal closed: {pids}");
}

/// Issue 17, 4: with stdin a pipe and a terminal on stdout, the command reads the pipe and
/// the dashboard takes its keys from the terminal: `q` works (it hung before).
#[test]
fn piped_stdin_goes_to_the_command_and_keys_still_reach_the_dashboard() {
    require_root!();
    require_tool("tmux");
    for who in [As::Root, As::User] {
        let ws = Workspace::new(who);
        let done = ws.path().join("exit-status");
        let sbx = sbx_as(who);
        let shell = format!(
            "cd {} && echo piped-data | {sbx} monitor -- sh -c 'read x; echo got-$x; sleep 60'; echo $? > {}; sleep 30",
            ws.path().display(),
            done.display()
        );
        let t = Tmux { session: format!("sbx-pipe-{who:?}-{}", std::process::id()) };
        assert!(Command::new("tmux").args(["new-session", "-d", "-s", &t.session, "-x", "120", "-y", "40", &shell]).status().unwrap().success());
        t.wait_for("the command's line", |s| s.contains("got-piped-data"));
        t.keys(&["q"]);
        t.wait_for("the quit question", |s| s.contains("kill the command and quit?"));
        t.keys(&["y"]);
        for _ in 0..100 {
            if done.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(done.exists(), "{who:?}: sbx did not quit on q, y; the screen:\n{}", t.screen());
    }
}

/// The output pane's inside on a dashboard screen (rows between its
/// borders, trailing blanks removed) and its size (columns, rows).
fn output_pane(screen: &str) -> Option<(Vec<String>, (u16, u16))> {
    // Each line as columns: a wide character, then a `None` for its second
    // column.
    let columns = |l: &str| -> Vec<Option<char>> {
        l.chars().flat_map(|c| [Some(Some(c)), (unicode_width::UnicodeWidthChar::width(c) == Some(2)).then_some(None)]).flatten().collect()
    };
    let lines: Vec<Vec<Option<char>>> = screen.lines().map(columns).collect();
    let title: Vec<Option<char>> = columns("┌ 2 Output");
    let (top, left) = lines.iter().enumerate().find_map(|(i, l)| l.windows(title.len()).position(|w| w == title.as_slice()).map(|c| (i, c)))?;
    let right = (left + 1..lines[top].len()).find(|&c| lines[top][c] == Some('┐'))?;
    let mut rows = Vec::new();
    for line in &lines[top + 1..] {
        if line.get(left) == Some(&Some('└')) {
            let size = ((right - left - 1) as u16, rows.len() as u16);
            return Some((rows, size));
        }
        rows.push(line.get(left + 1..right)?.iter().flatten().collect::<String>().trim_end().to_string());
    }
    None
}

/// Waits until `sbx_rows` (what sbx shows of the command) equals the same
/// program's screen run directly in `direct`; panics with both otherwise.
fn assert_same_screen(what: &str, direct: &Tmux, sbx_rows: impl Fn() -> Vec<String>) {
    let (mut mine, mut theirs) = (Vec::new(), Vec::new());
    // As generous as `Tmux::wait_for`.
    for _ in 0..200 {
        mine = sbx_rows();
        theirs = direct.rows();
        // capture-pane leaves out trailing blank rows.
        while mine.last().is_some_and(|l| l.is_empty()) {
            mine.pop();
        }
        while theirs.last().is_some_and(|l| l.is_empty()) {
            theirs.pop();
        }
        if mine == theirs && !mine.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what}: sbx shows\n{}\n---- run directly:\n{}\n----", mine.join("\n"), theirs.join("\n"));
}

/// A known file of 100 numbered lines in `ws`.
fn numbered_file(ws: &Workspace) {
    let text: String = (1..=100).map(|i| format!("line number {i} of the known file\n")).collect();
    ws.write("file.txt", &text);
}

/// Issue 20: vim in the output pane, then zoomed, shows what it shows in a
/// terminal of the same size (cursor addressing, scroll regions, the
/// alternate screen); the pty follows the pane, then the zoomed screen.
#[test]
fn vim_in_the_pane_and_zoomed_looks_as_in_a_terminal() {
    require_root!();
    require_tool("tmux");
    require_tool("vim");
    let ws = Workspace::new(As::Root);
    numbered_file(&ws);
    let vim = "vim -u NONE -n file.txt";
    let t = start(&ws, "vim", "", vim);
    let screen = t.wait_for("vim in the pane", |s| output_pane(s).is_some_and(|(rows, _)| rows.iter().any(|r| r.contains("\"file.txt\" 100 lines"))));
    let (_, (cols, rows)) = output_pane(&screen).unwrap();
    assert_eq!((cols, rows), (58, 11), "the pane at 120x40:\n{screen}");
    let direct = Tmux::start("vim-direct", cols, rows, &format!("cd {} && {vim}; sleep 30", ws.path().display()));
    let pane = || output_pane(&t.screen()).map(|(rows, _)| rows).unwrap_or_default();
    assert_same_screen("vim in the pane", &direct, pane);
    // Keys reach vim through the pane: a jump, a deletion (a scroll
    // region), line numbers (a full redraw).
    t.keys(&["2"]);
    for keys in [&["50G"][..], &["d", "d"], &[":set nu", "Enter"]] {
        t.keys(keys);
        direct.keys(keys);
    }
    assert_same_screen("vim in the pane after 50G, dd, :set nu", &direct, pane);
    // Zoomed, vim gets the whole terminal but the status line.
    t.keys(&["C-]"]);
    direct.resize(120, 39);
    let zoomed = || t.rows().into_iter().take(39).collect::<Vec<_>>();
    assert_same_screen("vim zoomed", &direct, zoomed);
    assert!(t.rows()[39].contains("Ctrl-] dashboard"), "{}", t.screen());
    for keys in [&["gg"][..], &["/number 7", "Enter"], &["x"]] {
        t.keys(keys);
        direct.keys(keys);
    }
    assert_same_screen("vim zoomed after gg, /number 7, x", &direct, zoomed);
    // Back to the dashboard: vim is in the pane again, at the pane's size.
    t.keys(&["C-]"]);
    direct.resize(cols, rows);
    assert_same_screen("vim back in the pane", &direct, pane);
    t.keys(&[":q!", "Enter"]);
    t.wait_for("the command's end", |s| s.contains("exited 0"));
}

/// Issue 20: less, started zoomed (`--zoom`), shows what it shows in a
/// terminal of the same size; quitting it brings the dashboard back.
#[test]
fn less_started_zoomed_looks_as_in_a_terminal() {
    require_root!();
    require_tool("tmux");
    require_tool("less");
    let ws = Workspace::new(As::Root);
    numbered_file(&ws);
    let t = start(&ws, "less", "--zoom", "less file.txt");
    let direct = Tmux::start("less-direct", 120, 39, &format!("cd {} && less file.txt; sleep 30", ws.path().display()));
    let zoomed = || t.rows().into_iter().take(39).collect::<Vec<_>>();
    assert_same_screen("less zoomed", &direct, zoomed);
    for keys in [&["G"][..], &["/number 42", "Enter"], &["b"]] {
        t.keys(keys);
        direct.keys(keys);
    }
    assert_same_screen("less zoomed after G, /number 42, b", &direct, zoomed);
    t.keys(&["q"]);
    let screen = t.wait_for("the dashboard after less quits", |s| s.contains("exited 0") && s.contains("┌ 1 Violations"));
    assert!(output_pane(&screen).is_some(), "{screen}");
}

/// A small curses program: a box, colours, a wide character, its size,
/// redrawn on every resize.
const CURSES_PY: &str = r#"
import curses, sys
def draw(s):
    s.erase()
    s.box()
    lines, cols = s.getmaxyx()
    s.addstr(1, 2, "size %dx%d" % (cols, lines), curses.A_BOLD)
    s.addstr(2, 2, "red and reverse", curses.color_pair(1))
    s.addstr(2, 20, "rev", curses.A_REVERSE)
    if sys.argv[1:] != ["ascii"]:
        s.addstr(3, 2, "\u6f22\u5b57 wide")
    s.refresh()
def main(s):
    curses.start_color()
    curses.use_default_colors()
    curses.init_pair(1, curses.COLOR_RED, -1)
    draw(s)
    while True:
        k = s.getch()
        if k == ord("q"):
            break
        if k == curses.KEY_RESIZE:
            curses.update_lines_cols()
            draw(s)
curses.wrapper(main)
"#;

/// Issue 20: a curses program in the pane looks as in a terminal, and sees
/// every resize: of the terminal (another layout), zoom and back.
#[test]
fn a_curses_program_follows_every_resize() {
    require_root!();
    require_tool("tmux");
    require_tool("/usr/bin/python3");
    let ws = Workspace::new(As::Root);
    ws.write("box.py", CURSES_PY);
    let t = start(&ws, "curses", "", "/usr/bin/python3 box.py");
    let pane = || output_pane(&t.screen()).map(|(rows, _)| rows).unwrap_or_default();
    let screen = t.wait_for("the program in the pane", |s| s.contains("size 58x11"));
    let direct = Tmux::start("curses-direct", 58, 11, &format!("cd {} && /usr/bin/python3 box.py; sleep 30", ws.path().display()));
    assert_same_screen("curses in the pane", &direct, pane);
    drop(screen);
    // A smaller terminal: the compact layout, whose lower half is the pane.
    t.resize(90, 30);
    let screen = t.wait_for("the new size", |s| output_pane(s).is_some_and(|(_, (c, r))| s.contains(&format!("size {c}x{r}")) && (c, r) != (58, 11)));
    let (_, (cols, rows)) = output_pane(&screen).unwrap();
    assert_eq!((cols, rows), (88, 11), "{screen}");
    direct.resize(cols, rows);
    assert_same_screen("curses after the terminal's resize", &direct, pane);
    // Zoom and back.
    t.keys(&["z"]);
    t.wait_for("the zoomed size", |s| s.contains("size 90x29"));
    t.keys(&["C-]"]);
    t.wait_for("the pane's size again", |s| s.contains("size 88x11"));
    t.keys(&["2"]);
    t.keys(&["q"]);
    t.wait_for("the command's end", |s| s.contains("exited 0"));
}

/// Issue 20: zoomed, Ctrl-C, Esc, Tab and q go to the command (Ctrl-C as
/// SIGINT, through the pty's line discipline); only Ctrl-] comes back.
#[test]
fn zoomed_every_key_but_ctrl_bracket_reaches_the_command() {
    require_root!();
    require_tool("tmux");
    let ws = Workspace::new(As::Root);
    let script = r#"trap "echo got-INT" INT; echo ready; while :; do if read -r line; then printf "%s\n" "$line" | cat -A; fi; done"#;
    let t = start(&ws, "zoomkeys", "--zoom", script);
    t.wait_for("the command", |s| s.contains("ready"));
    t.keys(&["C-c"]);
    t.wait_for("the command's trap", |s| s.contains("got-INT"));
    t.keys(&["q"]);
    t.keys(&["Tab"]);
    t.keys(&["Escape"]);
    t.keys(&["x", "Enter"]);
    let screen = t.wait_for("the line read", |s| s.contains("q^I^[x$"));
    assert!(!screen.contains("kill the command and quit") && !screen.contains("Violations"), "{screen}");
    assert!(screen.lines().last().is_some_and(|l| l.contains("Ctrl-] dashboard")), "{screen}");
    t.keys(&["C-]"]);
    t.wait_for("the dashboard", |s| s.contains("┌ 1 Violations"));
    t.keys(&["q"]);
    t.wait_for("the quit confirmation", |s| s.contains("kill the command and quit?"));
    t.keys(&["y"]);
    t.wait_for("the exit summary", |s| !s.contains("Violations"));
}

/// Issue 20: outside a UTF-8 locale curses draws lines with the DEC special
/// graphics set (`ESC ( 0`, then `lqqk`), which the emulator has not: the
/// pane shows the lines a terminal shows.
#[test]
fn curses_line_drawing_outside_utf8_looks_as_in_a_terminal() {
    require_root!();
    require_tool("tmux");
    require_tool("/usr/bin/python3");
    let ws = Workspace::new(As::Root);
    ws.write("box.py", CURSES_PY);
    let program = "env LC_ALL=C /usr/bin/python3 box.py ascii";
    let t = start(&ws, "acs", "", program);
    t.wait_for("the program in the pane", |s| s.contains("size 58x11"));
    let direct = Tmux::start("acs-direct", 58, 11, &format!("cd {} && {program}; sleep 30", ws.path().display()));
    // tmux keeps line-drawing cells as their letters (`capture-pane -p`
    // shows `lqqk`), marked as such in `-e`'s output (SO ... SI): drawn, and
    // compared, as the lines tmux shows.
    let drawn = || {
        let raw = direct.tmux(&["capture-pane", "-t", &direct.session, "-p", "-e"]);
        let (mut out, mut graphics, mut chars) = (String::new(), false, raw.chars());
        while let Some(c) = chars.next() {
            match c {
                '\x0e' => graphics = true,
                '\x0f' => graphics = false,
                // An SGR sequence: its attributes are not compared here.
                '\x1b' => for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                },
                c if graphics => out.push(match c {
                    'j' => '┘',
                    'k' => '┐',
                    'l' => '┌',
                    'm' => '└',
                    'q' => '─',
                    'x' => '│',
                    other => other,
                }),
                c => out.push(c),
            }
        }
        let mut rows: Vec<String> = out.lines().map(|l| l.trim_end().to_string()).collect();
        while rows.last().is_some_and(|l| l.is_empty()) {
            rows.pop();
        }
        rows
    };
    let pane = || output_pane(&t.screen()).map(|(rows, _)| rows).unwrap_or_default();
    for _ in 0..200 {
        if drawn().len() == 11 && pane() == drawn() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(pane(), drawn(), "curses in the C locale: sbx's pane, then the program run directly");
    assert!(pane()[0].starts_with("┌───"), "{}", t.screen());
    t.keys(&["2"]);
    t.keys(&["q"]);
    t.wait_for("the command's end", |s| s.contains("exited 0"));
}

/// Issue 20: an `--ask` request that arrives while the command is zoomed
/// waits, said on the status line; keys typed for the command (the prompt's
/// own letters included) answer nothing; Ctrl-] then Tab answers it.
#[test]
fn a_prompt_waits_while_zoomed_and_typing_answers_nothing() {
    require_root!();
    require_tool("tmux");
    require_tool("/usr/bin/python3");
    let (port, hits) = http_server();
    let ws = Workspace::new(As::Root);
    ws.write("fetch.py", FETCH_PY);
    let log = ws.path().join("audit.jsonl");
    let script = format!(
        "(/usr/bin/python3 fetch.py http://127.0.0.1:{port}/ 2>/dev/null && echo fetch-\"ok\" || echo fetch-\"denied\") & read line; echo \"got-$line\"; wait; sleep 60"
    );
    let t = start(&ws, "zoomask", &format!("--zoom --ask --log {}", log.display()), &script);
    let screen = t.wait_for("the status line", |s| s.contains(&format!("request to 127.0.0.1:{port} held: Ctrl-], Tab to answer")));
    assert!(!screen.contains("Reach 127.0.0.1"), "the prompt covers the command:\n{screen}");
    t.keys(&["-l", "aAdD"]);
    t.keys(&["Tab", "Enter"]);
    let screen = t.wait_for("the command's answer", |s| s.contains("got-aAdD"));
    assert!(screen.contains(&format!("request to 127.0.0.1:{port} held")), "answered:\n{screen}");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    t.keys(&["C-]"]);
    t.wait_for("the prompt", |s| s.contains(&format!("Reach 127.0.0.1:{port}")));
    t.keys(&["Tab"]);
    t.wait_for("the prompt to take the keyboard", |s| s.contains("answering"));
    std::thread::sleep(Duration::from_millis(600));
    t.keys(&["a"]);
    t.wait_for("the fetch", |s| s.contains("fetch-ok"));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    t.keys(&["q"]);
    t.wait_for("the quit confirmation", |s| s.contains("kill the command and quit?"));
    t.keys(&["y"]);
    t.wait_for("the session's end", |_| read_log(&log).iter().any(|e| e["type"] == "session_end"));
    let answers: Vec<String> = read_log(&log).iter().filter(|e| e["type"] == "policy").map(|e| e["action"].as_str().unwrap().to_string()).collect();
    assert_eq!(answers, ["allow_once"]);
}

/// Issue 20: Claude Code under the dashboard showed its messages with the
/// spaces missing ("UnabletoconnecttoAnthropicservices"): ink places words
/// with cursor movements, which the line-keeping pane dropped.
#[test]
fn claude_code_in_the_pane_keeps_its_spaces() {
    require_root!();
    require_tool("tmux");
    let Some(claude) = std::env::var_os("SBX_TEST_CLAUDE").map(std::path::PathBuf::from).filter(|p| p.is_file()) else {
        sbx_integration_tests::skip!("Claude Code is not installed: run the tests through `cargo xtask test`")
    };
    let ws = Workspace::new(As::Root);
    let home = tempfile::tempdir().unwrap();
    // No model to reach: the API address refuses at once, without retries.
    let shell = format!(
        "cd {} && env HOME={} ANTHROPIC_API_KEY=sk-test ANTHROPIC_BASE_URL=http://127.0.0.1:9 CLAUDE_CODE_MAX_RETRIES=0 DISABLE_AUTOUPDATER=1 {} monitor -t code -- {}; sleep 30",
        ws.path().display(),
        home.path().display(),
        sbx_bin().display(),
        claude.display()
    );
    let t = Tmux::start("claude", 120, 40, &shell);
    let screen = t.wait_for("Claude Code's message", |s| output_pane(s).is_some_and(|(rows, _)| rows.iter().any(|r| r.contains("to connect to"))));
    let (rows, _) = output_pane(&screen).unwrap();
    assert!(!rows.iter().any(|r| r.contains("toconnectto")), "{screen}");
}

/// `sbx run` on a terminal it shares with the command (no dashboard): Ctrl-C reaches the
/// command, which may handle it and go on (a REPL), and no longer kills bubblewrap and the
/// session with it; a command that does not handle it ends as from a shell (130).
#[test]
fn ctrl_c_on_a_shared_terminal_reaches_the_command_not_the_sandbox() {
    require_root!();
    require_tool("tmux");
    require_tool("python3");
    let ws = Workspace::new(As::Root);
    ws.write("t.py", "import time\ntry:\n    print('ready', flush=True)\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    print('caught', flush=True)\n    time.sleep(0.5)\n    print('still alive', flush=True)\n");
    ws.write("q.py", "import signal, time\nsignal.signal(signal.SIGQUIT, lambda *a: print('quit caught', flush=True))\nprint('ready', flush=True)\ntime.sleep(1.5)\nprint('done', flush=True)\n");
    for (command, key, expect) in [
        ("python3 t.py", "C-c", "ready\ncaught\nstill alive\nEXIT=0"),
        ("sh -c 'echo ready; exec sleep 60'", "C-c", "ready\nEXIT=130"),
        // Ctrl-\ too: neither bwrap nor sbx dies of it (sbx would skip its exit checks).
        ("python3 q.py", "C-\\", "ready\nquit caught\ndone\nEXIT=0"),
    ] {
        let shell = format!("cd {} && {} run -- {command}; echo EXIT=$?; sleep 30", ws.path().display(), sbx_bin().display());
        let t = Tmux::start("ctrlc", 80, 12, &shell);
        t.wait_for("the command to start", |s| s.contains("ready"));
        t.keys(&[key]);
        let screen = t.wait_for("the exit status", |s| s.contains("EXIT="));
        let shown: Vec<&str> = screen.lines().map(|l| l.trim_start_matches("^C").trim_start_matches("^\\").trim()).filter(|l| !l.is_empty()).collect();
        assert_eq!(shown.join("\n"), expect, "{command}: the screen:\n{screen}");
    }
}

/// `sbx monitor --replay LOG` over a real session's log: the dashboard as it was at each
/// event (the time cursor), the seal verified; then the same log with one line edited,
/// which still opens, its header saying where it fails verification.
#[test]
fn replay_shows_a_recorded_session_at_each_event_and_says_when_the_log_fails_verification() {
    require_root!();
    require_tool("tmux");
    let ws = Workspace::new(As::Root);
    let log = ws.path().join("audit.jsonl");
    let run = Command::new(sbx_bin())
        .current_dir(ws.path())
        .args(["run", "--log"])
        .arg(&log)
        .args(["--", "sh", "-c", "cat /etc/shadow; echo x > /etc/sbx-replay-first; sleep 0.2; echo y > /etc/sbx-replay-second"])
        .output()
        .unwrap();
    assert!(!run.status.success(), "the writes fail: {run:?}");
    let lines = read_log(&log);
    let second = lines.iter().position(|l| l["type"] == "denial" && l["path"] == "/etc/sbx-replay-second").expect("the second denial is logged");
    let total = lines.len();

    let replay = |name: &str, log: &std::path::Path| {
        let t = Tmux { session: format!("sbx-replay-{name}-{}", std::process::id()) };
        let shell = format!("{} monitor --replay {}; sleep 30", sbx_bin().display(), log.display());
        assert!(Command::new("tmux").args(["new-session", "-d", "-s", &t.session, "-x", "120", "-y", "40", &shell]).status().unwrap().success());
        t
    };
    let t = replay("ok", &log);
    let screen = t.wait_for("the log's end, verified", |s| s.contains("seal verified"));
    assert!(screen.contains(&format!("replay event {total}/{total}")), "{screen}");
    assert!(screen.contains("/etc/sbx-replay-first") && screen.contains("/etc/sbx-replay-second"), "{screen}");
    assert!(screen.contains("exited "), "{screen}");
    assert!(screen.contains("sh -c 'cat /etc/shadow"), "the command, from session_start:\n{screen}");

    // To just before the second denial: the first is there, the second not yet, the
    // session still running; the tail ends with what came before it.
    t.keys(&[":"]);
    t.wait_for("the seek prompt", |s| s.contains("go to event"));
    t.keys(&[&second.to_string(), "Enter"]);
    let screen = t.wait_for("the cursor", |s| s.contains(&format!("replay event {second}/{total}")));
    assert!(screen.contains("/etc/sbx-replay-first"), "{screen}");
    assert!(!screen.contains("/etc/sbx-replay-second"), "not yet:\n{screen}");
    assert!(screen.contains("running"), "{screen}");
    // One event on: the second denial, at the tail's end.
    t.keys(&["Right"]);
    let screen = t.wait_for("one event on", |s| s.contains(&format!("replay event {}/{total}", second + 1)));
    let tail_end = screen.lines().rfind(|l| l.contains("denied")).unwrap_or_default().to_string();
    assert!(tail_end.contains("/etc/sbx-replay-second"), "{screen}");
    // Its detail, with the ancestry of the process that was refused.
    t.keys(&["/", "second", "Enter"]);
    t.wait_for("the filter", |s| s.contains("filter \"second\""));
    t.keys(&["Enter"]);
    let screen = t.wait_for("the detail", |s| s.contains("Violation detail"));
    assert!(screen.contains("path           /etc/sbx-replay-second"), "{screen}");
    assert!(screen.contains("ancestry"), "{screen}");
    t.keys(&["Escape"]);
    t.wait_for("the detail to close", |s| !s.contains("Violation detail"));
    std::thread::sleep(Duration::from_millis(200));
    // Back to the start.
    t.keys(&["{"]);
    t.wait_for("the start", |s| s.contains(&format!("replay event 0/{total}")) && s.contains("before the session"));
    t.keys(&["q"]);
    t.wait_for("the dashboard to go", |s| !s.contains("replay event"));
    drop(t);

    // One line edited (the first denial's path): it opens, and says where it fails.
    let text = std::fs::read_to_string(&log).unwrap();
    let edited = ws.path().join("edited.jsonl");
    std::fs::write(&edited, text.replacen("\"path\":\"/etc/sbx-replay-first\"", "\"path\":\"/etc/innocent\"", 1)).unwrap();
    let first = lines.iter().position(|l| l["type"] == "denial" && l["path"] == "/etc/sbx-replay-first").unwrap();
    let t = replay("edited", &edited);
    let screen = t.wait_for("the verification's outcome", |s| s.contains("LOG FAILS VERIFICATION"));
    assert!(screen.contains(&format!("LOG FAILS VERIFICATION at line {}: its MAC does not match", first + 1)), "{screen}");
    assert!(screen.contains("/etc/innocent"), "{screen}");
    t.keys(&["q"]);
    t.wait_for("the dashboard to go", |s| !s.contains("replay event"));
}

/// `--replay` with a command, or a log that cannot be replayed: one sentence, 125.
#[test]
fn replay_refuses_a_command_and_a_missing_log_in_one_sentence() {
    let ws = Workspace::new(As::Root);
    let out = Command::new(sbx_bin()).current_dir(ws.path()).args(["monitor", "--replay", "x.jsonl", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "sbx: --replay shows a recorded log and runs no command: give either --replay LOG or a command after --, not both"
    );
    let out = Command::new(sbx_bin()).current_dir(ws.path()).args(["monitor", "--replay", "missing.jsonl"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("sbx: cannot replay missing.jsonl: ") && err.trim_end().lines().count() == 1, "{err}");
    // Not a log: refused before the terminal is looked at.
    std::fs::write(ws.path().join("notes.txt"), "hello\n").unwrap();
    let out = Command::new(sbx_bin()).current_dir(ws.path()).args(["monitor", "--replay", "notes.txt"]).output().unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("sbx: cannot replay notes.txt: it holds no sbx event (1 unreadable line; line 1: not a JSON event"), "{out:?}");
}
