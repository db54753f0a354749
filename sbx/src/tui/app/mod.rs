//! The dashboard's state and `App::update`: every input (an event, the
//! command's output, a key, a tick) is a `Msg`; every effect the outer loop
//! must perform is an `Action`. Nothing here does I/O except `App::export`.

use std::{
    borrow::Cow,
    cell::{Ref, RefCell},
    collections::{BTreeMap, HashMap, VecDeque, hash_map::RandomState},
    ffi::OsString,
    hash::BuildHasher,
    io,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::{Action, Msg, Start, keys, output::Output};

mod export;
mod input;
mod replay;
mod views;
pub use replay::{ReplayInfo, Verification};
pub(in crate::tui) use input::ZOOM_KEY;
use crate::{
    report::{Denial, Event, ProcessAction, Source},
    sandbox::Enforcement,
};

/// Events kept for the tail and for export; older ones are dropped.
pub const MAX_HISTORY: usize = 100_000;
/// Distinct (source, operation, object) rows; further objects are counted
/// in one "other" row per source.
pub const MAX_AGGREGATES: usize = 10_000;
/// Processes remembered (exited ones are forgotten first).
pub const MAX_PROCESSES: usize = 4096;
/// Hosts in the network pane; further hosts share one "other" row.
pub const MAX_HOSTS: usize = 1024;
/// Distinct processes listed per violation row.
pub const MAX_PROCS_PER_ROW: usize = 8;
/// Execs remembered per process (the latest ones).
pub const MAX_EXECS: usize = 4;
/// Ancestors listed in the violation detail (the nearest ones).
pub const MAX_ANCESTORS: usize = 8;
/// Tree levels drawn in the processes pane; deeper rows are drawn at this
/// level.
pub const MAX_TREE_INDENT: u32 = 8;
/// How long the `--ask` prompt must have had the keyboard before a key
/// answers it.
pub const ASK_ARM: Duration = Duration::from_millis(400);

/// How long a status message (export done, export failed) stays.
const STATUS_FOR: Duration = Duration::from_secs(8);

pub(super) const SOURCES: [Source; 10] =
    [Source::Landlock, Source::Seccomp, Source::Proxy, Source::Netns, Source::Mount, Source::Dac, Source::Limit, Source::Command, Source::Other, Source::Dns];

pub(super) fn source_index(s: Source) -> usize {
    match s {
        Source::Landlock => 0,
        Source::Seccomp => 1,
        Source::Proxy => 2,
        Source::Netns => 3,
        Source::Mount => 4,
        Source::Dac => 5,
        Source::Limit => 6,
        Source::Command => 7,
        Source::Other => 8,
        Source::Dns => 9,
    }
}

/// The panes, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Violations,
    Output,
    Tail,
    Processes,
    Network,
}

pub(super) const PANES: [Pane; 5] = [Pane::Violations, Pane::Output, Pane::Tail, Pane::Processes, Pane::Network];

/// The violations table's order (`s` cycles).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    /// Most frequent first.
    Count,
    /// Most recent first.
    LastSeen,
    /// By layer, then most frequent.
    Source,
    /// By object, alphabetically.
    Object,
}

impl SortKey {
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Count => "count",
            SortKey::LastSeen => "last seen",
            SortKey::Source => "source",
            SortKey::Object => "object",
        }
    }

    fn next(self) -> Self {
        match self {
            SortKey::Count => SortKey::LastSeen,
            SortKey::LastSeen => SortKey::Source,
            SortKey::Source => SortKey::Object,
            SortKey::Object => SortKey::Count,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Exited(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Overlay {
    None,
    Detail,
    Help,
    ConfirmQuit,
}

/// One row of the violations table: every denial with the same source,
/// operation (or syscall) and object.
#[derive(Debug, Clone)]
pub(super) struct Aggregate {
    pub source: Source,
    pub op: String,
    pub object: String,
    pub count: u64,
    pub first: SystemTime,
    pub last: SystemTime,
    pub last_seq: u64,
    /// (pid, comm) of the processes involved, first `MAX_PROCS_PER_ROW`.
    pub procs: Vec<(u32, String)>,
    pub more_procs: bool,
    /// The latest denial, every field.
    pub latest: Denial,
    /// The row that collects objects beyond `MAX_AGGREGATES`.
    pub overflow: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Proc {
    pub comm: String,
    /// argv of the latest execs, oldest first.
    pub execs: VecDeque<Vec<String>>,
    pub exe: Option<PathBuf>,
    /// The parent's pid, from the latest exec that said.
    pub ppid: Option<u32>,
    pub alive: bool,
    pub denials: u64,
    /// Order of first appearance.
    pub order: u64,
}

/// One row of the process tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TreeRow {
    pub pid: u32,
    /// 0 for a root.
    pub depth: u32,
    /// The last of its parent's children.
    pub last: bool,
    /// Bit `l` set: the ancestor at depth `l` has a later sibling (a rail
    /// is drawn at that level).
    pub rails: u64,
}

/// One line of a process's ancestry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ancestor<'a> {
    /// A process seen: pid, comm, argv of its latest exec (empty: none seen).
    Known(u32, &'a str, &'a [String]),
    /// `child`'s parent `pid` was never seen (or was forgotten).
    Unseen { pid: u32, child: u32 },
    /// No exec of `child` said who its parent is.
    NoParent { child: u32 },
    /// Nearer ancestors listed already (pids reused): the walk stops.
    Loop { pid: u32 },
    /// More ancestors beyond `MAX_ANCESTORS`, not listed.
    More,
}

#[derive(Debug, Clone)]
pub(super) struct Host {
    pub allowed: u64,
    pub denied: u64,
    pub last_port: u16,
    pub last_protocol: &'static str,
    pub last_rule: String,
    pub last_allowed: bool,
    pub last_seq: u64,
}

/// The label of the hosts bucket beyond `MAX_HOSTS`.
pub(super) const OTHER_HOSTS: &str = "(other hosts)";
/// The object of a source's bucket beyond `MAX_AGGREGATES`.
pub(super) const OTHER_OBJECTS: &str = "(other objects: table full)";

/// Orders derived from the maps, rebuilt lazily (at most once per frame
/// while events flow) rather than on every event.
#[derive(Debug, Default)]
pub(super) struct Views {
    /// Aggregate indices, filtered and sorted.
    pub rows: Vec<u32>,
    pub rows_dirty: bool,
    /// Host names, most recent first.
    pub hosts: Vec<String>,
    pub hosts_dirty: bool,
    /// The process tree, depth first, siblings in order of first
    /// appearance; rebuilt when a process comes, goes or changes parent
    /// (not on denials or exits).
    pub procs: Vec<TreeRow>,
    pub procs_dirty: bool,
}

/// The dashboard. Build it with `App::new`, feed it `Msg`s with `update`,
/// draw it with `render`.
pub struct App {
    pub(super) command: String,
    pub(super) started: Instant,
    pub(super) now: Instant,
    pub(super) ended_at: Option<Instant>,
    pub(super) state: RunState,
    /// The session's start (SessionStart's time, else the first event's).
    pub(super) session_time: Option<SystemTime>,
    pub(super) enforcement: Option<Enforcement>,
    /// Whether the kernel tracer runs (from SessionStart).
    pub(super) observation: Option<crate::sandbox::Observation>,

    pub(super) denials: [u64; SOURCES.len()],
    pub(super) net_allowed: u64,
    pub(super) net_denied: u64,
    pub(super) lost_reported: u64,
    pub(super) lost_at_end: u64,
    /// Events received in total (the next event's sequence number).
    pub(super) total_events: u64,

    pub(super) history: VecDeque<(Event, SystemTime)>,
    /// Events dropped from the front of `history`.
    pub(super) history_dropped: u64,
    /// SessionStart, kept for export after it has left `history`.
    session_start: Option<(u64, Event, SystemTime)>,

    pub(super) aggs: Vec<Aggregate>,
    agg_index: HashMap<u64, u32>,
    hasher: RandomState,
    /// Denials counted in the "other objects" rows.
    pub(super) agg_overflowed: u64,

    pub(super) procs: HashMap<u32, Proc>,
    /// Processes by order of first appearance.
    pub(super) proc_order: BTreeMap<u64, u32>,
    next_proc_order: u64,
    /// Exited processes, oldest first: the first to forget.
    exited: VecDeque<(u64, u32)>,
    pub(super) procs_forgotten: u64,
    /// Processes in `procs` that have not exited.
    pub(super) procs_alive: usize,

    pub(super) hosts: HashMap<String, Host>,

    /// The command's screen.
    pub(super) output: Output,
    /// The size last given to the command's pty (`Action::ResizePty`).
    pty_size: Option<(u16, u16)>,
    /// The terminal's size, from the last `Msg::Resize`.
    term_size: Option<(u16, u16)>,
    /// The command has the whole terminal but the status line; every key
    /// but `ZOOM_KEY` goes to it.
    pub(super) zoom: bool,
    /// The row of the newest denial.
    pub(super) newest_denial: Option<u32>,

    pub(super) focus: Pane,
    /// The pane shown beside the violations on a small terminal.
    pub(super) secondary: Pane,
    pub(super) overlay: Overlay,
    pub(super) sort: SortKey,
    pub(super) filter: String,
    pub(super) editing_filter: bool,
    /// The selected violations row, by aggregate index (follows the row
    /// when the order changes). `None`: the first row.
    pub(super) selected: Option<u32>,
    /// `Some(n)`: the tail shows events before sequence number n.
    pub(super) tail_paused: Option<u64>,
    pub(super) proc_scroll: usize,
    pub(super) host_scroll: usize,
    /// Rows per page for PgUp/PgDn, from the last Resize.
    page: usize,
    pub(super) status: Option<(String, Instant)>,
    /// `--ask`: held connections, oldest first; the first is on screen.
    pub(super) asks: VecDeque<super::Ask>,
    /// `Some(t)`: the prompt has the keyboard since `t` (Tab gave it). Only
    /// then do `a`/`A`/`d`/`D` answer, and only once `ASK_ARM` has passed,
    /// so that keys typed for the command can never answer.
    pub(super) ask_focus: Option<Instant>,
    /// `Msg::Review`'s files and when it came (keys typed before `ASK_ARM`
    /// has passed were meant for something else).
    pub(super) review: Option<(Vec<super::ReviewFile>, Instant)>,

    pub(super) views: RefCell<Views>,

    /// `--replay`: the log being replayed (no command runs).
    pub(super) replay: Option<ReplayInfo>,
    /// The latest event's time (a replay's clock).
    pub(super) last_time: Option<SystemTime>,
}

/// The (operation, object) of a denial's row.
pub(super) fn row_key(d: &Denial) -> (Cow<'_, str>, Cow<'_, str>) {
    let op = match (&d.operation, &d.syscall) {
        (Some(op), _) => Cow::Borrowed(op.as_str()),
        (None, Some(sc)) => Cow::Borrowed(sc.as_str()),
        (None, None) if d.host.is_some() => Cow::Borrowed("connect"),
        _ => Cow::Borrowed("?"),
    };
    let object = if let Some(host) = &d.host {
        match d.port {
            Some(port) => Cow::Owned(crate::report::host_port(host, port)),
            None => Cow::Borrowed(host.as_str()),
        }
    } else if let Some((_, call)) = d.detail.iter().find(|(k, _)| k == "call") {
        Cow::Borrowed(call.as_str())
    } else if let Some(path) = &d.path {
        path.to_string_lossy()
    } else if let Some(req) = &d.requested_path {
        Cow::Borrowed(req.as_str())
    } else {
        Cow::Borrowed("")
    };
    (op, object)
}

/// Case-insensitive (ASCII) substring test without allocating.
pub(super) fn contains_ci(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

impl App {
    /// A dashboard for `command`, started at `now` (elapsed time counts from
    /// here; `Msg::Tick` moves the clock).
    pub fn new(command: &[OsString], now: Instant) -> Self {
        Self {
            command: join_command(command.iter().map(|a| a.to_string_lossy())),
            started: now,
            now,
            ended_at: None,
            state: RunState::Running,
            session_time: None,
            enforcement: None,
            observation: None,
            denials: [0; SOURCES.len()],
            net_allowed: 0,
            net_denied: 0,
            lost_reported: 0,
            lost_at_end: 0,
            total_events: 0,
            history: VecDeque::new(),
            history_dropped: 0,
            session_start: None,
            aggs: Vec::new(),
            agg_index: HashMap::new(),
            hasher: RandomState::new(),
            agg_overflowed: 0,
            procs: HashMap::new(),
            proc_order: BTreeMap::new(),
            next_proc_order: 0,
            exited: VecDeque::new(),
            procs_forgotten: 0,
            procs_alive: 0,
            hosts: HashMap::new(),
            output: Output::new(80, 24),
            pty_size: None,
            term_size: None,
            zoom: false,
            newest_denial: None,
            focus: Pane::Violations,
            secondary: Pane::Output,
            overlay: Overlay::None,
            sort: SortKey::Count,
            filter: String::new(),
            editing_filter: false,
            selected: None,
            tail_paused: None,
            proc_scroll: 0,
            host_scroll: 0,
            page: 10,
            status: None,
            asks: VecDeque::new(),
            ask_focus: None,
            review: None,
            views: RefCell::new(Views { rows_dirty: true, hosts_dirty: true, procs_dirty: true, ..Views::default() }),
            replay: None,
            last_time: None,
        }
    }

    /// How the dashboard starts.
    pub fn start(mut self, start: Start) -> Self {
        self.zoom = start == Start::Zoom;
        self
    }

    /// Applies one input; returns what the outer loop must do. When the
    /// place the command's screen is drawn in changed size (the terminal
    /// was resized, the user zoomed or chose another pane), that is
    /// `Action::ResizePty` (once the input's own action, if any, is done:
    /// the next input brings it).
    pub fn update(&mut self, msg: Msg) -> Action {
        let action = self.apply(msg);
        if action == Action::None
            && let Some((cols, rows)) = self.resize_pty()
        {
            return Action::ResizePty { cols, rows };
        }
        action
    }

    /// The size of the command's screen wanted now, when it differs from the
    /// pty's: the emulator takes it at once. Once the command has ended its
    /// last screen keeps the size it was drawn at (a narrower one would cut
    /// its lines): the pane shows its top left, zoom all of it.
    fn resize_pty(&mut self) -> Option<(u16, u16)> {
        if self.state != RunState::Running || self.replay.is_some() {
            return None;
        }
        let (w, h) = self.term_size?;
        let area = super::view::output_area(self, ratatui::layout::Rect::new(0, 0, w, h))?;
        let size = (area.width, area.height);
        if self.pty_size == Some(size) {
            return None;
        }
        self.pty_size = Some(size);
        self.output.set_size(size.0, size.1);
        Some(size)
    }

    fn apply(&mut self, msg: Msg) -> Action {
        match msg {
            Msg::Event(event, time) => {
                self.event(event, time);
                Action::None
            }
            // The emulator's answers to the command's questions go back to it.
            Msg::Output(bytes) => self.output.push(&bytes).map_or(Action::None, Action::SendInput),
            Msg::Exited(code) => {
                // What the command left on its screen stays (`z` shows all
                // of it); the dashboard comes back for the review.
                self.zoom = false;
                self.state = RunState::Exited(code);
                self.ended_at.get_or_insert(self.now);
                Action::None
            }
            Msg::Key(key) => self.key(key),
            Msg::Ask(ask) => {
                // Bounded like the proxy's connection limit.
                if self.asks.len() < 1024 {
                    self.asks.push_back(ask);
                }
                Action::None
            }
            Msg::Review(files) => {
                // The question needs the dashboard.
                self.zoom = false;
                self.review = Some((files, self.now));
                Action::None
            }
            Msg::AskClosed(id) => {
                self.asks.retain(|a| a.id != id);
                if self.asks.is_empty() {
                    self.ask_focus = None;
                }
                Action::None
            }
            Msg::Resize(w, h) => {
                self.term_size = Some((w, h));
                self.page = usize::from(h / 2).max(1);
                Action::None
            }
            Msg::Verified(result) => {
                if let Some(r) = &mut self.replay {
                    r.verification = match result {
                        Ok(v) => Verification::Verified(v),
                        Err(why) => Verification::Failed(why),
                    };
                }
                Action::None
            }
            Msg::Tick(now) => {
                self.now = now;
                if self.status.as_ref().is_some_and(|(_, at)| now.saturating_duration_since(*at) > STATUS_FOR) {
                    self.status = None;
                }
                Action::None
            }
        }
    }

    /// The command's state.
    pub fn state(&self) -> RunState {
        self.state
    }

    /// Shows `text` in the footer for a few seconds.
    pub fn set_status(&mut self, text: impl Into<String>) {
        self.status = Some((text.into(), self.now));
    }

    /// Events lost before they reached sbx (Loss events, SessionEnd.lost).
    pub fn lost(&self) -> u64 {
        self.lost_reported.max(self.lost_at_end)
    }

    fn event(&mut self, event: Event, time: SystemTime) {
        let seq = self.total_events;
        self.total_events += 1;
        self.session_time.get_or_insert(time);
        self.last_time = Some(time);
        match &event {
            Event::SessionStart(s) => {
                self.command = join_command(s.command.iter().map(|a| a.to_string_lossy()));
                self.enforcement = Some(s.enforcement.clone());
                self.observation = Some(s.observation.clone());
                self.session_time = Some(time);
                self.session_start = Some((seq, event.clone(), time));
            }
            Event::Denial(d) => {
                self.denials[source_index(d.source)] += 1;
                self.aggregate(d, time, seq);
                if let Some(pid) = d.pid {
                    let comm = d.comm.as_deref().unwrap_or("?");
                    self.process(pid, comm).denials += 1;
                }
            }
            Event::Net(n) => {
                if n.allowed {
                    self.net_allowed += 1;
                } else {
                    self.net_denied += 1;
                }
                let full = self.hosts.len() >= MAX_HOSTS && !self.hosts.contains_key(&n.host);
                let name = if full { OTHER_HOSTS } else { n.host.as_str() };
                if !self.hosts.contains_key(name) {
                    self.hosts.insert(
                        name.to_string(),
                        Host { allowed: 0, denied: 0, last_port: 0, last_protocol: "", last_rule: String::new(), last_allowed: false, last_seq: 0 },
                    );
                }
                if let Some(h) = self.hosts.get_mut(name) {
                    if n.allowed {
                        h.allowed += 1;
                    } else {
                        h.denied += 1;
                    }
                    h.last_port = n.port;
                    h.last_protocol = n.protocol;
                    h.last_rule.clone_from(&n.rule);
                    h.last_allowed = n.allowed;
                    h.last_seq = seq;
                }
                self.views.get_mut().hosts_dirty = true;
            }
            Event::Process(p) => match p.action {
                ProcessAction::Exec => {
                    let proc = self.process(p.pid, &p.comm);
                    proc.comm.clone_from(&p.comm);
                    let revived = !proc.alive;
                    proc.alive = true;
                    if proc.execs.len() >= MAX_EXECS {
                        proc.execs.pop_front();
                    }
                    proc.execs.push_back(p.argv.clone());
                    proc.exe.clone_from(&p.exe);
                    let ppid = p.ppid.or(proc.ppid);
                    let reparented = proc.ppid != ppid;
                    proc.ppid = ppid;
                    if revived {
                        self.procs_alive += 1;
                    }
                    if reparented {
                        self.views.get_mut().procs_dirty = true;
                    }
                }
                ProcessAction::Exit => {
                    if let Some(proc) = self.procs.get_mut(&p.pid)
                        && proc.alive
                    {
                        proc.alive = false;
                        self.procs_alive -= 1;
                        self.exited.push_back((proc.order, p.pid));
                    }
                }
            },
            Event::Loss(l) => self.lost_reported += l.count,
            Event::Policy(_) | Event::Tamper(_) => {}
            Event::SessionEnd(end) => {
                self.lost_at_end = end.lost;
                if self.state == RunState::Running {
                    self.state = RunState::Exited(end.exit_code);
                }
                self.ended_at.get_or_insert(self.now);
            }
        }
        self.history.push_back((event, time));
        if self.history.len() > MAX_HISTORY {
            self.history.pop_front();
            self.history_dropped += 1;
        }
    }

    /// Counts `d` in its row: O(1), no allocation when the row exists
    /// (except for network rows, whose key is formatted).
    fn aggregate(&mut self, d: &Denial, time: SystemTime, seq: u64) {
        let (op, object) = row_key(d);
        let mut hash = self.hasher.hash_one((d.source, &*op, &*object));
        let found = loop {
            match self.agg_index.get(&hash) {
                Some(&i) => {
                    let a = &self.aggs[i as usize];
                    if !a.overflow && a.source == d.source && a.op == op && a.object == object {
                        break Some(i);
                    }
                    // A collision of 64-bit hashes: probe the next slot.
                    hash = hash.wrapping_add(0x9e37_79b9_7f4a_7c15);
                }
                None => break None,
            }
        };
        let index = match found {
            Some(i) => i,
            None if self.aggs.len() < MAX_AGGREGATES => {
                let i = self.aggs.len() as u32;
                self.aggs.push(Aggregate::new(d, op.into_owned(), object.into_owned(), time, false));
                self.agg_index.insert(hash, i);
                i
            }
            None => {
                self.agg_overflowed += 1;
                match self.aggs.iter().rposition(|a| a.overflow && a.source == d.source) {
                    Some(i) => i as u32,
                    None => {
                        self.aggs.push(Aggregate::new(d, "*".into(), OTHER_OBJECTS.into(), time, true));
                        (self.aggs.len() - 1) as u32
                    }
                }
            }
        };
        self.newest_denial = Some(index);
        let a = &mut self.aggs[index as usize];
        a.count += 1;
        a.last = time;
        a.last_seq = seq;
        a.latest.clone_from(d);
        if let Some(pid) = d.pid
            && !a.procs.iter().any(|(p, _)| *p == pid)
        {
            if a.procs.len() < MAX_PROCS_PER_ROW {
                a.procs.push((pid, d.comm.clone().unwrap_or_default()));
            } else {
                a.more_procs = true;
            }
        }
        self.views.get_mut().rows_dirty = true;
    }

    /// The process `pid`, remembered from now on if it was not.
    fn process(&mut self, pid: u32, comm: &str) -> &mut Proc {
        if self.procs.len() >= MAX_PROCESSES && !self.procs.contains_key(&pid) {
            self.forget_one();
        }
        let (next, order, alive, views) = (&mut self.next_proc_order, &mut self.proc_order, &mut self.procs_alive, self.views.get_mut());
        self.procs.entry(pid).or_insert_with(|| {
            let n = *next;
            *next += 1;
            order.insert(n, pid);
            *alive += 1;
            views.procs_dirty = true;
            Proc { comm: comm.to_string(), execs: VecDeque::new(), exe: None, ppid: None, alive: true, denials: 0, order: n }
        })
    }

    /// Forgets the oldest exited process, else the oldest one (its
    /// children become roots).
    fn forget_one(&mut self) {
        self.views.get_mut().procs_dirty = true;
        while let Some((order, pid)) = self.exited.pop_front() {
            if self.procs.get(&pid).is_some_and(|p| p.order == order && !p.alive) {
                self.procs.remove(&pid);
                self.proc_order.remove(&order);
                self.procs_forgotten += 1;
                return;
            }
        }
        if let Some((_, pid)) = self.proc_order.pop_first() {
            if self.procs.remove(&pid).is_some_and(|p| p.alive) {
                self.procs_alive -= 1;
            }
            self.procs_forgotten += 1;
        }
    }

    /// Elapsed time since `App::new`, frozen when the command exited.
    pub(super) fn elapsed(&self) -> Duration {
        if self.replay.is_some() {
            return self.last_time.and_then(|t| t.duration_since(self.session_time?).ok()).unwrap_or_default();
        }
        self.ended_at.unwrap_or(self.now).saturating_duration_since(self.started)
    }
}

impl Aggregate {
    fn new(d: &Denial, op: String, object: String, time: SystemTime, overflow: bool) -> Self {
        Self {
            source: d.source,
            op,
            object,
            count: 0,
            first: time,
            last: time,
            last_seq: 0,
            procs: Vec::new(),
            more_procs: false,
            latest: d.clone(),
            overflow,
        }
    }
}

/// argv as one line, arguments with spaces quoted.
pub(super) fn join_command<'a>(args: impl Iterator<Item = Cow<'a, str>>) -> String {
    let mut out = String::new();
    for (i, a) in args.enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if a.is_empty() || a.contains([' ', '\t', '"', '\'']) {
            out.push('\'');
            out.push_str(&a.replace('\'', "'\\''"));
            out.push('\'');
        } else {
            out.push_str(&a);
        }
    }
    out
}
