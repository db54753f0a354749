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

/// Lines parsed per message between the two threads of `read_from`.
const BATCH: usize = 512;

/// Reads `file` from `offset` to its end, parsing on a thread of its own while this one
/// takes the lines, in order, with `each(offset, line, read)` (line numbers from 1 at
/// `offset`), until `each` says `false`. Parsing is most of the work, the App the rest:
/// on two cores the two overlap. At most a few batches are in flight.
fn read_from(file: &mut File, offset: u64, mut each: impl FnMut(u64, u64, Read) -> bool) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<(u64, u64, Read)>>>(4);
    std::thread::scope(|scope| {
        let parser = std::thread::Builder::new().name("sbx-replay-read".into()).spawn_scoped(scope, move || {
            let mut reader = BufReader::with_capacity(1 << 20, file);
            let mut line = Vec::with_capacity(4096);
            let (mut offset, mut number) = (offset, 0u64);
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                line.clear();
                let n = match reader.read_until(b'\n', &mut line) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                if n == 0 {
                    break;
                }
                number += 1;
                batch.push((offset, number, read_line(&line)));
                offset += n as u64;
                if batch.len() == BATCH && tx.send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))).is_err() {
                    return;
                }
            }
            let _ = tx.send(Ok(batch));
        })?;
        // Dropping the receiver (`each` said stop) ends the parser at its next batch.
        let result = (|| {
            for batch in &rx {
                for (offset, number, read) in batch? {
                    if !each(offset, number, read) {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })();
        drop(rx);
        let _ = parser.join();
        result
    })
}

impl Replay {
    /// Opens the log at `path` and gives `app` every event of it (the cursor at the end);
    /// `app` learns the log's facts (`App::replaying`), its verification still to come.
    pub fn open(path: &Path, app: &mut App) -> Result<Self, ReplayError> {
        let shown = crate::termtext::path(path).into_owned();
        let mut file = crate::fsio::open_read(path).map_err(|e| ReplayError::Open { path: shown.clone(), detail: e.detail().into() })?;
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
