//! `sbx monitor --replay LOG`: the dashboard over a recorded log. The App is the same; the
//! time cursor is the number of the log's events it has been given (`total_events`), and
//! the keys below ask the outer loop (`tui::Replay`) for another one (`Action::Seek`).

use super::*;

/// What the dashboard knows of the log it replays.
#[derive(Debug, Clone)]
pub struct ReplayInfo {
    /// The log's path, as shown (escaped).
    pub log: String,
    /// Events in the log (the time cursor's end).
    pub events: u64,
    /// Lines that are not events of schema v1 (not JSON, another version, bad fields).
    pub unreadable: u64,
    /// The first of them: "line N: why".
    pub first_unreadable: Option<String>,
    pub verification: Verification,
    /// `:` typed: the event number being typed.
    pub seek_input: Option<String>,
}

/// Whether the log's seal holds (`sbx log verify`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Being checked, on a thread of its own.
    Checking,
    Verified(crate::seal::Verified),
    /// "line N: why".
    Failed(String),
}

/// The time cursor's big step: a twentieth of the log.
fn big_step(events: u64) -> u64 {
    (events / 20).max(1)
}

impl App {
    /// A dashboard that replays a log of `info.events` events.
    pub fn replaying(mut self, info: ReplayInfo) -> Self {
        self.replay = Some(info);
        self
    }

    pub fn replay_info(&self) -> Option<&ReplayInfo> {
        self.replay.as_ref()
    }

    /// The time cursor: how many of the log's events the panes show.
    pub fn cursor(&self) -> u64 {
        self.total_events
    }

    /// The latest event's time.
    pub fn last_time(&self) -> Option<SystemTime> {
        self.last_time
    }

    /// Forgets every event, keeping what the user chose (pane, filter, sort, selection,
    /// the terminal's size, the replay): the start of a seek backwards.
    pub fn rewind(&mut self) {
        let mut fresh = App::new(&[], self.now);
        std::mem::swap(&mut fresh.focus, &mut self.focus);
        std::mem::swap(&mut fresh.secondary, &mut self.secondary);
        std::mem::swap(&mut fresh.overlay, &mut self.overlay);
        std::mem::swap(&mut fresh.sort, &mut self.sort);
        std::mem::swap(&mut fresh.filter, &mut self.filter);
        std::mem::swap(&mut fresh.editing_filter, &mut self.editing_filter);
        std::mem::swap(&mut fresh.selected, &mut self.selected);
        std::mem::swap(&mut fresh.proc_scroll, &mut self.proc_scroll);
        std::mem::swap(&mut fresh.host_scroll, &mut self.host_scroll);
        std::mem::swap(&mut fresh.page, &mut self.page);
        std::mem::swap(&mut fresh.status, &mut self.status);
        std::mem::swap(&mut fresh.term_size, &mut self.term_size);
        std::mem::swap(&mut fresh.replay, &mut self.replay);
        fresh.started = self.started;
        *self = fresh;
    }

    /// A key of the replay's time cursor; `None` for the keys the dashboard handles as
    /// usual. Keys that would go to the command do nothing: none runs.
    pub(super) fn replay_key(&mut self, key: &KeyEvent, ctrl: bool) -> Option<Action> {
        let replay = self.replay.as_mut()?;
        let (now, events) = (self.total_events, replay.events);
        if let Some(typed) = &mut replay.seek_input {
            match key.code {
                KeyCode::Char(c @ '0'..='9') if !ctrl && typed.len() < 20 => typed.push(c),
                KeyCode::Backspace => {
                    typed.pop();
                }
                KeyCode::Enter => {
                    let target = typed.parse::<u64>().ok();
                    replay.seek_input = None;
                    return Some(target.map_or(Action::None, |n| Action::Seek(n.min(events))));
                }
                KeyCode::Esc => replay.seek_input = None,
                KeyCode::Char('c') if ctrl => replay.seek_input = None,
                _ => {}
            }
            return Some(Action::None);
        }
        let seek = |target: u64| Some(if target.min(events) == now { Action::None } else { Action::Seek(target.min(events)) });
        match key.code {
            KeyCode::Left if !ctrl => seek(now.saturating_sub(1)),
            KeyCode::Right if !ctrl => seek(now + 1),
            KeyCode::Char('[') if !ctrl => seek(now.saturating_sub(big_step(events))),
            KeyCode::Char(']') if !ctrl => seek(now + big_step(events)),
            KeyCode::Char('{') => seek(0),
            KeyCode::Char('}') => seek(events),
            KeyCode::Char(':') => {
                replay.seek_input = Some(String::new());
                Some(Action::None)
            }
            // No command, so no screen to zoom into and nothing to type to.
            KeyCode::Char('z') if !ctrl && self.focus != Pane::Output => {
                self.set_status("a replay has no command to zoom into: the log does not record its screen");
                Some(Action::None)
            }
            _ if input::is_zoom_key(key) => Some(Action::None),
            KeyCode::Tab | KeyCode::BackTab => None,
            _ if self.focus == Pane::Output => Some(Action::None),
            _ => None,
        }
    }
}
