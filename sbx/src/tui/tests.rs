//! Snapshot-style tests: scripted `Msg` sequences rendered on ratatui's
//! `TestBackend`, compared line by line with the expected screen.

use std::{
    ffi::OsString,
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::{Terminal, backend::TestBackend, buffer::Buffer};

use super::*;
use crate::{
    policy::Policy,
    report::{Denial, Loss, Net, Process, ProcessAction, SessionEnd, SessionStart, Source},
    sandbox::{Enforcement, LandlockReport, LandlockStatus},
};

mod replay;

const T0: u64 = 1_700_000_000;

fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(T0) + Duration::from_millis(ms)
}

fn command() -> Vec<OsString> {
    vec!["npm".into(), "install".into()]
}

fn start(landlock: LandlockStatus, seccomp: bool) -> report::Event {
    report::Event::SessionStart(Box::new(SessionStart {
        command: command(),
        policy: Policy::builtin("/w".into(), Some("/h".into())),
        sources: vec!["built-in default".into()],
        enforcement: Enforcement { landlock: Some(LandlockReport { abi: 7, status: landlock }), seccomp, blocked_syscalls: 52, netns: true, ..Enforcement::default() },
        unenforced_limits: Vec::new(),
        observation: crate::sandbox::Observation { kernel_tracer: true, reason: None },
    }))
}

fn landlock_write(path: &str, pid: u32, comm: &str) -> report::Event {
    report::Event::Denial(Denial {
        syscall: Some("openat".into()),
        errno: Some("EACCES".into()),
        operation: Some("write".into()),
        pid: Some(pid),
        tid: Some(pid),
        comm: Some(comm.into()),
        path: Some(PathBuf::from(path)),
        requested_path: Some(path.trim_start_matches("/etc/").into()),
        detail: vec![("reason".into(), "not under a writable root".into())],
        ..Denial::of(Source::Landlock)
    })
}

fn seccomp_mount() -> report::Event {
    report::Event::Denial(Denial {
        syscall: Some("mount".into()),
        errno: Some("EPERM".into()),
        pid: Some(43),
        comm: Some("mount".into()),
        detail: vec![
            ("call".into(), r#"mount("tmpfs", "/mnt", "tmpfs", 0, NULL)"#.into()),
            ("reason".into(), "mount is blocked by the seccomp filter".into()),
        ],
        ..Denial::of(Source::Seccomp)
    })
}

fn net(host: &str, port: u16, allowed: bool, rule: &str) -> report::Event {
    report::Event::Net(Net {
        protocol: "connect",
        via: Some("proxy"),
        host: host.into(),
        port,
        allowed,
        rule: rule.into(),
        resolved: None,
        client: "127.0.0.1:5555".into(),
    })
}

fn proxy_denial(host: &str, port: u16) -> report::Event {
    report::Event::Denial(Denial {
        operation: Some("connect".into()),
        host: Some(host.into()),
        port: Some(port),
        detail: vec![("rule".into(), "no rule allows it".into()), ("protocol".into(), "connect".into())],
        ..Denial::of(Source::Proxy)
    })
}

fn exec(pid: u32, argv: &[&str]) -> report::Event {
    report::Event::Process(Process {
        action: ProcessAction::Exec,
        pid,
        ppid: None,
        comm: argv[0].into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        exe: Some(PathBuf::from(format!("/usr/bin/{}", argv[0]))),
    })
}

/// An exec of `pid` whose parent is `ppid`.
fn exec_child(pid: u32, ppid: u32, argv: &[&str]) -> report::Event {
    match exec(pid, argv) {
        report::Event::Process(p) => report::Event::Process(Process { ppid: Some(ppid), ..p }),
        _ => unreachable!(),
    }
}

fn exit(pid: u32, comm: &str) -> report::Event {
    report::Event::Process(Process { action: ProcessAction::Exit, pid, ppid: None, comm: comm.into(), argv: Vec::new(), exe: None })
}

fn key(code: KeyCode) -> Msg {
    Msg::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ch(c: char) -> Msg {
    key(KeyCode::Char(c))
}

/// Moves the dashboard's clock on by `ms`.
fn tick(app: &mut App, ms: u64) {
    let now = app.now + Duration::from_millis(ms);
    app.update(Msg::Tick(now));
}

fn buffer_lines(buf: &Buffer) -> Vec<String> {
    let area = buf.area;
    (0..area.height)
        .map(|y| {
            let mut line = String::new();
            for x in 0..area.width {
                line.push_str(buf[(x, y)].symbol());
            }
            line.trim_end().to_string()
        })
        .collect()
}

fn screen(app: &App, w: u16, h: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| app.render(f)).unwrap();
    buffer_lines(terminal.backend().buffer())
}

/// The text of the detail overlay's lines at 120x40 (inside its borders).
fn overlay_lines(lines: &[String]) -> Vec<String> {
    lines.iter().map(|l| l.chars().skip(3).take(114).collect::<String>().trim_end().to_string()).collect()
}

/// Prints the screen (seen with --nocapture or when the test fails).
fn show(screen: &[String]) {
    println!("{}", screen.join("\n"));
}

#[track_caller]
fn assert_contains(screen: &[String], text: &str) {
    assert!(screen.iter().any(|l| l.contains(text)), "{text:?} not on the screen:\n{}", screen.join("\n"));
}

#[track_caller]
fn assert_absent(screen: &[String], text: &str) {
    assert!(!screen.iter().any(|l| l.contains(text)), "{text:?} on the screen:\n{}", screen.join("\n"));
}

/// A session with the three denials of the brief, a few seconds apart.
fn few_denials() -> App {
    let now = Instant::now();
    let mut app = App::new(&command(), now);
    for (ms, e) in [
        (0, start(LandlockStatus::Full, true)),
        (100, exec(42, &["sh", "-c", "echo x > /etc/x"])),
        (1_000, landlock_write("/etc/x", 42, "sh")),
        (2_000, landlock_write("/etc/x", 42, "sh")),
        (3_000, seccomp_mount()),
        (4_000, net("evil.example", 443, false, "no rule allows it")),
        (4_000, proxy_denial("evil.example", 443)),
        (5_000, net("github.com", 443, true, "allowedDomains: github.com")),
    ] {
        app.update(Msg::Event(e, at(ms)));
    }
    app.update(Msg::Tick(now + Duration::from_secs(65)));
    app
}

/// Without namespaces (`--no-namespaces`), the header says netns is off and what is not
/// enforced, in place of bwrap.
#[test]
fn without_namespaces_the_header_says_what_is_not_enforced() {
    let now = Instant::now();
    let mut app = App::new(&command(), now);
    let mut e = start(LandlockStatus::Full, true);
    if let report::Event::SessionStart(s) = &mut e {
        s.enforcement.netns = false;
        s.enforcement.not_enforced = vec!["network: none".into(), "no private /tmp".into()];
    }
    app.update(Msg::Event(e, at(0)));
    let s = screen(&app, 120, 40);
    show(&s);
    assert_eq!(s[1], "enforcement: landlock full (ABI 7)  seccomp on  netns OFF  no namespaces, not enforced: network: none; no private /tmp");
}

#[test]
fn empty_session() {
    let now = Instant::now();
    let mut app = App::new(&command(), now);
    app.update(Msg::Event(start(LandlockStatus::Full, true), at(0)));
    let s = screen(&app, 120, 40);
    show(&s);
    assert_eq!(s[0], " sbx  running 0:00  npm install");
    assert_eq!(s[1], "enforcement: landlock full (ABI 7)  seccomp on  netns on  bwrap on");
    assert_eq!(s[2], "denials 0: landlock 0 seccomp 0 proxy 0 netns 0 mount 0 dac 0 other 0 · net 0 ok 0 denied · lost 0");
    let full = |s: &str| format!("{s:<118}");
    assert_eq!(s[3], format!("┌ 1 Violations 0/0 · sort count {}┐", "─".repeat(87)));
    assert_eq!(s[4], format!("│{}│", full("no denials yet")));
    assert_eq!(s[5], format!("│{}│", full("")));
    assert_eq!(s[17], "┌ 4 Processes 0 running / 0 ───────────────────────────────┐┌ 5 Network 0 hosts · 0 ok 0 denied ───────────────────────┐");
    assert_eq!(s[18], "│(no process seen yet)                                     ││(no connection through the proxy yet)                     │");
    assert_eq!(s[26], "┌ 2 Output ────────────────────────────────────────────────┐┌ 3 Events 1 ──────────────────────────────────────────────┐");
    assert_eq!(s[27], "│(no output yet)                                           ││ +0:00 start  npm install                                 │");
    assert_eq!(s[38], "└──────────────────────────────────────────────────────────┘└──────────────────────────────────────────────────────────┘");
    assert_eq!(s[39], "q quit ? help Tab pane Enter detail / filter s sort space pause e export z zoom");
}

#[test]
fn degraded_layers_are_yellow_and_lost_is_red() {
    let now = Instant::now();
    let mut app = App::new(&command(), now);
    app.update(Msg::Event(start(LandlockStatus::Partial, false), at(0)));
    app.update(Msg::Event(report::Event::Loss(Loss { source: "ebpf", count: 7 }), at(10)));
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    terminal.draw(|f| app.render(f)).unwrap();
    let buf = terminal.backend().buffer().clone();
    let s = buffer_lines(&buf);
    assert_eq!(s[1], "enforcement: landlock partial (ABI 7)  seccomp OFF  netns on  bwrap on");
    let col = |line: u16, text: &str| s[line as usize].find(text).map(|i| s[line as usize][..i].chars().count() as u16).unwrap();
    assert_eq!(buf[(col(1, "landlock"), 1)].fg, ratatui::style::Color::Yellow);
    assert_eq!(buf[(col(1, "seccomp"), 1)].fg, ratatui::style::Color::Yellow);
    assert_eq!(buf[(col(1, "netns"), 1)].fg, ratatui::style::Color::Green);
    assert_eq!(buf[(col(2, "lost 7"), 2)].fg, ratatui::style::Color::Red);
    // SessionEnd's total wins when larger.
    app.update(Msg::Event(report::Event::SessionEnd(SessionEnd { exit_code: 1, lost: 9 }), at(20)));
    let s = screen(&app, 120, 40);
    assert!(s[2].ends_with("lost 9"), "{}", s[2]);
    assert_eq!(s[0], " sbx  exited 1 0:00  npm install");
}

#[test]
fn a_few_denials() {
    let app = few_denials();
    let s = screen(&app, 120, 40);
    show(&s);
    assert_eq!(s[0], " sbx  running 1:05  npm install");
    assert_eq!(s[2], "denials 4: landlock 2 seccomp 1 proxy 1 netns 0 mount 0 dac 0 other 0 · net 1 ok 1 denied · lost 0");
    let expected = [
        "┌ 1 Violations 3/3 · sort count ───────────────────────────────────────────────────────────────────────────────────────┐",
        "│COUNT   SOURCE   OP        OBJECT                                                     PROCESSES        FIRST   LAST   │",
        "│2       landlock write     /etc/x                                                     sh[42]           +0:01   +0:02  │",
        "│1       proxy    connect   evil.example:443                                                            +0:04   +0:04  │",
        "│1       seccomp  mount     mount(\"tmpfs\", \"/mnt\", \"tmpfs\", 0, NULL)                   mount[43]        +0:03   +0:03  │",
    ];
    assert_eq!(s[3..8], expected);
    let expected = [
        "┌ 4 Processes 2 running / 2 ───────────────────────────────┐┌ 5 Network 2 hosts · 1 ok 1 denied ───────────────────────┐",
        "│PID     DENIED      COMMAND                               ││OK    DENY  HOST                       LAST DECISION      │",
        "│42      2      run  sh -c echo x > /etc/x                 ││1     0     github.com:443             ok allowedDomains: │",
        "│43      1      run  mount                                 ││0     1     evil.example:443           denied no rule allo│",
    ];
    assert_eq!(s[17..21], expected);
    let expected = [
        "┌ 2 Output ────────────────────────────────────────────────┐┌ 3 Events 8 ──────────────────────────────────────────────┐",
        "│(no output yet)                                           ││ +0:00 start  npm install                                 │",
        "│                                                          ││ +0:00 exec   [42] sh -c echo x > /etc/x                  │",
        "│                                                          ││ +0:01 denied landlock write /etc/x sh[42]                │",
        "│                                                          ││ +0:02 denied landlock write /etc/x sh[42]                │",
        "│                                                          ││ +0:03 denied seccomp mount(\"tmpfs\", \"/mnt\", \"tmpfs\", 0, N│",
        "│                                                          ││ +0:04 net no connect evil.example:443 (no rule allows it)│",
        "│                                                          ││ +0:04 denied proxy connect evil.example:443              │",
        "│                                                          ││ +0:05 net ok connect github.com:443 (allowedDomains: gith│",
    ];
    assert_eq!(s[26..35], expected);
}

#[test]
fn compact_80x24() {
    let app = few_denials();
    let s = screen(&app, 80, 24);
    show(&s);
    assert_eq!(s[0], " sbx  running 1:05  npm install");
    assert_eq!(s[1], "enforcement: landlock full (ABI 7)  seccomp on  netns on  bwrap on");
    assert_eq!(s[2], "denials 4: landlock 2 seccomp 1 proxy 1 · net 1 ok 1 denied · lost 0");
    assert_eq!(s[3], "┌ 1 Violations 3/3 · sort count ───────────────────────────────────────────────┐");
    assert_eq!(s[4], "│COUNT  SOURCE   OP       OBJECT                                        LAST   │");
    assert_eq!(s[5], "│2      landlock write    /etc/x                                        +0:02  │");
    assert_eq!(s[6], "│1      proxy    connect  evil.example:443                              +0:04  │");
    assert_eq!(s[7], "│1      seccomp  mount    mount(\"tmpfs\", \"/mnt\", \"tmpfs\", 0, NULL)      +0:03  │");
    assert_eq!(s[23], "q quit ? help Tab pane Enter detail / filter s sort space pause e export z zoom");
    // The other half shows the output until another pane is chosen.
    assert_contains(&s, "┌ 2 Output ");
    let mut app = app;
    app.update(ch('4'));
    let s = screen(&app, 80, 24);
    assert_contains(&s, "┌ 4 Processes 2 running / 2 ");
    assert_contains(&s, "│42      2      run  sh -c echo x > /etc/x ");
}

#[test]
fn narrow_40x12() {
    let app = few_denials();
    let s = screen(&app, 40, 12);
    show(&s);
    assert_eq!(s[0], " sbx  running 1:05  npm install");
    assert_eq!(s[1], "landlock full/7 seccomp on netns on");
    assert_eq!(s[2], "denials 4 · net 1 ok 1 denied · lost 0");
    assert_eq!(s[3], "┌ 1 Violations 3/3 · sort count ───────┐");
    assert_eq!(s[4], "│COUNT SRC  OBJECT                     │");
    assert_eq!(s[5], "│2     land write /etc/x               │");
    assert_eq!(s[6], "│1     prox connect evil.example:443   │");
    assert_eq!(s[7], "│1     secc mount(\"tmpfs\", \"/mnt\", \"tmp│");
    assert_eq!(s[11], "q quit ? help Tab pane");
}

#[test]
fn tiny_sizes_do_not_panic() {
    let mut app = few_denials();
    app.update(Msg::Output(b"hello\nworld\n".to_vec()));
    for overlay in [None, Some(KeyCode::Enter), Some(KeyCode::Char('?')), Some(KeyCode::Char('q'))] {
        let mut app = few_denials();
        if let Some(k) = overlay {
            app.update(key(k));
        }
        for w in 0..=45 {
            for h in 0..=14 {
                screen(&app, w.max(1), h.max(1));
            }
        }
        for pane in ['2', '3', '4', '5'] {
            app.update(key(KeyCode::Esc));
            app.update(ch(pane));
            for (w, h) in [(1, 1), (5, 3), (12, 6), (20, 8), (40, 12)] {
                screen(&app, w, h);
            }
        }
    }
    // Zoomed, with a wide character at the right edge, resized through
    // every small size (the emulator's screen follows).
    let mut app = few_denials().start(Start::Zoom);
    for w in 1..=30 {
        for h in 1..=8 {
            app.update(Msg::Resize(w, h));
            app.update(Msg::Output("\x1b[H漢字漢字漢字漢字漢字漢字漢字\x1b[2;3Hx".as_bytes().to_vec()));
            screen(&app, w, h);
        }
    }
}

#[test]
fn detail_pane() {
    let mut app = few_denials();
    app.update(key(KeyCode::Enter));
    let s = screen(&app, 120, 40);
    show(&s);
    assert_contains(&s, "│landlock write /etc/x");
    assert_contains(&s, "│count          2   first +0:01   last +0:02");
    assert_contains(&s, "│denied by      landlock");
    assert_contains(&s, "│why            not under a writable root");
    assert_contains(&s, "│syscall        openat");
    assert_contains(&s, "│errno          EACCES");
    assert_contains(&s, "│path           /etc/x");
    assert_contains(&s, "│requested path x");
    assert_contains(&s, "│pid            42");
    assert_contains(&s, "│comm           sh");
    assert_contains(&s, "│processes      sh[42]");
    assert_contains(&s, "│execs of pid 42 (oldest first):");
    assert_contains(&s, "│  sh -c echo x > /etc/x");
    assert_contains(&s, "│  exe          /usr/bin/sh");
    // No exec said who 42's parent is.
    let i = s.iter().position(|l| l.contains("│ancestry ")).expect("ancestry");
    assert_eq!(
        overlay_lines(&s[i..i + 3]),
        [
            "ancestry (innermost first, from the execs seen):",
            "  42 sh: sh -c echo x > /etc/x  (this process)",
            // No exec said who 42's parent is.
            "  (parent of 42 unknown: no exec of it with a parent seen)",
        ]
    );
    assert_absent(&s, "carry no parent pid");
    // Down moves to the next row, Esc closes.
    app.update(key(KeyCode::Down));
    let s = screen(&app, 120, 40);
    assert_contains(&s, "│proxy connect evil.example:443");
    assert_contains(&s, "│detail.rule    no rule allows it");
    app.update(key(KeyCode::Esc));
    let s = screen(&app, 120, 40);
    assert_absent(&s, "Violation detail");
}

#[test]
fn help_screen_lists_every_key() {
    let mut app = few_denials();
    app.update(ch('?'));
    let s = screen(&app, 120, 40);
    for (k, what) in view::HELP {
        assert_contains(&s, &format!("{k:<20}{what}"));
    }
    assert_eq!(s[39], "any key close help");
    app.update(ch('x'));
    assert_absent(&screen(&app, 120, 40), "any key closes");
}

#[test]
fn filter_as_you_type() {
    let mut app = few_denials();
    app.update(ch('/'));
    app.update(ch('e'));
    let s = screen(&app, 120, 40);
    // "e": every row matches (write, evil, seccomp's source).
    assert_contains(&s, "Violations 3/3 · sort count · filter \"e\"");
    app.update(ch('V'));
    let s = screen(&app, 120, 40);
    assert_contains(&s, "Violations 1/3 · sort count · filter \"eV\"");
    assert_contains(&s, "│1       proxy    connect   evil.example:443");
    assert_absent(&s, "/etc/x                    sh[42]");
    assert!(s[39].starts_with("filter: eV▏ Enter keep filter Esc clear"), "{}", s[39]);
    app.update(key(KeyCode::Enter));
    // Keys are commands again; the filter stays.
    app.update(ch('s'));
    let s = screen(&app, 120, 40);
    assert_contains(&s, "Violations 1/3 · sort last seen · filter \"eV\"");
    app.update(key(KeyCode::Esc));
    assert_contains(&screen(&app, 120, 40), "Violations 3/3 · sort last seen ─");
    // Filtering by process name: "sh" is only in the landlock row's.
    for c in "/sh".chars() {
        app.update(ch(c));
    }
    app.update(key(KeyCode::Enter));
    let s = screen(&app, 120, 40);
    assert_contains(&s, "Violations 1/3 · sort last seen · filter \"sh\"");
    assert_contains(&s, "│2       landlock write     /etc/x ");
}

#[test]
fn sort_cycles() {
    let mut app = few_denials();
    let objects = |app: &App| -> Vec<String> { app.rows().iter().map(|&i| app.aggs[i as usize].object.clone()).collect() };
    assert_eq!(objects(&app), ["/etc/x", "evil.example:443", r#"mount("tmpfs", "/mnt", "tmpfs", 0, NULL)"#]);
    app.update(ch('s'));
    assert_contains(&screen(&app, 120, 40), "Violations 3/3 · sort last seen ─");
    assert_eq!(objects(&app), ["evil.example:443", r#"mount("tmpfs", "/mnt", "tmpfs", 0, NULL)"#, "/etc/x"]);
    app.update(ch('s'));
    assert_contains(&screen(&app, 120, 40), "Violations 3/3 · sort source ─");
    assert_eq!(objects(&app), ["/etc/x", r#"mount("tmpfs", "/mnt", "tmpfs", 0, NULL)"#, "evil.example:443"]);
    app.update(ch('s'));
    assert_contains(&screen(&app, 120, 40), "Violations 3/3 · sort object ─");
    assert_eq!(objects(&app), ["/etc/x", "evil.example:443", r#"mount("tmpfs", "/mnt", "tmpfs", 0, NULL)"#]);
    app.update(ch('s'));
    assert_contains(&screen(&app, 120, 40), "Violations 3/3 · sort count ─");
}

#[test]
fn selection_follows_the_row() {
    let mut app = few_denials();
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Down));
    assert_eq!(app.selection().map(|(p, _)| p), Some(2));
    // The seccomp row becomes the most frequent: it moves to the top, and
    // stays selected.
    for _ in 0..5 {
        app.update(Msg::Event(seccomp_mount(), at(6_000)));
    }
    let (pos, id) = app.selection().unwrap();
    assert_eq!((pos, app.aggs[id as usize].source), (0, Source::Seccomp));
}

#[test]
fn quit_asks_while_running() {
    let mut app = few_denials();
    assert_eq!(app.update(ch('q')), Action::None);
    let s = screen(&app, 120, 40);
    assert_contains(&s, "│kill the command and quit? y/n");
    assert_eq!(s[39], "y kill the command and quit n stay");
    assert_eq!(app.update(ch('x')), Action::None);
    assert_eq!(app.update(ch('n')), Action::None);
    assert_absent(&screen(&app, 120, 40), "kill the command");
    app.update(Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)));
    assert_eq!(app.update(ch('y')), Action::KillAndQuit);
    // After the command has exited, q quits at once.
    let mut app = few_denials();
    app.update(Msg::Exited(3));
    assert_eq!(screen(&app, 120, 40)[0], " sbx  exited 3 1:05  npm install");
    assert_eq!(app.update(ch('q')), Action::Quit);
}

#[test]
fn output_pane_and_forwarded_keys() {
    let mut app = few_denials();
    // The pty takes the pane's size.
    assert_eq!(app.update(Msg::Resize(120, 40)), Action::ResizePty { cols: 58, rows: 11 });
    assert_eq!(app.update(Msg::Resize(120, 40)), Action::None);
    app.update(Msg::Output(b"$ npm install\r\nadded 3 packages\r\nprogress 10%\rprogress 100%\r\n\x1b[32mdone\x1b[0m\r\n".to_vec()));
    app.update(key(KeyCode::Tab));
    assert_eq!(app.focus, Pane::Output);
    let s = screen(&app, 120, 40);
    assert_contains(&s, "┌ 2 Output · typing goes to the command, Tab leaves");
    assert_contains(&s, "│$ npm install ");
    assert_contains(&s, "│progress 100% ");
    assert_contains(&s, "│done ");
    assert_eq!(s[39], "Tab leave output Ctrl-] zoom S-PgUp/PgDn scroll keys go to the command");
    assert_eq!(app.update(ch('q')), Action::SendInput(b"q".to_vec()));
    assert_eq!(app.update(ch('?')), Action::SendInput(b"?".to_vec()));
    assert_eq!(app.update(ch('z')), Action::SendInput(b"z".to_vec()));
    assert_eq!(app.update(key(KeyCode::Enter)), Action::SendInput(b"\r".to_vec()));
    assert_eq!(app.update(key(KeyCode::Backspace)), Action::SendInput(vec![0x7f]));
    assert_eq!(app.update(key(KeyCode::Up)), Action::SendInput(b"\x1b[A".to_vec()));
    assert_eq!(app.update(Msg::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL))), Action::SendInput(vec![3]));
    // The command asks for application cursor keys (as vim and less do).
    app.update(Msg::Output(b"\x1b[?1h".to_vec()));
    assert_eq!(app.update(key(KeyCode::Up)), Action::SendInput(b"\x1bOA".to_vec()));
    // Shift-Up scrolls the scrollback instead.
    for i in 0..20 {
        app.update(Msg::Output(format!("line {i}\r\n").into_bytes()));
    }
    // The pane's first row.
    let top = |app: &App| screen(app, 120, 40)[27].chars().take(10).collect::<String>();
    assert_eq!(top(&app), "│line 10  ");
    assert_eq!(app.update(Msg::Key(KeyEvent::new(KeyCode::Up, KeyModifiers::SHIFT))), Action::None);
    assert_contains(&screen(&app, 120, 40), "┌ 2 Output · typing goes to the command, Tab leaves · scrol┐");
    assert_eq!(top(&app), "│line 9   ");
    assert_eq!(app.update(Msg::Key(KeyEvent::new(KeyCode::PageUp, KeyModifiers::SHIFT))), Action::None);
    assert_eq!(top(&app), "│$ npm ins");
    // Typing goes back to the live screen.
    assert_eq!(app.update(ch('x')), Action::SendInput(b"x".to_vec()));
    assert_eq!(top(&app), "│line 10  ");
    assert_eq!(app.update(key(KeyCode::Tab)), Action::None);
    assert_eq!(app.focus, Pane::Tail);
    assert_eq!(app.update(ch('q')), Action::None);
}

/// The pane is a terminal: colours and attributes, the alternate screen,
/// wide characters, the cursor; and the pty follows the pane's size.
#[test]
fn the_output_pane_is_a_terminal() {
    let mut app = few_denials();
    app.update(Msg::Resize(120, 40));
    app.update(Msg::Output("plain\r\n\x1b[1;31mred\x1b[0m \x1b[7mrev\x1b[0m 漢字\x1b[?1049h\x1b[2J\x1b[1;1Htop\x1b[11;58Hz\x1b[5;3H".as_bytes().to_vec()));
    app.update(ch('2'));
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    terminal.draw(|f| app.render(f)).unwrap();
    let s = buffer_lines(terminal.backend().buffer());
    show(&s);
    // The pane's inside is rows 27..=37, columns 1..=58.
    assert_eq!(s[26], "┌ 2 Output · typing goes to the command, Tab leaves ───────┐┌ 3 Events 8 ──────────────────────────────────────────────┐");
    assert!(s[27].starts_with("│top                                                       │"), "{}", s[27]);
    assert!(s[37].starts_with("│                                                         z│"), "{}", s[37]);
    // The cursor is where the command left it.
    terminal.backend_mut().assert_cursor_position((1 + 2, 27 + 4));
    // Back on the main screen: attributes and a wide character.
    app.update(Msg::Output(b"\x1b[?1049l".to_vec()));
    terminal.draw(|f| app.render(f)).unwrap();
    let buf = terminal.backend().buffer();
    assert!(buffer_lines(buf)[27].starts_with("│plain "));
    let red = &buf[(1, 28)];
    assert_eq!((red.symbol(), red.fg, red.modifier.contains(ratatui::style::Modifier::BOLD)), ("r", ratatui::style::Color::Indexed(1), true));
    assert!(!buf[(4, 28)].modifier.contains(ratatui::style::Modifier::BOLD));
    assert!(buf[(5, 28)].modifier.contains(ratatui::style::Modifier::REVERSED));
    assert_eq!([buf[(9, 28)].symbol(), buf[(11, 28)].symbol()], ["漢", "字"]);
    // A smaller terminal: the compact layout's lower half.
    assert_eq!(app.update(Msg::Resize(80, 24)), Action::ResizePty { cols: 78, rows: 8 });
    assert_eq!(crate::tui::initial_pty_size(120, 40, Start::Dashboard), (58, 11));
    assert_eq!(crate::tui::initial_pty_size(80, 24, Start::Dashboard), (78, 8));
    assert_eq!(crate::tui::initial_pty_size(80, 24, Start::Zoom), (80, 23));
    // Narrow, with another pane chosen: the output pane is not drawn and
    // the pty keeps its size.
    app.update(key(KeyCode::Tab));
    assert_eq!(app.focus, Pane::Tail);
    assert_eq!(app.update(Msg::Resize(50, 14)), Action::None);
    assert_eq!(app.update(ch('2')), Action::ResizePty { cols: 48, rows: 8 });
}

/// Zoom: every key but Ctrl-] goes to the command, the status line keeps
/// the counters, and the pty takes the whole terminal but that line.
#[test]
fn zoom_gives_the_command_every_key_but_one() {
    let mut app = few_denials().start(Start::Zoom);
    assert_eq!(app.update(Msg::Resize(120, 40)), Action::ResizePty { cols: 120, rows: 39 });
    app.update(Msg::Output(b"\x1b[2J\x1b[Hvim here\x1b[39;1H-- INSERT --".to_vec()));
    let s = screen(&app, 120, 40);
    assert_eq!(s[0], "vim here");
    assert_eq!(s[38], "-- INSERT --");
    assert_eq!(s[39], " sbx Ctrl-] dashboard │ running 1:05 │ denials 4: landlock 2 seccomp 1 proxy 1 │ newest: proxy connect evil.example:443");
    let ctrl = |c| Msg::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL));
    for (k, bytes) in [
        (ctrl('c'), vec![3]),
        (key(KeyCode::Esc), vec![0x1b]),
        (key(KeyCode::Tab), b"\t".to_vec()),
        (ch('q'), b"q".to_vec()),
        (ch('z'), b"z".to_vec()),
        (ch('?'), b"?".to_vec()),
        (key(KeyCode::BackTab), b"\x1b[Z".to_vec()),
        (ctrl('\\'), vec![0x1c]),
    ] {
        assert_eq!(app.update(k), Action::SendInput(bytes));
    }
    assert_eq!(app.overlay, crate::tui::app::Overlay::None);
    // Ctrl-] as a terminal sends it (0x1d, which crossterm reads as Ctrl-5).
    assert_eq!(app.update(ctrl('5')), Action::ResizePty { cols: 58, rows: 11 });
    assert!(!app.zoom);
    assert_contains(&screen(&app, 120, 40), "┌ 1 Violations 3/3");
    // `z` zooms from a pane, Ctrl-] from the output pane too.
    assert_eq!(app.update(ch('z')), Action::ResizePty { cols: 120, rows: 39 });
    assert_eq!(app.update(ctrl(']')), Action::ResizePty { cols: 58, rows: 11 });
    app.update(ch('2'));
    assert_eq!(app.update(ctrl(']')), Action::ResizePty { cols: 120, rows: 39 });
    // The command ends: the dashboard comes back, and its last screen keeps
    // its size, which zoom shows whole.
    assert_eq!(app.update(Msg::Exited(0)), Action::None);
    assert!(!app.zoom);
    assert_contains(&screen(&app, 120, 40), "┌ 1 Violations 3/3");
    assert_eq!(app.update(ctrl(']')), Action::None);
    assert!(app.zoom);
    assert_eq!(screen(&app, 120, 40)[38], "-- INSERT --");
}

/// A prompt that arrives while zoomed waits, said on the status line; no
/// key typed for the command answers it.
#[test]
fn a_prompt_waits_while_zoomed() {
    let mut app = few_denials().start(Start::Zoom);
    app.update(Msg::Resize(100, 30));
    let deadline = app.now + Duration::from_secs(30);
    app.update(Msg::Ask(Ask { id: 7, host: "evil.example".into(), port: 443, protocol: "connect", config: "/w/sbx.jsonc".into(), deadline }));
    let s = screen(&app, 100, 30);
    assert!(s[29].starts_with(" sbx Ctrl-] dashboard │ request to evil.example:443 held: Ctrl-], Tab to answer (30 s) │"), "{}", s[29]);
    assert_absent(&s, "Reach evil.example");
    for c in "aAdD\t".chars() {
        tick(&mut app, 600);
        assert!(matches!(app.update(ch(c)), Action::SendInput(_)));
    }
    assert_eq!(app.asks.len(), 1);
    app.update(Msg::Key(KeyEvent::new(KeyCode::Char(']'), KeyModifiers::CONTROL)));
    assert_contains(&screen(&app, 100, 30), "Reach evil.example:443 (connect)?");
    app.update(key(KeyCode::Tab));
    tick(&mut app, 600);
    assert_eq!(app.update(ch('d')), Action::Answer(7, crate::proxy::ask::Answer::DenyOnce));
}

#[test]
fn tail_pauses() {
    let mut app = few_denials();
    app.update(ch(' '));
    app.update(Msg::Event(landlock_write("/etc/late", 42, "sh"), at(9_000)));
    let s = screen(&app, 120, 40);
    assert_contains(&s, "Events 9 · PAUSED (+1 new, space resumes)");
    assert_absent(&s, "+0:09 denied");
    app.update(ch(' '));
    let s = screen(&app, 120, 40);
    assert_contains(&s, " +0:09 denied landlock write /etc/late sh[42]");
}

#[test]
fn export_writes_report_lines() {
    let mut app = few_denials();
    app.update(Msg::Event(report::Event::SessionEnd(SessionEnd { exit_code: 0, lost: 0 }), at(7_500)));
    let path = match app.update(ch('e')) {
        Action::Export(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(path, PathBuf::from(format!("sbx-session-{T0}.jsonl")));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(path);
    assert_eq!(app.export(&path).unwrap(), 9);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["session_start", "process", "denial", "denial", "denial", "net", "denial", "net", "session_end"]);
    assert_eq!(lines[2]["path"], "/etc/x");
    assert_eq!(lines[2]["time"], "2023-11-14T22:13:21.000000Z");
    assert_eq!(lines[8]["seq"], 8);
    assert_eq!(lines[8]["counts"]["denial"], 4);
    assert_eq!(lines[8]["denials"]["landlock"], 2);
    let ms = lines[8]["duration_ms"].as_u64().unwrap();
    assert!((7_500..7_600).contains(&ms), "{ms}");
    let s = screen(&app, 120, 40);
    assert!(s[39].starts_with(&format!("exported 9 events to {}", path.display())), "{}", s[39]);
    // The free function writes the same.
    let events: Vec<(report::Event, SystemTime)> = app.history.iter().cloned().collect();
    let again = dir.path().join("again.jsonl");
    export(&events, &again).unwrap();
    assert_eq!(std::fs::read_to_string(&again).unwrap().lines().count(), 9);
}

#[test]
fn bounds_hold() {
    let now = Instant::now();
    let mut app = App::new(&command(), now);
    app.update(Msg::Event(start(LandlockStatus::Full, true), at(0)));
    for i in 0..(MAX_AGGREGATES + 50) {
        app.update(Msg::Event(landlock_write(&format!("/etc/f{i}"), 1_000_000 + i as u32, "w"), at(i as u64)));
    }
    for i in 0..(MAX_HOSTS + 10) {
        app.update(Msg::Event(net(&format!("h{i}.example"), 443, true, "allowedDomains: *"), at(20_000)));
    }
    assert_eq!(app.aggs.len(), MAX_AGGREGATES + 1);
    assert_eq!(app.agg_overflowed, 50);
    let other = app.aggs.last().unwrap();
    assert_eq!((other.object.as_str(), other.count), (app::OTHER_OBJECTS, 50));
    assert_eq!(app.procs.len(), MAX_PROCESSES);
    assert_eq!(app.proc_rows().len(), MAX_PROCESSES);
    assert_eq!(app.hosts.len(), MAX_HOSTS + 1);
    assert_eq!(app.hosts[app::OTHER_HOSTS].allowed, 10);
    let s = screen(&app, 120, 40);
    assert_contains(&s, "Violations 10001/10001 · sort count · table full");
    assert_contains(&s, "forgotten");
    // History: SessionStart is kept for export when it has left the tail.
    for i in 0..MAX_HISTORY {
        app.update(Msg::Event(report::Event::Loss(Loss { source: "ebpf", count: 1 }), at(30_000 + i as u64)));
    }
    assert_eq!(app.history.len(), MAX_HISTORY);
    assert!(app.history_dropped > 0);
    assert_eq!(app.exportable().count(), MAX_HISTORY + 1);
    assert!(matches!(app.exportable().next(), Some((report::Event::SessionStart(_), _))));
    let s = screen(&app, 120, 40);
    assert!(s[0].ends_with("export keeps the last 100000 events (11085 dropped)"), "{}", s[0]);
    assert_contains(&s, "oldest dropped");
}

/// 100,000 denials from three sources, then a frame.
#[test]
fn flood_of_100k_denials() {
    let now = Instant::now();
    let mut app = App::new(&command(), now);
    app.update(Msg::Event(start(LandlockStatus::Full, true), at(0)));
    let events: Vec<report::Event> = (0..100_000u32)
        .map(|i| match i % 4 {
            0 | 1 => landlock_write(&format!("/etc/f{}", i % 500), 100 + i % 50, "w"),
            2 => seccomp_mount(),
            _ => proxy_denial(&format!("h{}.example", i % 500), 443),
        })
        .collect();
    let t = Instant::now();
    for (i, e) in events.into_iter().enumerate() {
        app.update(Msg::Event(e, at(i as u64 / 100)));
    }
    let updated = t.elapsed();
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let t = Instant::now();
    terminal.draw(|f| app.render(f)).unwrap();
    let rendered = t.elapsed();
    println!("flood: 100000 updates in {updated:?} ({:.0} events/s), first render (sorting 1001 rows) in {rendered:?}", 100_000.0 / updated.as_secs_f64());
    let s = buffer_lines(terminal.backend().buffer());
    assert_eq!(s[0], format!(" sbx  running 0:00  npm install{:>89}", "export keeps the last 100000 events (1 dropped)"));
    assert_eq!(s[2], "denials 100000: landlock 50000 seccomp 25000 proxy 25000 netns 0 mount 0 dac 0 other 0 · net 0 ok 0 denied · lost 0");
    // 250 paths, 125 hosts and one seccomp call.
    assert_contains(&s, "┌ 1 Violations 376/376 · sort count ─");
    assert_contains(&s, "│25000   seccomp  mount     mount(\"tmpfs\", \"/mnt\", \"tmpfs\", 0, NULL)     ");
    assert_contains(&s, "│200     proxy    connect   h499.example:443 ");
    assert_contains(&s, "│200     landlock write     /etc/f497 ");
    assert_contains(&s, "Events 100001 · 1 oldest dropped");
}

/// Resident set size in bytes, from /proc/self/statm.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Figures for the report (printed, not asserted; run with --nocapture).
#[test]
fn measurements() {
    let now = Instant::now();
    // One frame at 120x40 with 10k aggregates (the sort included, then a
    // frame without changes).
    let mut app = App::new(&command(), now);
    app.update(Msg::Event(start(LandlockStatus::Full, true), at(0)));
    for i in 0..10_000u32 {
        app.update(Msg::Event(landlock_write(&format!("/home/u/project/node_modules/pkg{i}/index.js"), 100 + i % 300, "node"), at(u64::from(i))));
    }
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let t = Instant::now();
    terminal.draw(|f| app.render(f)).unwrap();
    let dirty = t.elapsed();
    let t = Instant::now();
    let frames = 50;
    for _ in 0..frames {
        terminal.draw(|f| app.render(f)).unwrap();
    }
    let clean = t.elapsed() / frames;
    println!("render 120x40 with 10000 rows: {dirty:?} after a change (re-sort), {clean:?} per unchanged frame");

    // Throughput and memory over 1,000,000 events: denials over 20k objects
    // (past the row bound), with process and net events.
    drop(app);
    let before = rss();
    let mut app = App::new(&command(), now);
    app.update(Msg::Event(start(LandlockStatus::Full, true), at(0)));
    let t = Instant::now();
    let mut generated = Duration::ZERO;
    for i in 0..1_000_000u32 {
        let g = Instant::now();
        let e = match i % 10 {
            0 => exec(1000 + i % 8000, &["node", "install.js", "--flag"]),
            1 => net(&format!("h{}.example", i % 2000), 443, i % 3 == 0, "no rule allows it"),
            2 => seccomp_mount(),
            _ => landlock_write(&format!("/home/u/project/node_modules/pkg{}/index.js", i % 20_000), 1000 + i % 8000, "node"),
        };
        generated += g.elapsed();
        app.update(Msg::Event(e, at(u64::from(i) / 1000)));
        if i % 5000 == 0 {
            // A frame every 5000 events: 20 fps at 100k events/s.
            terminal.draw(|f| app.render(f)).unwrap();
        }
    }
    let total = t.elapsed() - generated;
    let after = rss();
    println!(
        "1000000 events: {:.0} events/s through update (with a frame every 5000 events; generating them excluded), rss +{} MiB ({} MiB before, {} MiB after)",
        1_000_000.0 / total.as_secs_f64(),
        after.saturating_sub(before) / (1 << 20),
        before / (1 << 20),
        after / (1 << 20)
    );
    println!("size_of report::Event = {} bytes", std::mem::size_of::<report::Event>());
    assert_eq!(app.history.len(), MAX_HISTORY);
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let n = app.export(&dir.path().join("export.jsonl")).unwrap();
    println!("export of {n} events: {:?}", t.elapsed());
}

#[test]
fn process_list_tracks_exits() {
    let mut app = few_denials();
    app.update(Msg::Event(report::Event::Process(Process { action: ProcessAction::Exit, pid: 43, ppid: None, comm: "mount".into(), argv: Vec::new(), exe: None }), at(6_000)));
    let s = screen(&app, 120, 40);
    assert_contains(&s, "┌ 4 Processes 1 running / 2 ─");
    assert_contains(&s, "│43      1      exit mount ");
    assert_contains(&s, " +0:06 exit   [43] mount");
    // The same pid exec'd again is running again.
    app.update(Msg::Event(exec(43, &["ls", "-l"]), at(7_000)));
    let s = screen(&app, 120, 40);
    assert_contains(&s, "┌ 4 Processes 2 running / 2 ─");
    assert_contains(&s, "│43      1      run  ls -l ");
}

/// The frame loop with a scripted session: messages are drained through a
/// small channel, frames are drawn, input goes to the callback, `q` after
/// the exit quits.
#[test]
fn the_loop_drains_messages_and_draws_frames() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut app = App::new(&command(), Instant::now());
    let mut frames = 0;
    let mut input = Vec::new();
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let action = runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let (_key_tx, mut keys) = tokio::sync::mpsc::unbounded_channel();
        let session = async move {
            tx.send(Msg::Event(start(LandlockStatus::Full, true), at(0))).await.unwrap();
            for i in 0..20_000u64 {
                tx.send(Msg::Event(landlock_write(&format!("/etc/f{}", i % 7), 42, "sh"), at(i))).await.unwrap();
            }
            tx.send(Msg::Output(b"hello\r\n".to_vec())).await.unwrap();
            tx.send(key(KeyCode::Tab)).await.unwrap();
            tx.send(ch('a')).await.unwrap();
            tx.send(key(KeyCode::Tab)).await.unwrap();
            tx.send(Msg::Exited(0)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
            tx.send(ch('q')).await.unwrap();
        };
        let draw = |app: &App| {
            frames += 1;
            term.draw(|f| app.render(f)).map(drop).map_err(|e| match e {})
        };
        let ui = terminal::event_loop(
            &mut app,
            &mut rx,
            &mut keys,
            draw,
            |a| {
                if let Action::SendInput(b) = a {
                    input.push(b);
                }
            },
            terminal::Loop { fps: 50, signals: terminal::StopSignals::default(), replay: None },
        );
        let (action, ()) = tokio::join!(ui, session);
        action
    });
    assert_eq!(action.unwrap(), Action::Quit);
    assert!(frames >= 3, "{frames} frames");
    assert_eq!(input, [b"a".to_vec()]);
    assert_eq!(app.total_events, 20_001);
    let s = buffer_lines(term.backend().buffer());
    show(&s);
    assert!(s[0].starts_with(" sbx  exited 0 "), "{}", s[0]);
    assert_eq!(s[2], "denials 20000: landlock 20000 · net 0 ok 0 denied · lost 0");
}

// `run` on a real terminal is tested by tests/tests/dashboard.rs, which
// drives `sbx monitor` under tmux.

/// sh (10) runs make (11) and cc (12); make runs touch (13), seen after cc.
fn tree_session() -> App {
    let now = Instant::now();
    let mut app = App::new(&command(), now);
    for (ms, e) in [
        (0, start(LandlockStatus::Full, true)),
        (100, exec_child(10, 1, &["sh", "-c", "make all"])),
        (200, exec_child(11, 10, &["make", "all"])),
        (300, exec_child(12, 10, &["cc", "-c", "a.c"])),
        (400, exec_child(13, 11, &["touch", "/etc/stamp"])),
        (1_000, landlock_write("/etc/stamp", 13, "touch")),
        (1_100, landlock_write("/etc/stamp", 13, "touch")),
        (1_200, landlock_write("/etc/a.o", 12, "cc")),
        (1_300, exit(12, "cc")),
    ] {
        app.update(Msg::Event(e, at(ms)));
    }
    app
}

#[test]
fn process_tree() {
    let app = tree_session();
    let s = screen(&app, 120, 40);
    show(&s);
    let expected = [
        "┌ 4 Processes 3 running / 4 ───────────────────────────────┐",
        "│PID     DENIED      COMMAND                               │",
        "│10      0      run  sh -c make all                        │",
        "│11      0      run  ├─ make all                           │",
        "│13      2      run  │  └─ touch /etc/stamp                │",
        "│12      1      exit └─ cc -c a.c                          │",
        "│                                                          │",
    ];
    let pane: Vec<&str> = s[17..24].iter().map(|l| &l[..l.char_indices().nth(60).map_or(l.len(), |(i, _)| i)]).collect();
    assert_eq!(pane, expected);
    // Denials and exits do not rebuild the tree; a new process does.
    let mut app = app;
    screen(&app, 120, 40);
    app.update(Msg::Event(landlock_write("/etc/stamp", 13, "touch"), at(2_000)));
    app.update(Msg::Event(exit(13, "touch"), at(2_100)));
    assert!(!app.views.borrow().procs_dirty);
    app.update(Msg::Event(exec_child(14, 12, &["as", "a.s"]), at(2_200)));
    assert!(app.views.borrow().procs_dirty);
    let s = screen(&app, 120, 40);
    assert!(s[21].starts_with("│13      3      exit │  └─ touch /etc/stamp "), "{}", s[21]);
    assert!(s[22].starts_with("│12      1      exit └─ cc -c a.c "), "{}", s[22]);
    assert!(s[23].starts_with("│14      0      run     └─ as a.s "), "{}", s[23]);
}

#[test]
fn ancestry_in_the_detail_pane() {
    let mut app = tree_session();
    // The top row (count 2) is touch's.
    app.update(key(KeyCode::Enter));
    let s = screen(&app, 120, 40);
    show(&s);
    let i = s.iter().position(|l| l.contains("│ancestry ")).expect("ancestry");
    assert_eq!(
        overlay_lines(&s[i..i + 6]),
        [
            "ancestry (innermost first, from the execs seen):",
            "  13 touch: touch /etc/stamp  (this process)",
            "  11 make: make all",
            "  10 sh: sh -c make all",
            "  (parent 1 of 10 not seen: outside the sandbox, or forgotten)",
            "",
        ]
    );
    assert_absent(&s, "carry no parent pid");
    // cc's row.
    app.update(key(KeyCode::Down));
    let s = screen(&app, 120, 40);
    let i = s.iter().position(|l| l.contains("│ancestry ")).expect("ancestry");
    assert_eq!(
        overlay_lines(&s[i..i + 4]),
        [
            "ancestry (innermost first, from the execs seen):",
            "  12 cc: cc -c a.c  (this process)",
            "  10 sh: sh -c make all",
            "  (parent 1 of 10 not seen: outside the sandbox, or forgotten)",
        ]
    );
}

#[test]
fn tree_follows_late_parents_and_survives_cycles() {
    let now = Instant::now();
    let mut app = App::new(&command(), now);
    // The child is seen first: a root until its parent shows up.
    app.update(Msg::Event(exec_child(41, 40, &["ls"]), at(0)));
    assert_eq!(app.proc_rows().iter().map(|r| (r.pid, r.depth)).collect::<Vec<_>>(), [(41, 0)]);
    app.update(Msg::Event(exec_child(40, 1, &["sh"]), at(1)));
    assert_eq!(app.proc_rows().iter().map(|r| (r.pid, r.depth)).collect::<Vec<_>>(), [(40, 0), (41, 1)]);
    // Reused pids can make a cycle: both are listed once, the walk stops.
    app.update(Msg::Event(exec_child(20, 21, &["a"]), at(2)));
    app.update(Msg::Event(exec_child(21, 20, &["b"]), at(3)));
    assert_eq!(app.proc_rows().iter().map(|r| (r.pid, r.depth)).collect::<Vec<_>>(), [(40, 0), (41, 1), (20, 0), (21, 1)]);
    assert_eq!(app.ancestry(20), [app::Ancestor::Known(20, "a", &["a".to_string()]), app::Ancestor::Known(21, "b", &["b".to_string()]), app::Ancestor::Loop { pid: 20 }]);
    screen(&app, 120, 40);
}

/// A chain deeper than the process bound: the oldest are forgotten, the
/// tree and the ancestry stay bounded.
#[test]
fn deep_tree_bounds_hold() {
    let now = Instant::now();
    let mut app = App::new(&command(), now);
    let n = MAX_PROCESSES as u32 + 100;
    for pid in 1..=n {
        app.update(Msg::Event(exec_child(pid + 1000, pid + 999, &["sh"]), at(u64::from(pid))));
    }
    assert_eq!(app.procs.len(), MAX_PROCESSES);
    assert_eq!(app.procs_forgotten, 100);
    let rows = app.proc_rows().clone();
    assert_eq!(rows.len(), MAX_PROCESSES);
    // The oldest remembered is a root: its parent was forgotten.
    assert_eq!((rows[0].pid, rows[0].depth), (1101, 0));
    assert_eq!((rows[MAX_PROCESSES - 1].pid, rows[MAX_PROCESSES - 1].depth), (n + 1000, MAX_PROCESSES as u32 - 1));
    let ancestry = app.ancestry(n + 1000);
    assert_eq!(ancestry.len(), app::MAX_ANCESTORS + 2);
    assert_eq!(ancestry[app::MAX_ANCESTORS + 1], app::Ancestor::More);
    app.update(Msg::Event(landlock_write("/etc/deep", n + 1000, "sh"), at(100_000)));
    app.update(ch('4'));
    app.update(key(KeyCode::End));
    let s = screen(&app, 120, 40);
    assert_contains(&s, "Processes 4096 running / 4096 · 100 forgotten");
    // Indentation stops at MAX_TREE_INDENT levels.
    let deepest = format!("│{:<8}1      run  {}└─ sh", n + 1000, "   ".repeat(app::MAX_TREE_INDENT as usize - 1));
    assert!(s.iter().any(|l| l.starts_with(&deepest)), "{deepest:?}\n{}", s.join("\n"));
    app.update(ch('1'));
    app.update(key(KeyCode::Enter));
    let s = screen(&app, 120, 40);
    assert_contains(&s, &format!("(further ancestors not listed: only the {} nearest are)", app::MAX_ANCESTORS));
    assert_contains(&s, &format!("│  {} sh: sh  (this process)", n + 1000));
    assert_contains(&s, &format!("│  {} sh: sh ", n + 999));
}

#[test]
fn ask_prompt_answers_with_four_keys_once_it_has_the_keyboard_and_queues() {
    use crate::proxy::ask::Answer;
    let mut app = few_denials();
    let ask = |id: u64, host: &str| Ask { id, host: host.into(), port: 443, protocol: "connect", config: "/w/sbx.jsonc".into(), deadline: app.now + Duration::from_secs(30) };
    let (first, second, third) = (ask(1, "api.example"), ask(2, "cdn.example"), ask(3, "x.example"));
    app.update(Msg::Ask(first));
    app.update(Msg::Ask(second));
    app.update(Msg::Ask(third));
    let s = screen(&app, 120, 40);
    show(&s);
    assert_contains(&s, "Reach api.example:443 (connect)?");
    assert_contains(&s, "Denied in 30 s · 2 more waiting.");
    assert_contains(&s, "Tab to answer; until then keys go to the dashboard");
    assert_contains(&s, "always: written to /w/sbx.jsonc");
    // Without the keyboard, the four keys keep their meaning.
    assert_eq!(app.update(ch('A')), Action::None);
    assert_eq!(app.asks.len(), 3);
    // Tab gives the prompt the keyboard; a key at once is taken as typed
    // for something else and ignored.
    assert_eq!(app.update(key(KeyCode::Tab)), Action::None);
    assert_eq!(app.update(ch('A')), Action::None);
    assert_eq!(app.asks.len(), 3);
    tick(&mut app, 500);
    let s = screen(&app, 120, 40);
    assert_contains(&s, "Network request held · answering");
    assert_contains(&s, "A allow always");
    assert_eq!(app.update(ch('x')), Action::None);
    assert_eq!(app.update(ch('A')), Action::Answer(1, Answer::AllowAlways));
    // Decided elsewhere (timeout, or "always" for the same place): gone.
    app.update(Msg::AskClosed(2));
    let s = screen(&app, 80, 24);
    assert_contains(&s, "Reach x.example:443");
    // One key answers one prompt: the next must be armed again.
    assert_eq!(app.update(ch('D')), Action::None);
    tick(&mut app, 500);
    assert_eq!(app.update(ch('D')), Action::Answer(3, Answer::DenyAlways));
    let s = screen(&app, 120, 40);
    assert_absent(&s, "Network request held");
    assert_eq!(app.ask_focus, None);
}

/// The reproduction: "Add unit tests" typed into the command's pane while
/// a prompt is up goes to the command, and answers nothing.
#[test]
fn typing_for_the_command_never_answers_a_prompt() {
    let mut app = few_denials();
    while app.focus != Pane::Output {
        app.update(key(KeyCode::Tab));
    }
    let deadline = app.now + Duration::from_secs(30);
    app.update(Msg::Ask(Ask { id: 7, host: "127.0.0.1".into(), port: 18080, protocol: "connect", config: "/w/sbx.jsonc".into(), deadline }));
    let s = screen(&app, 120, 40);
    assert_contains(&s, "Tab to answer; until then keys go to the command");
    let mut sent = Vec::new();
    for c in "Add unit tests aAdD".chars() {
        tick(&mut app, 600);
        match app.update(ch(c)) {
            Action::SendInput(b) => sent.extend(b),
            other => panic!("{c:?}: {other:?}"),
        }
    }
    assert_eq!(String::from_utf8(sent).unwrap(), "Add unit tests aAdD");
    assert_eq!(app.asks.len(), 1);
    // Esc hands the keyboard back without answering.
    app.update(key(KeyCode::Tab));
    app.update(key(KeyCode::Esc));
    tick(&mut app, 600);
    assert!(matches!(app.update(ch('a')), Action::SendInput(_)));
    assert_eq!(app.asks.len(), 1);
}

#[test]
fn the_prompt_shows_the_whole_destination_escaped() {
    let mut app = few_denials();
    let host = format!("{}\x1b[8m.evil.example", "a".repeat(90));
    let deadline = app.now + Duration::from_secs(30);
    app.update(Msg::Ask(Ask { id: 1, host, port: 8443, protocol: "connect", config: "/w/sbx.jsonc".into(), deadline }));
    let s = screen(&app, 120, 40);
    show(&s);
    // 62 of the 90 on one line of the prompt, the rest on the next.
    assert_contains(&s, &format!("│{}│", "a".repeat(62)));
    assert_contains(&s, &format!("│{}\\x1b[8m.evil.example:8443", "a".repeat(28)));
}

#[test]
fn the_agent_configuration_question_takes_r_or_k_once_armed_and_shows_the_diff_escaped() {
    let mut app = few_denials();
    let files = vec![super::ReviewFile { path: "/h/.claude/settings\x1b[2J.json".into(), diff: vec!["+ hooks: {\"Stop\":[]}".into()] }];
    app.update(Msg::Review(files));
    let s = screen(&app, 120, 40);
    show(&s);
    assert_contains(&s, "Agent configuration");
    assert_contains(&s, "/h/.claude/settings\\x1b[2J.json");
    assert_contains(&s, "+ hooks: {\"Stop\":[]}");
    // Typed before the question was armed (meant for something else): nothing, and
    // nothing reaches the command either.
    assert_eq!(app.update(ch('k')), Action::None);
    assert_eq!(app.update(ch('x')), Action::None);
    tick(&mut app, 500);
    assert_eq!(app.update(ch('x')), Action::None);
    assert_eq!(app.update(ch('k')), Action::Reviewed(true));
    assert!(app.review.is_none());
    app.update(Msg::Review(vec![super::ReviewFile { path: "/w/.claude/settings.json".into(), diff: vec![] }]));
    tick(&mut app, 500);
    assert_eq!(app.update(key(KeyCode::Enter)), Action::Reviewed(false));
}

/// A full screen of `cols` x `rows` as a full-screen program draws it:
/// every cell coloured (256 colours, bold every third), from the top left;
/// `seed` changes every cell.
fn full_screen(cols: u16, rows: u16, seed: u32) -> Vec<u8> {
    let mut out = b"\x1b[H".to_vec();
    for row in 0..u32::from(rows) {
        out.extend_from_slice(format!("\x1b[{};1H", row + 1).as_bytes());
        for col in 0..u32::from(cols) {
            let n = (row * 7 + col + seed) % 256;
            let c = char::from(b'!' + ((row + col + seed) % 90) as u8);
            let bold = if (col + seed).is_multiple_of(3) { "1;" } else { "" };
            out.extend_from_slice(format!("\x1b[{bold}38;5;{n}m{c}").as_bytes());
        }
        out.extend_from_slice(b"\x1b[0m");
    }
    out
}

/// Figures for `cargo xtask bench tui` (which sets `SBX_BENCH_FIGURES` and
/// runs it in a release build), one `figure NAME VALUE` line each; nothing
/// is asserted on them. Under `cargo test` it runs small, and checks that
/// the scroll-back fills to its bound.
#[test]
fn bench_figures() {
    let full = std::env::var_os("SBX_BENCH_FIGURES").is_some();
    let figure = |name: &str, value: f64| println!("figure {name} {value:.3}");
    // Memory first, before anything else has grown the heap: 12,000 lines
    // of 100 characters through a 120x40 screen fill the 10,000 rows of
    // scroll-back.
    let before = rss();
    let mut output = output::Output::new(120, 40);
    let line: String = (0..100).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    for i in 0..12_000 {
        output.push(format!("{i:>6} {line}\r\n").as_bytes());
    }
    assert_eq!(output.screen().scrollback_len(), MAX_SCROLLBACK);
    figure("scrollback_10000_rows_of_107_chars_rss_mib", (rss().saturating_sub(before)) as f64 / f64::from(1 << 20));
    drop(output);

    // The replay next, the largest log first (the heap grows once; a later figure
    // reuses what an earlier one freed).
    replay::replay_figures(if full { &[1_000_000, 100_000] } else { &[2_000] }, &figure);

    // The emulator's throughput on plain lines and on a coloured full screen.
    let mut output = output::Output::new(120, 40);
    let text: Vec<u8> = (0..if full { 200_000 } else { 2_000 }).flat_map(|i| format!("{i:>8} {line}\r\n").into_bytes()).collect();
    let t = Instant::now();
    output.push(&text);
    figure("emulator_plain_lines_mib_per_s", text.len() as f64 / f64::from(1 << 20) / t.elapsed().as_secs_f64());
    let screens: Vec<Vec<u8>> = (0..2).map(|seed| full_screen(200, 49, seed)).collect();
    let mut output = output::Output::new(200, 49);
    let t = Instant::now();
    let mut bytes = 0;
    for i in 0..if full { 200 } else { 2 } {
        output.push(&screens[i % 2]);
        bytes += screens[i % 2].len();
    }
    figure("emulator_coloured_full_screens_mib_per_s", bytes as f64 / f64::from(1 << 20) / t.elapsed().as_secs_f64());

    // Frames: zoomed at 200x50 and in the pane at 120x40, each frame with
    // a new full screen from the command (every cell changes), and without.
    for (name, start, (w, h)) in [("zoomed_200x50", Start::Zoom, (200, 50)), ("pane_120x40", Start::Dashboard, (120, 40))] {
        let mut app = few_denials().start(start);
        let Action::ResizePty { cols, rows } = app.update(Msg::Resize(w, h)) else { panic!("no pty size") };
        let screens: Vec<Vec<u8>> = (0..2).map(|seed| full_screen(cols, rows, seed)).collect();
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        let frames = if full { 200 } else { 2 };
        let t = Instant::now();
        for i in 0..frames {
            app.update(Msg::Output(screens[i % 2].clone()));
            terminal.draw(|f| app.render(f)).unwrap();
        }
        figure(&format!("frame_{name}_new_full_screen_ms"), t.elapsed().as_secs_f64() * 1e3 / frames as f64);
        let t = Instant::now();
        for _ in 0..frames {
            terminal.draw(|f| app.render(f)).unwrap();
        }
        figure(&format!("frame_{name}_unchanged_ms"), t.elapsed().as_secs_f64() * 1e3 / frames as f64);
    }
}
