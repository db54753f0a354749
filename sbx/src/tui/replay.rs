//! `sbx monitor --replay LOG`: the dashboard over a recorded JSON Lines log.
//!
//! The log is read once when it opens, line by line: each event goes to the `App` as it
//! would have live, and its line's offset is kept (8 bytes an event), never the event. The
//! App keeps what it keeps live (its maps and its history are bounded), so memory does not
//! grow with the log beyond the offsets. The time cursor is the number of events the App
//! has been given: forwards, the lines after it are read and given; backwards, the App
//! forgets every event (`App::rewind`, keeping the user's pane, filter, sort and
//! selection) and the log is read again from its start to the cursor. A line that is not
//! an event of schema v1 is counted and named in the header, never fatal. The seal is
//! checked on a thread of its own (`seal::Verifier`, a line at a time), so a large log
//! opens before its check ends; the header says "checking", then the outcome.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Seek, SeekFrom},
    path::Path,
    time::{Instant, SystemTime},
};

use super::{App, Msg, ReplayInfo, Verification};
use crate::report::wire::Line;

/// Why a log cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot replay {path}: {detail}")]
    Open { path: String, detail: String },
    #[error("cannot replay {path}: reading it failed: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot replay {path}: it holds no sbx event ({unreadable} unreadable line{s}{first})", s = if *.unreadable == 1 { "" } else { "s" })]
    NoEvents { path: String, unreadable: u64, first: String },
    #[error(transparent)]
    Terminal(#[from] io::Error),
}

/// A log being replayed: where each of its events starts, and how far the App has read.
pub struct Replay {
    file: File,
    /// The byte offset of each event's line, in order.
    offsets: Vec<u64>,
}

/// One line of the log, read.
enum Read {
    Event(crate::report::Event, Option<SystemTime>),
    /// A type this version does not know (skipped, as every reader of v1 does), or a blank line.
    Skip,
    Bad(String),
}

fn read_line(bytes: &[u8]) -> Read {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Read::Skip;
    }
    let Ok(text) = std::str::from_utf8(bytes) else { return Read::Bad("not UTF-8 text".into()) };
    match Line::parse(text) {
        Ok(read) => match read.line {
            Some(line) => {
                let (event, time) = line.into_event();
                Read::Event(event, time)
            }
            None => Read::Skip,
        },
        Err(e) => Read::Bad(e.to_string()),
    }
}

/// Lines per batch between the threads of `read_from`.
const BATCH: usize = 512;
/// Batches waiting per thread.
const IN_FLIGHT: usize = 4;

/// Lines read and not parsed yet: their bytes, where each ends, where the first starts.
struct Raw {
    offset: u64,
    number: u64,
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

type Parsed = io::Result<Vec<(u64, u64, Read)>>;

/// Reads `file` from `offset` to its end and hands its lines, parsed, in order, to
/// `each(offset, line number from 1 at offset, read)` on this thread until it says
/// `false`. Parsing is most of the work: one thread reads, batch `k` is parsed by worker
/// `k % workers` (one per core, at least two), and this thread takes the batches round
/// the workers, so order is kept and the App's work overlaps the parsing. At most a few
/// batches per thread are in flight, so memory does not grow with the log.
fn read_from(file: &mut File, offset: u64, mut each: impl FnMut(u64, u64, Read) -> bool) -> io::Result<()> {
    use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
    file.seek(SeekFrom::Start(offset))?;
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    type Channels<T> = (Vec<SyncSender<T>>, Vec<Receiver<T>>);
    let (raw_tx, raw_rx): Channels<io::Result<Raw>> = (0..workers).map(|_| sync_channel(IN_FLIGHT)).unzip();
    let (out_tx, out_rx): Channels<Parsed> = (0..workers).map(|_| sync_channel(IN_FLIGHT)).unzip();
    std::thread::scope(|scope| {
        let spawn = |name: &str| std::thread::Builder::new().name(format!("sbx-replay-{name}"));
        spawn("read").spawn_scoped(scope, move || {
            let mut reader = BufReader::with_capacity(1 << 20, file);
            let (mut offset, mut number) = (offset, 0u64);
            for k in 0.. {
                let mut raw = Raw { offset, number: number + 1, bytes: Vec::with_capacity(BATCH * 512), ends: Vec::with_capacity(BATCH) };
                while raw.ends.len() < BATCH {
                    match reader.read_until(b'\n', &mut raw.bytes) {
                        Ok(0) => break,
                        Ok(n) => {
                            raw.ends.push(raw.bytes.len());
                            offset += n as u64;
                            number += 1;
                        }
                        Err(e) => {
                            let _ = raw_tx[k % workers].send(Err(e));
                            return;
                        }
                    }
                }
                let last = raw.ends.len() < BATCH;
                if (!raw.ends.is_empty() && raw_tx[k % workers].send(Ok(raw)).is_err()) || last {
                    return;
                }
            }
        })?;
        for (raws, out) in raw_rx.into_iter().zip(out_tx) {
            spawn("parse").spawn_scoped(scope, move || {
                for raw in raws {
                    let parsed = raw.map(|raw| {
                        let mut start = 0;
                        let mut lines = Vec::with_capacity(raw.ends.len());
                        for (i, &end) in raw.ends.iter().enumerate() {
                            lines.push((raw.offset + start as u64, raw.number + i as u64, read_line(&raw.bytes[start..end])));
                            start = end;
                        }
                        lines
                    });
                    if out.send(parsed).is_err() {
                        return;
                    }
                }
            })?;
        }
        // Round the workers in turn; the first that has ended (its channel closed with
        // nothing left) marks the end of the log. Then the receivers are dropped, which
        // stops the threads at their next batch (the scope waits for them).
        let out_rx = out_rx;
        let result = (|| {
            for k in 0.. {
                let Ok(batch) = out_rx[k % workers].recv() else { break };
                for (offset, number, read) in batch? {
                    if !each(offset, number, read) {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })();
        drop(out_rx);
        result
    })
}

impl Replay {
    /// Opens the log at `path` and gives `app` every event of it (the cursor at the end);
    /// `app` learns the log's facts (`App::replaying`), its verification still to come.
    pub fn open(path: &Path, app: &mut App) -> Result<Self, ReplayError> {
        let shown = crate::termtext::path(path).into_owned();
        let mut file = crate::fsio::open_read(path).map_err(|e| ReplayError::Open { path: shown.clone(), detail: e.detail() })?;
        let mut offsets = Vec::new();
        let (mut unreadable, mut first_unreadable) = (0u64, None);
        read_from(&mut file, 0, |offset, number, read| {
            match read {
                Read::Event(event, time) => {
                    offsets.push(offset);
                    give(app, event, time);
                }
                Read::Skip => {}
                Read::Bad(why) => {
                    unreadable += 1;
                    first_unreadable.get_or_insert_with(|| format!("line {number}: {why}"));
                }
            }
            true
        })
        .map_err(|source| ReplayError::Read { path: shown.clone(), source })?;
        if offsets.is_empty() {
            let first = first_unreadable.map(|f| format!("; {f}")).unwrap_or_default();
            return Err(ReplayError::NoEvents { path: shown, unreadable, first: crate::termtext::escape(&first).into_owned() });
        }
        offsets.shrink_to_fit();
        let info = ReplayInfo {
            log: shown,
            events: offsets.len() as u64,
            unreadable,
            first_unreadable: first_unreadable.map(|f| crate::termtext::escape(&f).into_owned()),
            verification: Verification::Checking,
            seek_input: None,
        };
        app.replay = Some(info);
        Ok(Self { file, offsets })
    }

    /// Events in the log.
    pub fn events(&self) -> u64 {
        self.offsets.len() as u64
    }

    /// Bytes kept per event (the offsets), for the bounds.
    pub fn index_bytes(&self) -> usize {
        self.offsets.capacity() * std::mem::size_of::<u64>()
    }

    /// Moves the time cursor: `app` shows the state after the first `target` events.
    pub fn seek(&mut self, app: &mut App, target: u64) -> io::Result<()> {
        let target = target.min(self.events());
        if target < app.cursor() {
            app.rewind();
        }
        let from = app.cursor() as usize;
        if from as u64 >= target {
            return Ok(());
        }
        let offsets = &self.offsets;
        let mut next = from;
        let mut changed = None;
        read_from(&mut self.file, offsets[from], |offset, _, read| {
            // Lines that are not events lie between the offsets.
            if offset != offsets[next] {
                return true;
            }
            match read {
                Read::Event(event, time) => give(app, event, time),
                _ => {
                    changed = Some(offset);
                    return false;
                }
            }
            next += 1;
            (next as u64) < target
        })?;
        if let Some(offset) = changed {
            return Err(io::Error::other(format!("the event at byte {offset} changed since the log was opened")));
        }
        if (next as u64) < target {
            return Err(io::Error::other("the log is shorter than when it was opened"));
        }
        Ok(())
    }
}

/// Gives `app` one event; one without a time (or a bad one) takes the previous event's.
fn give(app: &mut App, event: crate::report::Event, time: Option<SystemTime>) {
    let time = time.or(app.last_time()).unwrap_or(SystemTime::UNIX_EPOCH);
    app.update(Msg::Event(event, time));
}

/// Checks the seal of the log at `path` a line at a time, with sbx's keys.
pub fn verify(path: &Path) -> Result<crate::seal::Verified, String> {
    let keys = crate::seal::keys_dir().map_err(|e| format!("sbx's keys cannot be read: {e}"))?;
    verify_with(path, &keys)
}

/// [`verify`] with the keys in `keys`.
pub fn verify_with(path: &Path, keys: &Path) -> Result<crate::seal::Verified, String> {
    let file = crate::fsio::open_read(path).map_err(|e| e.detail())?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut verifier = crate::seal::Verifier::new(keys);
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(|e| e.to_string())? == 0 {
            break;
        }
        let Some(complete) = line.strip_suffix(b"\n") else {
            return Err(verifier.incomplete().to_string());
        };
        let text = std::str::from_utf8(complete).map_err(|_| format!("line {}: it is not UTF-8 text", line_number(&verifier)))?;
        verifier.line(text).map_err(|e| e.to_string())?;
    }
    verifier.finish().map_err(|e| e.to_string())
}

fn line_number(v: &crate::seal::Verifier) -> usize {
    v.incomplete().line
}

/// `sbx monitor --replay LOG`: opens the log (an error before the terminal changes), then
/// shows the dashboard over it until the user quits. Needs a runtime with the time and
/// signal drivers, and a terminal on stdout.
pub async fn replay(path: &Path) -> Result<(), ReplayError> {
    let mut app = App::new(&[], Instant::now());
    let mut replay = Replay::open(path, &mut app)?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let log = path.to_path_buf();
    std::thread::Builder::new().name("sbx-verify".into()).spawn(move || {
        let _ = tx.blocking_send(Msg::Verified(verify(&log)));
    })?;
    super::terminal::run_replay(app, rx, &mut replay).await?;
    Ok(())
}
