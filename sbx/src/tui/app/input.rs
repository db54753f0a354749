//! Keys: what each key does, zoomed, in the prompt and outside it.

use super::*;

/// The key that leaves zoom (and zooms from the dashboard): Ctrl-], the
/// telnet and virsh console's escape, which agents, shells and editors
/// rarely need (vim's "jump to tag" is the one common use). A terminal
/// sends 0x1d, which crossterm reads as Ctrl-5; with the kitty keyboard
/// protocol it is Ctrl-].
pub(super) fn is_zoom_key(key: &KeyEvent) -> bool {
    key.modifiers.contains(KeyModifiers::CONTROL) && matches!(key.code, KeyCode::Char(']' | '5'))
}

/// The zoom key (`is_zoom_key`) as the screen names it.
pub const ZOOM_KEY: &str = "Ctrl-]";

impl App {
    pub(super) fn key(&mut self, key: KeyEvent) -> Action {
        if key.kind == KeyEventKind::Release {
            return Action::None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let shift = key.modifiers.contains(KeyModifiers::SHIFT);
        // The command has ended; its changes to agent configuration wait for
        // a decision, which every key is for.
        if let Some((_, since)) = &self.review {
            let answer = match key.code {
                KeyCode::Char('k' | 'K') if !ctrl => Some(true),
                KeyCode::Char('r' | 'R') | KeyCode::Enter if !ctrl => Some(false),
                KeyCode::Char('c') if ctrl => Some(false),
                _ => None,
            };
            if let Some(keep) = answer
                && self.now.saturating_duration_since(*since) >= ASK_ARM
            {
                self.review = None;
                return Action::Reviewed(keep);
            }
            return Action::None;
        }
        // Zoomed, the command has every key but the one that leaves (a
        // prompt that arrives meanwhile waits: the status line says so).
        if self.zoom {
            if is_zoom_key(&key) {
                self.zoom = false;
                return Action::None;
            }
            return self.send_to_command(&key);
        }
        // A held connection's prompt answers only once it has the keyboard:
        // Tab gives it (a key that never reaches the command), Esc gives it
        // back. Until then every key keeps its meaning, and in the output
        // pane goes to the command: what the user types for the command
        // ("Add unit tests") must not answer "allow always".
        if let Some(ask) = self.asks.front() {
            use crate::proxy::ask::Answer;
            let Some(since) = self.ask_focus else {
                if matches!(key.code, KeyCode::Tab | KeyCode::BackTab) && !ctrl {
                    self.ask_focus = Some(self.now);
                    return Action::None;
                }
                return self.key_unprompted(key, ctrl, shift);
            };
            let answer = match key.code {
                KeyCode::Char('a') if !ctrl => Some(Answer::AllowOnce),
                KeyCode::Char('A') if !ctrl => Some(Answer::AllowAlways),
                KeyCode::Char('d') if !ctrl => Some(Answer::DenyOnce),
                KeyCode::Char('D') if !ctrl => Some(Answer::DenyAlways),
                KeyCode::Esc | KeyCode::Tab | KeyCode::BackTab => {
                    self.ask_focus = None;
                    return Action::None;
                }
                KeyCode::Char('c') if ctrl => return self.quit_from_prompt(),
                _ => None,
            };
            // Keys typed in the first moments after Tab were meant for
            // something else (Tab then "dd" in a hurry): ignored.
            if let Some(answer) = answer
                && self.now.saturating_duration_since(since) >= ASK_ARM
            {
                let id = ask.id;
                self.asks.pop_front();
                // The next prompt, if any, keeps the keyboard but must be
                // armed again: one key answers one prompt.
                self.ask_focus = if self.asks.is_empty() { None } else { Some(self.now) };
                return Action::Answer(id, answer);
            }
            // The prompt has the keyboard: nothing reaches the command.
            return Action::None;
        }
        self.key_unprompted(key, ctrl, shift)
    }

    /// Ctrl-C while the prompt has the keyboard: the prompt lets go, and
    /// the quit question is asked.
    pub(super) fn quit_from_prompt(&mut self) -> Action {
        self.ask_focus = None;
        self.quit()
    }

    /// Whether the `--ask` prompt has the keyboard and takes answers now.
    pub(in crate::tui) fn ask_armed(&self) -> Option<bool> {
        self.ask_focus.map(|since| self.now.saturating_duration_since(since) >= ASK_ARM)
    }

    pub(super) fn key_unprompted(&mut self, key: KeyEvent, ctrl: bool, shift: bool) -> Action {
        match self.overlay {
            Overlay::ConfirmQuit => {
                match key.code {
                    KeyCode::Char('y' | 'Y') => return if self.state == RunState::Running { Action::KillAndQuit } else { Action::Quit },
                    KeyCode::Char('n' | 'N') | KeyCode::Esc => self.overlay = Overlay::None,
                    _ => {}
                }
                return Action::None;
            }
            Overlay::Help => {
                self.overlay = Overlay::None;
                return Action::None;
            }
            Overlay::Detail => {
                match key.code {
                    KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
                    KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
                    KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') | KeyCode::Backspace => self.overlay = Overlay::None,
                    _ => {}
                }
                return Action::None;
            }
            Overlay::None => {}
        }
        if self.editing_filter {
            match key.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char('u') if ctrl => self.filter.clear(),
                KeyCode::Char(c) if !ctrl && self.filter.chars().count() < 200 => self.filter.push(c),
                _ => return Action::None,
            }
            self.mark_rows_dirty();
            return Action::None;
        }
        if self.replay.is_some()
            && let Some(action) = self.replay_key(&key, ctrl)
        {
            return action;
        }
        if is_zoom_key(&key) {
            self.zoom = true;
            return Action::None;
        }
        if self.focus == Pane::Output {
            let page = self.page as isize;
            match key.code {
                KeyCode::Tab => self.set_focus(self.next_pane(1)),
                KeyCode::PageUp if shift => self.output.scroll(page),
                KeyCode::PageDown if shift => self.output.scroll(-page),
                KeyCode::Up if shift => self.output.scroll(1),
                KeyCode::Down if shift => self.output.scroll(-1),
                _ => return self.send_to_command(&key),
            }
            return Action::None;
        }
        match key.code {
            KeyCode::Char('z') => self.zoom = true,
            KeyCode::Tab => self.set_focus(self.next_pane(1)),
            KeyCode::BackTab => self.set_focus(self.next_pane(-1)),
            KeyCode::Char(c @ '1'..='5') if !ctrl => self.set_focus(PANES[(c as u8 - b'1') as usize]),
            KeyCode::Char('?') => self.overlay = Overlay::Help,
            KeyCode::Char('q') => return self.quit(),
            KeyCode::Char('c') if ctrl => return self.quit(),
            KeyCode::Char('e') => return Action::Export(self.default_export_path()),
            KeyCode::Char(' ') => {
                self.tail_paused = match self.tail_paused {
                    Some(_) => None,
                    None => Some(self.total_events),
                }
            }
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.mark_rows_dirty();
            }
            KeyCode::Char('/') => {
                self.editing_filter = true;
                self.set_focus(Pane::Violations);
            }
            KeyCode::Esc if !self.filter.is_empty() => {
                self.filter.clear();
                self.mark_rows_dirty();
            }
            KeyCode::Enter if self.focus == Pane::Violations => {
                if let Some((_, id)) = self.selection() {
                    self.selected = Some(id);
                    self.overlay = Overlay::Detail;
                }
            }
            KeyCode::Up | KeyCode::Char('k') => self.scroll(-1),
            KeyCode::Down | KeyCode::Char('j') => self.scroll(1),
            KeyCode::PageUp => self.scroll(-(self.page as isize)),
            KeyCode::PageDown => self.scroll(self.page as isize),
            KeyCode::Home | KeyCode::Char('g') => self.scroll(isize::MIN / 2),
            KeyCode::End | KeyCode::Char('G') => self.scroll(isize::MAX / 2),
            _ => {}
        }
        Action::None
    }

    /// `key` as the command's terminal would send it. Typing returns to the
    /// live screen, as in a terminal.
    fn send_to_command(&mut self, key: &KeyEvent) -> Action {
        let cursor = if self.output.screen().application_cursor() { keys::CursorKeys::Application } else { keys::CursorKeys::Normal };
        match keys::bytes(key, cursor) {
            Some(bytes) => {
                self.output.scroll(isize::MIN);
                Action::SendInput(bytes)
            }
            None => Action::None,
        }
    }

    /// `q`: quits at once after the command has exited, else asks first.
    pub(super) fn quit(&mut self) -> Action {
        if self.state == RunState::Running && self.replay.is_none() {
            self.overlay = Overlay::ConfirmQuit;
            Action::None
        } else {
            Action::Quit
        }
    }

    pub(super) fn scroll(&mut self, delta: isize) {
        match self.focus {
            Pane::Violations => self.move_selection(delta),
            Pane::Processes => self.proc_scroll = self.proc_scroll.saturating_add_signed(delta).min(self.procs.len().saturating_sub(1)),
            Pane::Network => self.host_scroll = self.host_scroll.saturating_add_signed(delta).min(self.hosts.len().saturating_sub(1)),
            // Up scrolls back: the offset counts from the bottom.
            Pane::Output => self.output.scroll(-delta),
            Pane::Tail => {}
        }
    }

    pub(super) fn next_pane(&self, step: isize) -> Pane {
        let i = PANES.iter().position(|&p| p == self.focus).unwrap_or(0);
        PANES[(i as isize + step).rem_euclid(PANES.len() as isize) as usize]
    }

    pub(super) fn set_focus(&mut self, pane: Pane) {
        self.focus = pane;
        if pane != Pane::Violations {
            self.secondary = pane;
        }
    }
}
