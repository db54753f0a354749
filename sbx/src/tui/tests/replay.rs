//! `--replay`: a log written as sbx writes one, opened, stepped and sought through.

use std::io::Write as _;

use super::*;

/// Writes `events` to `path` as a sealed log with a key in `keys`, as `report::Log` does.
pub(super) fn write_log(path: &std::path::Path, keys: &std::path::Path, events: impl IntoIterator<Item = (report::Event, SystemTime)>) {
    let mut sealer = crate::seal::Sealer::in_dir(keys).unwrap();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let (counts, started) = (report::Counts::default(), Instant::now());
    let mut buf = Vec::new();
    for (seq, (event, time)) in events.into_iter().enumerate() {
        buf.clear();
        serde_json::to_writer(&mut buf, &report::encode(seq as u64, time, &event, &counts, started)).unwrap();
        sealer.seal(&mut buf);
        buf.push(b'\n');
        out.write_all(&buf).unwrap();
    }
    out.flush().unwrap();
    sealer.record().unwrap();
}

/// `few_denials`' events, a denial of pid 43 (whose parent is 42), then the end: 11 events.
fn session() -> Vec<(report::Event, SystemTime)> {
    vec![
        (start(LandlockStatus::Full, true), at(0)),
        (exec(42, &["sh", "-c", "echo x > /etc/x"]), at(100)),
        (landlock_write("/etc/x", 42, "sh"), at(1_000)),
        (landlock_write("/etc/x", 42, "sh"), at(2_000)),
        (exec_child(43, 42, &["mount", "-t", "tmpfs"]), at(2_500)),
        (seccomp_mount(), at(3_000)),
        (net("evil.example", 443, false, "no rule allows it"), at(4_000)),
        (proxy_denial("evil.example", 443), at(4_000)),
        (net("github.com", 443, true, "allowedDomains: github.com"), at(5_000)),
        (exit(43, "mount"), at(6_000)),
        (report::Event::SessionEnd(SessionEnd { exit_code: 3, lost: 0 }), at(65_000)),
    ]
}

struct Opened {
    _dir: tempfile::TempDir,
    log: PathBuf,
    keys: PathBuf,
    app: App,
    replay: Replay,
}

fn open(edit: impl FnOnce(&mut String)) -> Opened {
    let dir = tempfile::tempdir().unwrap();
    let (log, keys) = (dir.path().join("audit.jsonl"), dir.path().join("keys"));
    std::fs::create_dir(&keys).unwrap();
    write_log(&log, &keys, session());
    let mut text = std::fs::read_to_string(&log).unwrap();
    edit(&mut text);
    std::fs::write(&log, text).unwrap();
    let mut app = App::new(&[], Instant::now());
    let replay = Replay::open(&log, &mut app).unwrap();
    Opened { _dir: dir, log, keys, app, replay }
}

fn seek(o: &mut Opened, msg: Msg) {
    match o.app.update(msg) {
        Action::Seek(n) => o.replay.seek(&mut o.app, n).unwrap(),
        other => panic!("not a seek: {other:?}"),
    }
}

#[test]
fn a_log_opens_at_its_end_and_the_cursor_steps_and_seeks() {
    let mut o = open(|_| {});
    let s = screen(&o.app, 120, 40);
    show(&s);
    assert!(s[0].starts_with(" sbx  replay event 11/11 +1:05 exited 3 · checking the seal  npm install"), "{}", s[0]);
    assert_contains(&s, "denials 4: landlock 2 seccomp 1 proxy 1");
    assert_contains(&s, "(a replay: the log does not record the command's output)");
    assert_contains(&s, "end    exit 3, 0 lost");
    assert_contains(&s, "1 running / 2");

    // One event back: the session has not ended; the tail's last line is the exit.
    seek(&mut o, key(KeyCode::Left));
    let s = screen(&o.app, 120, 40);
    assert!(s[0].starts_with(" sbx  replay event 10/11 +0:06 running · "), "{}", s[0]);
    assert_absent(&s, "end    exit 3");
    // Forward again, then past the end: nothing to do.
    seek(&mut o, key(KeyCode::Right));
    assert_eq!(o.app.update(key(KeyCode::Right)), Action::None);
    assert_eq!(o.app.cursor(), 11);

    // `:` 5 Enter: the state after five events, every pane of that time.
    assert_eq!(o.app.update(ch(':')), Action::None);
    assert_eq!(o.app.update(ch('5')), Action::None);
    let s = screen(&o.app, 120, 40);
    assert_contains(&s, "go to event (0-11): 5▏");
    seek(&mut o, key(KeyCode::Enter));
    let s = screen(&o.app, 120, 40);
    show(&s);
    assert!(s[0].starts_with(" sbx  replay event 5/11 +0:02 running · "), "{}", s[0]);
    assert_contains(&s, "denials 2: landlock 2 seccomp 0 proxy 0");
    assert_contains(&s, "Violations 1/1");
    assert_contains(&s, "2 running / 2");
    assert_contains(&s, "Network 0 hosts");
    assert_absent(&s, "mount(\"tmpfs\"");

    // `{` `}`: the start and the end; `[` `]` a twentieth (at least one event).
    seek(&mut o, ch('{'));
    assert_eq!(o.app.cursor(), 0);
    assert!(screen(&o.app, 120, 40)[0].starts_with(" sbx  replay event 0/11 +0:00 before the session"));
    seek(&mut o, ch(']'));
    assert_eq!(o.app.cursor(), 1);
    seek(&mut o, ch('}'));
    assert_eq!(o.app.cursor(), 11);
    seek(&mut o, ch('['));
    assert_eq!(o.app.cursor(), 10);
    // A number beyond the end goes to the end; Esc leaves the prompt.
    for m in [ch(':'), ch('9'), ch('9')] {
        o.app.update(m);
    }
    seek(&mut o, key(KeyCode::Enter));
    assert_eq!(o.app.cursor(), 11);
    o.app.update(ch(':'));
    assert_eq!(o.app.update(key(KeyCode::Esc)), Action::None);
    assert!(o.app.replay_info().unwrap().seek_input.is_none());
    // No command: q leaves at once, z has nothing to zoom into.
    assert_eq!(o.app.update(ch('z')), Action::None);
    assert!(!o.app.zoom);
    assert_eq!(o.app.update(ch('q')), Action::Quit);
}

#[test]
fn seeking_back_keeps_the_selection_filter_and_sort_and_the_detail_has_the_ancestry() {
    let mut o = open(|_| {});
    o.app.update(ch('s'));
    o.app.update(ch('/'));
    for c in "mount".chars() {
        o.app.update(ch(c));
    }
    o.app.update(key(KeyCode::Enter));
    o.app.update(key(KeyCode::Enter));
    let s = screen(&o.app, 120, 40);
    assert_contains(&s, "Violation detail");
    assert_contains(&s, "43 mount: mount -t tmpfs  (this process)");
    assert_contains(&s, "42 sh: sh -c echo x > /etc/x");
    // Back to just after the mount's denial: the same row, filter and sort, and the
    // detail still open; count 1.
    o.app.update(key(KeyCode::Esc));
    for _ in 0..5 {
        seek(&mut o, key(KeyCode::Left));
    }
    assert_eq!(o.app.cursor(), 6);
    o.app.update(key(KeyCode::Enter));
    let s = screen(&o.app, 120, 40);
    show(&s);
    assert_contains(&s, "filter \"mount\"");
    assert_contains(&s, "sort last seen");
    assert_contains(&s, "43 mount: mount -t tmpfs  (this process)");
    // Before the exec of 43, its denial is not there yet.
    o.app.update(key(KeyCode::Esc));
    seek(&mut o, key(KeyCode::Left));
    seek(&mut o, key(KeyCode::Left));
    let s = screen(&o.app, 120, 40);
    assert_contains(&s, "Violations 0/1");
}

#[test]
fn the_header_says_whether_the_seal_holds() {
    let o = open(|_| {});
    assert_eq!(crate::tui::replay::verify_with(&o.log, &o.keys), Ok(crate::seal::Verified { lines: 11, segments: 1 }));
    let mut app = o.app;
    app.update(Msg::Verified(crate::tui::replay::verify_with(&o.log, &o.keys)));
    assert_contains(&screen(&app, 120, 40), "exited 3 · seal verified  npm install");

    // One byte of one line changed: the log still opens, the header says where it fails.
    let o = open(|text| *text = text.replacen(r#""path":"/etc/x""#, r#""path":"/etc/y""#, 1));
    let result = crate::tui::replay::verify_with(&o.log, &o.keys);
    assert!(result.as_ref().is_err_and(|e| e.starts_with("line 3: its MAC does not match")), "{result:?}");
    let mut app = o.app;
    app.update(Msg::Verified(result));
    let s = screen(&app, 120, 40);
    show(&s);
    assert_contains(&s, "LOG FAILS VERIFICATION at line 3: its MAC does not match");
    assert_contains(&s, "/etc/y");
    // A line removed: the same, with why.
    let o = open(|text| {
        let lines: Vec<&str> = text.lines().collect();
        *text = lines.iter().enumerate().filter(|(i, _)| *i != 4).map(|(_, l)| format!("{l}\n")).collect();
    });
    assert!(crate::tui::replay::verify_with(&o.log, &o.keys).is_err_and(|e| e.starts_with("line 5: its MAC does not match")));
    assert_eq!(o.app.replay_info().unwrap().events, 10);
}

#[test]
fn unreadable_lines_are_counted_and_named_never_fatal() {
    let mut o = open(|text| {
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        lines.insert(3, "not json at all".into());
        lines.insert(5, r#"{"v":2,"type":"denial"}"#.into());
        lines.insert(6, r#"{"v":1,"type":"from_the_future","seq":99}"#.into());
        lines.insert(7, String::new());
        *text = lines.join("\n");
        // And no newline at the end.
    });
    let info = o.app.replay_info().unwrap();
    assert_eq!((info.events, info.unreadable), (11, 2));
    let s = screen(&o.app, 160, 40);
    show(&s);
    assert_contains(&s, "2 unreadable lines (line 4: not a JSON event");
    // Seeking across them works: the offsets skip them.
    seek(&mut o, ch('{'));
    seek(&mut o, ch('}'));
    assert_eq!(o.app.cursor(), 11);
    assert_contains(&screen(&o.app, 120, 40), "end    exit 3, 0 lost");
}

#[test]
fn a_file_without_events_is_refused_in_one_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.jsonl");
    std::fs::write(&path, "hello\nworld\n").unwrap();
    let err = Replay::open(&path, &mut App::new(&[], Instant::now())).err().unwrap();
    assert_eq!(err.to_string(), format!("cannot replay {}: it holds no sbx event (2 unreadable lines; line 1: not a JSON event (expected value at line 1 column 1))", path.display()));
    let err = Replay::open(&dir.path().join("missing"), &mut App::new(&[], Instant::now())).err().unwrap();
    assert!(err.to_string().starts_with(&format!("cannot replay {}/missing: ", dir.path().display())), "{err}");
}

/// A session of `n` events as a busy agent's: processes that exec and exit, file,
/// seccomp and proxy denials over 30,000 objects (beyond `MAX_AGGREGATES`), connections
/// to 2,000 hosts (beyond `MAX_HOSTS`), a millisecond apart.
pub(super) fn busy_session(n: u64) -> impl Iterator<Item = (report::Event, SystemTime)> {
    std::iter::once((start(LandlockStatus::Full, true), at(0))).chain((1..n).map(|i| {
        let pid = 1000 + (i / 10) as u32;
        let event = match i % 10 {
            0 => exec_child(pid, 1000 + (i / 50) as u32, &["node", "worker.js", "--task", "build"]),
            1 | 3 => landlock_write(&format!("/home/u/.cache/f{}", i % 30_000), pid, "node"),
            2 => seccomp_mount(),
            4 => net(&format!("h{}.example", i % 2_000), 443, false, "no rule allows it"),
            5 => proxy_denial(&format!("h{}.example", i % 2_000), 443),
            6 => net("registry.npmjs.org", 443, true, "allowedDomains: registry.npmjs.org"),
            7 => landlock_write("/etc/hosts", pid, "node"),
            8 => net("github.com", 443, true, "allowedDomains: github.com"),
            _ => exit(pid, "node"),
        };
        (event, at(i))
    }))
}

/// The replay's figures for `tui::tests::bench_figures`: open time (the log read and
/// given to the App, to its end), the memory it keeps, a step back from the end (the
/// log read again to there), the seal's check, for logs of `sizes` events.
pub(super) fn replay_figures(sizes: &[u64], figure: &dyn Fn(&str, f64)) {
    for &n in sizes {
        let dir = tempfile::tempdir().unwrap();
        let (log, keys) = (dir.path().join("audit.jsonl"), dir.path().join("keys"));
        std::fs::create_dir(&keys).unwrap();
        write_log(&log, &keys, busy_session(n));
        let name = if n >= 1_000_000 { format!("{}m", n / 1_000_000) } else { format!("{}k", n / 1_000) };
        figure(&format!("replay_{name}_log_mib"), std::fs::metadata(&log).unwrap().len() as f64 / f64::from(1 << 20));
        let before = rss();
        let t = Instant::now();
        let mut app = App::new(&[], Instant::now());
        let mut replay = Replay::open(&log, &mut app).unwrap();
        figure(&format!("replay_open_{name}_events_s"), t.elapsed().as_secs_f64());
        assert_eq!((app.cursor(), replay.events()), (n, n));
        // The frame after it opens (the violations sorted, the tree built).
        screen(&app, 120, 40);
        figure(&format!("replay_open_{name}_rss_mib"), rss().saturating_sub(before) as f64 / f64::from(1 << 20));
        figure(&format!("replay_{name}_offsets_mib"), replay.index_bytes() as f64 / f64::from(1 << 20));
        let t = Instant::now();
        replay.seek(&mut app, n - 1).unwrap();
        figure(&format!("replay_{name}_step_back_from_the_end_s"), t.elapsed().as_secs_f64());
        let t = Instant::now();
        replay.seek(&mut app, n).unwrap();
        figure(&format!("replay_{name}_step_forward_ms"), t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        assert!(crate::tui::replay::verify_with(&log, &keys).is_ok());
        figure(&format!("replay_{name}_verify_s"), t.elapsed().as_secs_f64());
        drop((app, replay));
    }
}

/// A seek that stops early in a long log (the parsing threads ahead of it, their queues
/// full) returns, and the threads end.
#[test]
fn a_short_seek_in_a_long_log_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (log, keys) = (dir.path().join("audit.jsonl"), dir.path().join("keys"));
    std::fs::create_dir(&keys).unwrap();
    write_log(&log, &keys, busy_session(30_000));
    let mut app = App::new(&[], Instant::now());
    let mut replay = Replay::open(&log, &mut app).unwrap();
    assert_eq!(app.cursor(), 30_000);
    for target in [1, 2, 15_000, 14_999, 0, 29_999] {
        replay.seek(&mut app, target).unwrap();
        assert_eq!(app.cursor(), target);
    }
    assert_eq!(app.total_events - app.history_dropped, app.history.len() as u64);
}
