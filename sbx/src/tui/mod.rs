//! The live dashboard of `sbx monitor`: a view of one session's
//! `report::Event`s, the command's own output and its keyboard.
//!
//! The dashboard is pure: `App` holds all UI state, `App::update` applies
//! one `Msg` (an event, output bytes, a key, a resize, a clock tick) and
//! returns the `Action` the outer loop must perform, and `App::render`
//! draws the state into a ratatui `Frame`. Tests drive it with scripted
//! messages on ratatui's `TestBackend`. `run` is the only part that touches
//! the terminal.
//!
//! # Integration contract (for `sbx monitor`)
//!
//! The session runs on a tokio current-thread runtime; `run` is one more
//! future on it (`tokio::join!` it with the launch and the event sources):
//!
//! ```text
//! let (tx, rx) = tokio::sync::mpsc::channel::<tui::Msg>(8192);
//! let app = tui::App::new(&command, Instant::now()).start(tui::Start::Dashboard);
//! let ui = tui::run(app, rx, |to| match to {
//!     tui::ToCommand::Input(bytes) => pty_master_writer.send(bytes),
//!     tui::ToCommand::Resize { cols, rows } => sys::set_window_size(&master, cols, rows),
//! }, tui::RunOptions::default());
//! ```
//!
//! `run` needs a runtime with the time and signal drivers
//! (`enable_all`), and a terminal on stdout; it reads the keyboard itself
//! (crossterm, on a thread of its own), so nothing else may read sbx's
//! stdin while it runs.
//!
//! The session must:
//! - give the command a pty (not sbx's terminal, which the dashboard owns:
//!   stdin, stdout and stderr of bwrap and of the command are the pty's
//!   slave) of `initial_pty_size` and forward everything read from the pty
//!   master as `Msg::Output(bytes)`;
//! - forward every `report::Event` it emits (the same values the `Log`
//!   gets) as `Msg::Event(event, SystemTime::now())`. Use `try_send`: when
//!   the channel is full, count the dropped events and, once there is room,
//!   send `Event::Loss(Loss { source: "tui", count })` so that the
//!   dashboard says events are missing. The log file is unaffected;
//! - send `Msg::Exited(code)` when the command has ended (after
//!   SessionEnd), with the status sbx will exit with;
//! - write the bytes of the callback's `ToCommand::Input` to the pty master
//!   (they are what a terminal would send: `\r` for Enter, 0x7f for
//!   Backspace, 0x03 for Ctrl-C, `ESC [ A` for Up..., and the emulator's
//!   answers to the command's questions). The callback runs on the UI's
//!   task, so it should hand the bytes to a writer task rather than block;
//! - set the pty's size on `ToCommand::Resize` (`sys::set_window_size`: the
//!   kernel sends the command SIGWINCH). The size is the output pane's, or
//!   the whole terminal's less the status line when zoomed, and follows
//!   every resize of the terminal;
//! - act on `run`'s result: `Action::KillAndQuit` (the user confirmed, or
//!   sbx got SIGTERM/SIGHUP) means kill the command's process group, then
//!   finish the session as usual (SessionEnd, log); `Action::Quit` comes
//!   only after `Msg::Exited`;
//! - keep stderr off the screen while `run` runs: `RunOptions::stderr_to`
//!   sends fd 2 to a file for that time (tracing's subscriber writes to
//!   stderr, and so do the session's `eprintln!` warnings); after `run`
//!   returns, fd 2 is the terminal again. Print that file's path, or its
//!   contents, after the dashboard is gone.
//!
//! With `--ask`, the session sends `Msg::Ask` for each held connection and
//! `Msg::AskClosed` when one is decided elsewhere (timeout, an "always"
//! answer for the same destination); the prompt's answer comes back as
//! `Action::Answer`, which `run` sends on `RunOptions::answers`. After the
//! command has ended, `Msg::Review` asks whether to keep the command's changes
//! to agent configuration; the answer is `Action::Reviewed`, sent on
//! `RunOptions::review`.
//!
//! `run` handles `Action::Export` itself (it writes the file with `export`
//! and reports the outcome in the footer; 100,000 events take a fraction
//! of a second, during which frames pause), `Action::SendInput` and
//! `Action::ResizePty` (through the callback). It restores the terminal (raw mode off, main screen, cursor
//! shown) when it returns, when its future is dropped, on panic (a panic
//! hook) and on SIGTERM/SIGHUP (it returns `KillAndQuit`). It renders at a
//! fixed rate (`RunOptions::fps`, default 20) whatever the event rate, and
//! between frames takes every pending message, keys before events.
//!
//! # Bounds
//! Memory does not grow with the session's length: `app::MAX_HISTORY`
//! events kept (the tail and export; the footer and help say when older ones
//! were dropped; SessionStart is always kept), `app::MAX_AGGREGATES`
//! violation rows (then one "other objects" row per source),
//! `app::MAX_PROCESSES` processes (exited ones forgotten first),
//! `app::MAX_HOSTS` hosts (then one "other hosts" row), the command's
//! screen and `output::MAX_SCROLLBACK` rows of its scroll-back. A replay
//! (`replay`) adds 8 bytes per event of the log (where its line starts).
//!
//! # Replay
//! `replay(LOG)` (`sbx monitor --replay`) runs the same `App` over a recorded
//! log instead of a session: `App::replaying` says so (the header shows the time
//! cursor and the seal's outcome, `Msg::Verified`; no command, so no keys go to
//! one), and the cursor keys return `Action::Seek(n)`, which the loop hands to
//! `Replay::seek`.

mod app;
mod keys;
mod output;
mod replay;
mod terminal;
#[cfg(test)]
mod tests;
mod view;

use std::{
    fs::File,
    io::{self, BufWriter, Write as _},
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

pub use app::{App, MAX_AGGREGATES, MAX_HISTORY, MAX_HOSTS, MAX_PROCESSES, Pane, ReplayInfo, RunState, SortKey, Verification};
pub use output::MAX_SCROLLBACK;
pub use replay::{Replay, ReplayError, replay};
pub use terminal::{RunOptions, TerminalGuard, run};

use crate::report::{self, Event};

/// How the dashboard starts (`sbx monitor --zoom`: zoomed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Dashboard,
    /// The command has the whole terminal but a status line.
    Zoom,
}

/// What the dashboard sends to the command's pty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToCommand {
    /// Bytes to write to the pty master.
    Input(Vec<u8>),
    /// The pty's new size.
    Resize { cols: u16, rows: u16 },
}

/// The size (columns, rows) the command's pty starts with on a terminal
/// of `cols` x `rows`: the output pane's, or the zoomed screen's, so that
/// the command draws for it from its first frame.
pub fn initial_pty_size(cols: u16, rows: u16, start: Start) -> (u16, u16) {
    let app = App::new(&[], Instant::now()).start(start);
    view::output_area(&app, ratatui::layout::Rect::new(0, 0, cols, rows)).map_or((cols.max(1), rows.max(1)), |r| (r.width, r.height))
}

/// One input of the dashboard.
// Events are the bulk of the messages and are moved, not boxed: an
// allocation per event would cost more than moving ~300 bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Msg {
    /// An event of the session and when it happened.
    Event(report::Event, SystemTime),
    /// Bytes the command wrote to its pty.
    Output(Vec<u8>),
    /// The command ended with this status.
    Exited(u8),
    Key(crossterm::event::KeyEvent),
    /// The terminal's new size (columns, rows).
    Resize(u16, u16),
    /// The clock: elapsed time and status messages follow it.
    Tick(Instant),
    /// `--ask`: a held connection waits for an answer.
    Ask(Ask),
    /// The held connection with this id was decided (answered, timed out,
    /// or answered by an "always" for the same destination).
    AskClosed(u64),
    /// The command has ended having changed agent configuration that runs
    /// commands (`agentconf`): keep it or revert it? The answer comes back as
    /// `Action::Reviewed`.
    Review(Vec<ReviewFile>),
    /// `--replay`: the outcome of checking the log's seal (`crate::seal`), or why it fails.
    Verified(Result<crate::seal::Verified, String>),
}

/// One file of `Msg::Review`: its path and what changed, as `- ` / `+ ` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewFile {
    pub path: String,
    pub diff: Vec<String>,
}

/// A connection held by `sbx monitor --ask`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub id: u64,
    pub host: String,
    pub port: u16,
    /// `http`, `connect`, `socks5`.
    pub protocol: &'static str,
    /// The policy file "always" writes to.
    pub config: String,
    /// When it is denied without an answer.
    pub deadline: Instant,
}

/// What the outer loop must do after an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    /// Leave: the command has exited.
    Quit,
    /// Kill the command, then leave (the user confirmed).
    KillAndQuit,
    /// Write the session's events to this file (`App::export`).
    Export(PathBuf),
    /// Write these bytes to the command's pty.
    SendInput(Vec<u8>),
    /// Set the command's pty to this size.
    ResizePty { cols: u16, rows: u16 },
    /// Answer the held connection with this id (`RunOptions::answers`).
    Answer(u64, crate::proxy::ask::Answer),
    /// The answer to `Msg::Review`: keep the changes (`true`) or revert them
    /// (`RunOptions::review`).
    Reviewed(bool),
    /// `--replay`: show the state after this many of the log's events (`Replay::seek`).
    Seek(u64),
}

impl App {
    /// Draws the dashboard.
    pub fn render(&self, frame: &mut ratatui::Frame) {
        view::render(self, frame);
    }
}

/// Writes `events` to `path` (created or truncated) as JSON Lines in
/// `report`'s schema, numbered from 0, with the counts and durations a
/// `report::Log` would have written for the same sequence.
pub fn export(events: &[(Event, SystemTime)], path: &Path) -> io::Result<()> {
    let file = crate::fsio::create_new(path, 0o600).map_err(io::Error::other)?;
    export_iter(events.iter().map(|(e, t)| (e, *t)), file).map(drop)
}

/// Creates a new export file at `path`, or, when something is already
/// there (an earlier export, or a name the command planted), at `path`
/// with `-2`, `-3`, ... before `.jsonl`: never through a symlink, never
/// over an existing file (`fsio::create_new`). Returns the file and its path.
pub(crate) fn create_export(path: &Path) -> io::Result<(File, std::path::PathBuf)> {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut candidate = path.to_path_buf();
    for n in 2..=100 {
        match crate::fsio::create_new(&candidate, 0o600) {
            Ok(f) => return Ok((f, candidate)),
            Err(e) if candidate.symlink_metadata().is_ok() => {
                tracing::debug!("export: {e}; trying another name");
                candidate = path.with_file_name(format!("{stem}-{n}.jsonl"));
            }
            Err(e) => return Err(io::Error::other(e)),
        }
    }
    Err(io::Error::other(format!("{} and 99 names after it already exist", path.display())))
}

/// Writes the events to `file`, sealed with a fresh key (`crate::seal`) like
/// a log.
pub(crate) fn export_iter<'a>(events: impl Iterator<Item = (&'a Event, SystemTime)>, file: File) -> io::Result<usize> {
    let mut sealer = crate::seal::Sealer::new().map_err(io::Error::other)?;
    let mut out = BufWriter::new(file);
    let mut buf = Vec::new();
    let mut counts = report::Counts::default();
    let mut session_start: Option<SystemTime> = None;
    let mut written = 0;
    for (event, time) in events {
        if matches!(event, Event::SessionStart(_)) {
            session_start = Some(time);
        }
        *counts.by_type.entry(event.type_name()).or_default() += 1;
        if let Event::Denial(d) = event {
            *counts.denials.entry(d.source.as_str()).or_default() += 1;
        }
        // `encode` takes the session's duration from an Instant: rebuild
        // one so that session_end's duration_ms is the events' own span.
        let now = Instant::now();
        let since_start = session_start.and_then(|s| time.duration_since(s).ok()).unwrap_or_default();
        let started = now.checked_sub(since_start).unwrap_or(now);
        let line = report::encode(written as u64, time, event, &counts, started);
        buf.clear();
        serde_json::to_writer(&mut buf, &line)?;
        sealer.seal(&mut buf);
        buf.push(b'\n');
        out.write_all(&buf)?;
        written += 1;
    }
    out.flush()?;
    sealer.record()?;
    Ok(written)
}
