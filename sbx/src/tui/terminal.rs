//! The dashboard on the real terminal: raw mode and the alternate screen
//! behind a guard, a thread turning crossterm's input into `Msg`s, and the
//! fixed-rate frame loop.

use std::{
    io::{self, IsTerminal as _},
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, Once,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossterm::{
    cursor::{Hide, Show},
    event::{self, Event as TermEvent},
    execute,
    terminal::{Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
};
use ratatui::{Terminal, backend::CrosstermBackend};
use tokio::{
    signal::unix::{Signal, SignalKind, signal},
    sync::mpsc,
};

use super::{Action, App, Msg, ToCommand};

/// Messages taken from the session's channel before the loop looks at the
/// clock and the keyboard again.
const BATCH: usize = 4096;
/// How often the input thread checks whether it should stop.
const INPUT_POLL: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Frames per second, whatever the event rate.
    pub fps: u32,
    /// While the dashboard is up, file descriptor 2 is this file (appended
    /// to), so that nothing written to stderr reaches the screen.
    pub stderr_to: Option<PathBuf>,
    /// Where `Action::Answer`s go (`sbx monitor --ask`).
    pub answers: Option<tokio::sync::mpsc::Sender<(u64, crate::proxy::ask::Answer)>>,
    /// Where `Action::Reviewed` goes.
    pub review: Option<tokio::sync::mpsc::Sender<bool>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { fps: 20, stderr_to: None, answers: None, review: None }
    }
}

/// The terminal is in raw mode on the alternate screen.
static OWNED: AtomicBool = AtomicBool::new(false);
/// The real stderr while `stderr_to` is in effect.
static SAVED_STDERR: Mutex<Option<OwnedFd>> = Mutex::new(None);
static PANIC_HOOK: Once = Once::new();

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, Show);
}

fn restore_stderr() {
    // try_lock: a panic while the lock is held must not deadlock the hook.
    if let Ok(mut saved) = SAVED_STDERR.try_lock()
        && let Some(fd) = saved.take()
    {
        let _ = nix::unistd::dup2_stderr(&fd);
    }
}

/// Owns the terminal: raw mode and the alternate screen until dropped. A
/// panic anywhere restores the terminal (and stderr) before the panic
/// message is printed.
pub struct TerminalGuard {
    _private: (),
}

impl TerminalGuard {
    pub fn enter() -> io::Result<Self> {
        PANIC_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if OWNED.swap(false, Ordering::SeqCst) {
                    restore_terminal();
                }
                restore_stderr();
                previous(info);
            }));
        });
        enable_raw_mode()?;
        OWNED.store(true, Ordering::SeqCst);
        let guard = Self { _private: () };
        execute!(io::stdout(), EnterAlternateScreen, Hide, Clear(ClearType::All))?;
        Ok(guard)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if OWNED.swap(false, Ordering::SeqCst) {
            restore_terminal();
        }
    }
}

/// fd 2 to a file until dropped.
struct StderrRedirect;

impl StderrRedirect {
    fn to(path: &std::path::Path) -> io::Result<Self> {
        // A fresh file in sbx's private runtime directory (never one that
        // is already there).
        let file = crate::fsio::create_new(path, 0o600).map_err(io::Error::other)?;
        let saved = nix::unistd::dup(io::stderr())?;
        nix::unistd::dup2_stderr(&file)?;
        *SAVED_STDERR.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
        Ok(Self)
    }
}

impl Drop for StderrRedirect {
    fn drop(&mut self) {
        restore_stderr();
    }
}

/// Reads the terminal's input on its own thread until dropped.
struct Input {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Input {
    fn start(tx: mpsc::UnboundedSender<Msg>) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        // Where crossterm reads keys: stdin when it is the terminal, else /dev/tty (stdin
        // is then the command's: `echo data | sbx monitor -- cmd`).
        let tty = if crate::sys::is_tty(&io::stdin()) { None } else { Some(std::fs::File::open("/dev/tty")?) };
        let thread = std::thread::Builder::new().name("sbx-tui-input".into()).spawn(move || {
            let fd = tty.as_ref().map_or(0, std::os::fd::AsRawFd::as_raw_fd);
            while !flag.load(Ordering::Relaxed) {
                // A terminal that went away (its emulator closed) reads as
                // endless EOF, on which crossterm's poll would spin: stop.
                if terminal_hung_up(fd) {
                    break;
                }
                match event::poll(INPUT_POLL) {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(_) => break,
                }
                let msg = match event::read() {
                    Ok(TermEvent::Key(k)) => Msg::Key(k),
                    Ok(TermEvent::Resize(w, h)) => Msg::Resize(w, h),
                    Ok(_) => continue,
                    Err(_) => break,
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
        })?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // The thread stops within one poll; one caught in a terminal that
        // went away meanwhile (crossterm then reads EOF for ever) must not
        // hold up the end of the session: it dies with the process.
        let Some(t) = self.thread.take() else { return };
        let deadline = std::time::Instant::now() + INPUT_POLL * 4;
        while !t.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if t.is_finished() {
            let _ = t.join();
        }
    }
}

/// Whether stdin, the dashboard's terminal, has hung up.
/// Whether the terminal went away: a hang-up or error, or readable with
/// nothing to read (end of file, which a closed pty can give instead of a
/// hang-up; crossterm would then read it for ever).
fn terminal_hung_up(fd: libc::c_int) -> bool {
    let revents = match crate::sys::poll_now(fd, libc::POLLIN) {
        Ok(r) if r != 0 => r,
        _ => return false,
    };
    if revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        return true;
    }
    revents & libc::POLLIN != 0 && crate::sys::pending_bytes(fd).is_ok_and(|n| n == 0)
}

async fn next_signal(sig: &mut Option<Signal>) {
    match sig {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// The signals that end the dashboard (with `Action::KillAndQuit`).
#[derive(Default)]
pub(super) struct StopSignals {
    term: Option<Signal>,
    hup: Option<Signal>,
}

/// Runs the dashboard on this terminal until the user quits; returns
/// `Action::Quit` or `Action::KillAndQuit`. See the module documentation
/// for the contract with the session.
pub async fn run(mut app: App, mut rx: mpsc::Receiver<Msg>, to_command: impl FnMut(ToCommand), opts: RunOptions) -> io::Result<Action> {
    if !io::stdout().is_terminal() {
        return Err(io::Error::other("the dashboard needs a terminal on stdout (use --no-tui)"));
    }
    // Listen before the screen changes, so that a failure leaves it alone.
    let signals = StopSignals { term: signal(SignalKind::terminate()).ok(), hup: signal(SignalKind::hangup()).ok() };
    let _stderr = opts.stderr_to.as_deref().map(StderrRedirect::to).transpose()?;
    let _guard = TerminalGuard::enter()?;
    // Not `Terminal::clear`: it asks the terminal for the cursor position,
    // which a terminal may never answer; the alternate screen starts clear.
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    let mut to_command = to_command;
    let size = terminal.size()?;
    if let Action::ResizePty { cols, rows } = app.update(Msg::Resize(size.width, size.height)) {
        to_command(ToCommand::Resize { cols, rows });
    }
    let (key_tx, mut key_rx) = mpsc::unbounded_channel();
    let _input = Input::start(key_tx)?;
    let draw = |app: &App| terminal.draw(|f| app.render(f)).map(drop);
    let answers = opts.answers;
    let review = opts.review;
    let on_action = move |action: Action| match action {
        Action::SendInput(bytes) => to_command(ToCommand::Input(bytes)),
        Action::ResizePty { cols, rows } => to_command(ToCommand::Resize { cols, rows }),
        Action::Answer(id, answer) => {
            if let Some(tx) = &answers {
                let _ = tx.try_send((id, answer));
            }
        }
        Action::Reviewed(keep) => {
            if let Some(tx) = &review {
                let _ = tx.try_send(keep);
            }
        }
        _ => {}
    };
    event_loop(&mut app, &mut rx, &mut key_rx, draw, on_action, Loop { fps: opts.fps, signals, replay: None }).await
}

/// How `event_loop` runs: frames per second, the signals that stop it, the log a
/// replay moves through (`Action::Seek`).
pub(super) struct Loop<'a> {
    pub fps: u32,
    pub signals: StopSignals,
    pub replay: Option<&'a mut super::Replay>,
}

/// The frame loop: a frame every 1/fps second (after a `Msg::Tick`), and
/// between frames every pending message, the terminal's before the
/// session's.
pub(super) async fn event_loop(
    app: &mut App,
    rx: &mut mpsc::Receiver<Msg>,
    keys: &mut mpsc::UnboundedReceiver<Msg>,
    mut draw: impl FnMut(&App) -> io::Result<()>,
    mut on_action: impl FnMut(Action),
    options: Loop<'_>,
) -> io::Result<Action> {
    let Loop { fps, mut signals, mut replay } = options;
    let mut frames = tokio::time::interval(Duration::from_secs(1) / fps.max(1));
    frames.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut session_open = true;
    let mut keys_open = true;
    // Exports are written on a thread of their own: this one serves the
    // proxy and the supervisor too. The outcome comes back here.
    let (exported_tx, mut exported_rx) = mpsc::unbounded_channel::<(PathBuf, io::Result<(usize, PathBuf)>)>();
    let mut handle = |app: &mut App, msg: Msg| -> Option<Action> {
        match app.update(msg) {
            Action::None => None,
            Action::Export(path) => {
                let job = app.export_job(&path);
                let tx = exported_tx.clone();
                let spawned = std::thread::Builder::new().name("sbx-export".into()).spawn(move || {
                    let result = job();
                    let _ = tx.send((path, result));
                });
                if let Err(e) = spawned {
                    app.exported(Path::new("the export file"), &Err(e));
                }
                None
            }
            Action::Seek(target) => {
                if let Some(r) = replay.as_deref_mut()
                    && let Err(e) = r.seek(app, target)
                {
                    app.set_status(format!("cannot read the log: {e}"));
                }
                None
            }
            passed @ (Action::SendInput(_) | Action::ResizePty { .. } | Action::Answer(..) | Action::Reviewed(_)) => {
                on_action(passed);
                None
            }
            done @ (Action::Quit | Action::KillAndQuit) => Some(done),
        }
    };
    loop {
        tokio::select! {
            biased;
            _ = frames.tick() => {
                app.update(Msg::Tick(Instant::now()));
                draw(app)?;
            }
            msg = keys.recv(), if keys_open => {
                let Some(msg) = msg else {
                    keys_open = false;
                    continue;
                };
                if let Some(done) = handle(app, msg) {
                    return Ok(done);
                }
            }
            Some((path, result)) = exported_rx.recv() => app.exported(&path, &result),
            () = next_signal(&mut signals.term) => return Ok(Action::KillAndQuit),
            () = next_signal(&mut signals.hup) => return Ok(Action::KillAndQuit),
            msg = rx.recv(), if session_open => {
                let Some(msg) = msg else {
                    session_open = false;
                    continue;
                };
                if let Some(done) = handle(app, msg) {
                    return Ok(done);
                }
                for _ in 0..BATCH {
                    let Ok(msg) = rx.try_recv() else { break };
                    if let Some(done) = handle(app, msg) {
                        return Ok(done);
                    }
                }
            }
        }
    }
}

/// `sbx monitor --replay`: the dashboard on this terminal over `app`, which `replay`
/// moves through time, until the user quits. `rx` brings the log's verification.
pub(super) async fn run_replay(mut app: App, mut rx: mpsc::Receiver<Msg>, replay: &mut super::Replay) -> io::Result<()> {
    if !io::stdout().is_terminal() {
        return Err(io::Error::other("the dashboard needs a terminal on stdout (`sbx log verify` checks a log without one)"));
    }
    let signals = StopSignals { term: signal(SignalKind::terminate()).ok(), hup: signal(SignalKind::hangup()).ok() };
    let _guard = TerminalGuard::enter()?;
    let mut terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
    let size = terminal.size()?;
    app.update(Msg::Resize(size.width, size.height));
    let (key_tx, mut key_rx) = mpsc::unbounded_channel();
    let _input = Input::start(key_tx)?;
    let draw = |app: &App| terminal.draw(|f| app.render(f)).map(drop);
    event_loop(&mut app, &mut rx, &mut key_rx, draw, drop, Loop { fps: RunOptions::default().fps, signals, replay: Some(replay) }).await.map(drop)
}
