//! Drawing the `App`: a pure function of its state, O(visible rows) apart
//! from the lazy re-sort of the violations (at most once per frame while
//! events flow).

use std::time::{Duration, SystemTime};

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap},
};

use super::app::{Ancestor, App, MAX_TREE_INDENT, Overlay, PANES, Pane, RunState, SOURCES, TreeRow, ZOOM_KEY, source_index};
use crate::{
    report::{Event, ProcessAction},
    sandbox::LandlockStatus,
};

/// How much room there is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// Every pane at once (100x30 and up).
    Wide,
    /// The violations and one other pane (60x16 and up, e.g. 80x24).
    Compact,
    /// The focused pane only.
    Narrow,
}

impl Tier {
    fn of(area: Rect) -> Self {
        if area.width >= 100 && area.height >= 30 {
            Tier::Wide
        } else if area.width >= 60 && area.height >= 16 {
            Tier::Compact
        } else {
            Tier::Narrow
        }
    }
}

const WARN: Style = Style::new().fg(Color::Yellow);
const BAD: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
const GOOD: Style = Style::new().fg(Color::Green);
const DIM: Style = Style::new().fg(Color::DarkGray);
const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);
const HEAD: Style = Style::new().add_modifier(Modifier::BOLD).add_modifier(Modifier::UNDERLINED);

/// The header, the body and the footer of a terminal of `area`.
fn frame_areas(area: Rect) -> [Rect; 3] {
    let header_h = 3.min(area.height);
    let footer_h = u16::from(area.height > header_h);
    Layout::vertical([Constraint::Length(header_h), Constraint::Min(0), Constraint::Length(footer_h)]).areas(area)
}

/// The panes shown in `body`, and where.
fn panes(app: &App, body: Rect, tier: Tier) -> Vec<(Pane, Rect)> {
    match tier {
        Tier::Wide => {
            let [violations, middle, bottom] =
                Layout::vertical([Constraint::Percentage(40), Constraint::Percentage(25), Constraint::Percentage(35)]).areas(body);
            let [procs, net] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(middle);
            let [output, tail] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(bottom);
            vec![(Pane::Violations, violations), (Pane::Processes, procs), (Pane::Network, net), (Pane::Output, output), (Pane::Tail, tail)]
        }
        Tier::Compact => {
            let [violations, other] = Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(body);
            vec![(Pane::Violations, violations), (app.secondary, other)]
        }
        Tier::Narrow => vec![(app.focus, body)],
    }
}

/// Where the command's screen is drawn on a terminal of `area`: inside the
/// output pane, or the whole terminal but the status line when zoomed;
/// `None` when the output pane is not shown (the pty keeps its size).
pub(super) fn output_area(app: &App, area: Rect) -> Option<Rect> {
    if app.zoom {
        return (area.height >= 2 && area.width >= 1).then(|| Rect { height: area.height - 1, ..area });
    }
    let [_, body, _] = frame_areas(area);
    let (_, pane) = panes(app, body, Tier::of(area)).into_iter().find(|(p, _)| *p == Pane::Output)?;
    (pane.width >= 3 && pane.height >= 3).then(|| Block::bordered().inner(pane))
}

pub(super) fn render(app: &App, frame: &mut Frame) {
    let area = frame.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    if app.zoom {
        render_zoom(app, frame, area);
        return;
    }
    let tier = Tier::of(area);
    let [header, body, footer] = frame_areas(area);
    render_header(app, frame, header, tier);
    for (pane, rect) in panes(app, body, tier) {
        render_pane(app, frame, pane, rect, tier);
    }
    render_footer(app, frame, footer, tier);
    // Overlays cover the body (or everything when the body is tiny).
    let room = if body.height >= 5 { body } else { area };
    if let Some((files, _)) = &app.review {
        render_review(files, frame, inset(room));
        return;
    }
    if let Some(ask) = app.asks.front() {
        render_ask(app, ask, frame, room);
        return;
    }
    match app.overlay {
        Overlay::None => {}
        Overlay::Detail => render_detail(app, frame, inset(room)),
        Overlay::Help => render_help(app, frame, inset(room)),
        Overlay::ConfirmQuit => {
            let w = 40.min(room.width);
            let h = 3.min(room.height);
            let r = Rect { x: room.x + (room.width - w) / 2, y: room.y + (room.height - h) / 2, width: w, height: h };
            frame.render_widget(Clear, r);
            let block = Block::bordered().border_style(WARN);
            frame.render_widget(Paragraph::new(Line::styled("kill the command and quit? y/n", BOLD)).block(block), r);
        }
    }
}

/// The question after the command ended having changed agent configuration
/// that runs commands: each file, escaped, and its diff.
fn render_review(files: &[super::ReviewFile], frame: &mut Frame, area: Rect) {
    let mut lines = vec![
        Line::styled("The command changed agent configuration that runs commands outside the sandbox:", BOLD),
        Line::raw(""),
    ];
    for f in files {
        lines.push(Line::styled(crate::termtext::escape(&f.path).into_owned(), BOLD));
        for d in &f.diff {
            let style = if d.starts_with('+') { Style::new().fg(Color::Green) } else if d.starts_with('-') { Style::new().fg(Color::Red) } else { Style::new() };
            lines.push(Line::styled(format!("  {}", crate::termtext::escape(d)), style));
        }
    }
    lines.push(Line::raw(""));
    lines.push(Line::styled("r / Enter: revert it (the agent's own state is kept)    k: keep it", BOLD));
    frame.render_widget(Clear, area);
    let block = Block::bordered().border_style(WARN).title(" Agent configuration · r revert · k keep ");
    frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), area);
}

/// The prompt for a connection held by `--ask`: the whole destination,
/// escaped (it is the command's choice), wrapped rather than cut; and who
/// has the keyboard.
fn render_ask(app: &App, ask: &super::Ask, frame: &mut Frame, room: Rect) {
    let w = 64.min(room.width);
    let dest = format!("{}:{}", crate::termtext::escape(&ask.host), ask.port);
    let config = crate::termtext::escape(&ask.config).into_owned();
    let inner = usize::from(w.saturating_sub(2)).max(1);
    let wrapped = |s: &str| s.chars().count().div_ceil(inner).max(1) as u16;
    let armed = app.ask_armed();
    let mut lines = vec![Line::from(vec![Span::raw("Reach "), Span::styled(dest.clone(), BOLD), Span::raw(format!(" ({})?", ask.protocol))])];
    let left = ask.deadline.saturating_duration_since(app.now).as_secs();
    let waiting = app.asks.len() - 1;
    let more = if waiting > 0 { format!(" · {waiting} more waiting") } else { String::new() };
    lines.push(Line::styled(format!("No rule allows or denies it. Denied in {left} s{more}."), DIM));
    match armed {
        None => {
            let pane = if app.focus == Pane::Output { "the command" } else { "the dashboard" };
            lines.push(Line::from(vec![Span::styled("Tab", BOLD), Span::raw(" to answer; until then keys go to "), Span::raw(pane)]));
        }
        Some(ready) => {
            let key = |k: &'static str| Span::styled(k, if ready { BOLD } else { DIM });
            lines.push(Line::from(vec![key("a"), Span::raw(" allow once   "), key("A"), Span::raw(" allow always")]));
            lines.push(Line::from(vec![key("d"), Span::raw(" deny once    "), key("D"), Span::raw(" deny always   "), Span::styled("Esc", BOLD), Span::raw(" back")]));
        }
    }
    lines.push(Line::styled(format!("always: written to {config}"), DIM));
    let h = (wrapped(&format!("Reach {dest} ({})?", ask.protocol)) + wrapped(&format!("always: written to {config}")) + lines.len() as u16).min(room.height);
    let r = Rect { x: room.x + (room.width - w) / 2, y: room.y + (room.height - h) / 2, width: w, height: h };
    frame.render_widget(Clear, r);
    let (title, border) = match armed {
        Some(_) => (" Network request held · answering ", BOLD.patch(WARN)),
        None => (" Network request held ", WARN),
    };
    let block = Block::bordered().title(title).border_style(border);
    frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), r);
}

/// `room` less a margin, when there is room for one.
fn inset(room: Rect) -> Rect {
    let dx = if room.width >= 60 { 2 } else { 0 };
    let dy = u16::from(room.height >= 16);
    Rect { x: room.x + dx, y: room.y + dy, width: room.width - 2 * dx, height: room.height - 2 * dy }
}

pub(super) fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 { format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60) } else { format!("{}:{:02}", s / 60, s % 60) }
}

/// `t` relative to the session's start: "+1:05".
fn rel(app: &App, t: SystemTime) -> String {
    let base = app.session_time.unwrap_or(t);
    format!("+{}", fmt_duration(t.duration_since(base).unwrap_or_default()))
}

/// 1234 -> "1234", 1234567 -> "1.2M".
fn count(n: u64) -> String {
    match n {
        0..=999_999 => n.to_string(),
        1_000_000..=999_999_999 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// Line 1 of a live session: its state, elapsed time, command.
fn live_header(app: &App, l1: &mut Vec<Span<'static>>) {
    match app.state {
        RunState::Running => l1.push(Span::styled("running", GOOD.add_modifier(Modifier::BOLD))),
        RunState::Exited(code) => l1.push(Span::styled(format!("exited {code}"), if code == 0 { GOOD.add_modifier(Modifier::BOLD) } else { BAD })),
    }
    l1.push(Span::raw(format!(" {}  ", fmt_duration(app.elapsed()))));
    l1.push(Span::styled(app.command.clone(), BOLD));
}

/// Line 1 of a replay: the time cursor, the state at that time, the log's seal, the
/// lines that could not be read, the command.
fn replay_header(app: &App, r: &super::ReplayInfo, l1: &mut Vec<Span<'static>>) {
    l1.push(Span::styled("replay", Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)));
    l1.push(Span::raw(format!(" event {}/{} {} ", count(app.cursor()), count(r.events), rel_elapsed(app))));
    match app.state {
        RunState::Running if app.cursor() == 0 => l1.push(Span::styled("before the session", DIM)),
        RunState::Running => l1.push(Span::styled("running", GOOD)),
        RunState::Exited(code) => l1.push(Span::styled(format!("exited {code}"), if code == 0 { GOOD } else { BAD })),
    }
    l1.push(Span::raw(" · "));
    match &r.verification {
        super::Verification::Checking => l1.push(Span::styled("checking the seal", DIM)),
        super::Verification::Verified(_) => l1.push(Span::styled("seal verified", GOOD)),
        super::Verification::Failed(why) => l1.push(Span::styled(format!("LOG FAILS VERIFICATION at {}", crate::termtext::escape(why)), BAD.add_modifier(Modifier::REVERSED))),
    }
    if r.unreadable > 0 {
        let first = r.first_unreadable.as_deref().unwrap_or("");
        l1.push(Span::styled(format!(" · {} unreadable line{} ({first})", count(r.unreadable), if r.unreadable == 1 { "" } else { "s" }), WARN.add_modifier(Modifier::BOLD)));
    }
    l1.push(Span::raw("  "));
    l1.push(Span::styled(app.command.clone(), BOLD));
}

/// The cursor's time from the session's start: "+1:05".
fn rel_elapsed(app: &App) -> String {
    format!("+{}", fmt_duration(app.elapsed()))
}

fn render_header(app: &App, frame: &mut Frame, area: Rect, tier: Tier) {
    let mut lines = Vec::with_capacity(3);

    // Line 1: state, elapsed time, command.
    let mut l1 = vec![Span::styled(" sbx ", Style::new().add_modifier(Modifier::REVERSED)), Span::raw(" ")];
    if let Some(r) = &app.replay {
        replay_header(app, r, &mut l1);
        lines.push(Line::from(l1));
    } else {
        live_header(app, &mut l1);
        lines.push(Line::from(l1));
    }

    // Line 2: what each layer enforces.
    let mut l2 = Vec::new();
    match &app.enforcement {
        None => l2.push(Span::styled("enforcement: waiting for the session to start", DIM)),
        Some(e) => {
            let narrow = tier == Tier::Narrow;
            let (ll_text, ll_ok) = match e.landlock {
                Some(l) if l.status != LandlockStatus::None => {
                    (if narrow { format!("landlock {}/{}", l.status.as_str(), l.abi) } else { format!("landlock {} (ABI {})", l.status.as_str(), l.abi) }, l.status == LandlockStatus::Full)
                }
                Some(l) if l.abi > 0 => (format!("landlock none (ABI {})", l.abi), false),
                _ => ("landlock none".to_string(), false),
            };
            let onoff = |name: &str, on: bool| (format!("{name} {}", if on { "on" } else { "OFF" }), on);
            let mut layers = vec![(ll_text, ll_ok), onoff("seccomp", e.seccomp), onoff("netns", e.netns)];
            // bwrap is enforced once a session has started, but with --no-namespaces: the
            // first to go when room is short; without it, what is not enforced is said
            // whatever the room (it runs past the edge when short).
            if !e.not_enforced.is_empty() {
                layers.push((format!("no namespaces, not enforced: {}", e.not_enforced.iter().map(|w| crate::termtext::escape(w)).collect::<Vec<_>>().join("; ")), false));
            } else if !narrow {
                layers.push(onoff("bwrap", true));
            }
            if !narrow {
                l2.push(Span::raw("enforcement: "));
            }
            for (i, (text, ok)) in layers.into_iter().enumerate() {
                if i > 0 {
                    l2.push(Span::raw(if narrow { " " } else { "  " }));
                }
                l2.push(Span::styled(text, if ok { GOOD } else { WARN.add_modifier(Modifier::BOLD) }));
            }
        }
    }
    lines.push(Line::from(l2));

    // Line 3: counters.
    let total: u64 = app.denials.iter().sum();
    let mut l3 = vec![Span::styled(format!("denials {}", count(total)), if total > 0 { BOLD } else { Style::new() })];
    if tier != Tier::Narrow {
        let mut parts = Vec::new();
        for s in SOURCES {
            let n = app.denials[source_index(s)];
            // Limits and command rules are rarely hit: their counters appear when one is.
            if n > 0 || (tier == Tier::Wide && !matches!(s, crate::report::Source::Limit | crate::report::Source::Command | crate::report::Source::Dns)) {
                parts.push(format!("{} {}", s.as_str(), count(n)));
            }
        }
        if !parts.is_empty() {
            l3.push(Span::raw(format!(": {}", parts.join(" "))));
        }
    }
    l3.push(Span::raw(" · net "));
    l3.push(Span::styled(format!("{} ok", count(app.net_allowed)), Style::new()));
    l3.push(Span::raw(" "));
    l3.push(Span::styled(format!("{} denied", count(app.net_denied)), if app.net_denied > 0 { WARN } else { Style::new() }));
    l3.push(Span::raw(" · "));
    let lost = app.lost();
    l3.push(Span::styled(format!("lost {}", count(lost)), if lost > 0 { BAD } else { Style::new() }));
    // Without the kernel tracer, no count above includes file denials: said, with why.
    if let Some(o) = app.observation.as_ref().filter(|o| !o.kernel_tracer) {
        let why = o.reason.as_deref().map(crate::termtext::escape).unwrap_or_default();
        l3.push(Span::raw(" · "));
        l3.push(Span::styled(format!("file denials not observed: {why}"), WARN.add_modifier(Modifier::BOLD)));
    }
    lines.push(Line::from(l3));
    frame.render_widget(Paragraph::new(lines), area);
    // Right of line 1, when it fits: older events cannot be exported.
    if app.history_dropped > 0 && app.replay.is_none() {
        let note = format!("export keeps the last {} events ({} dropped)", super::app::MAX_HISTORY, count(app.history_dropped));
        let used = 16 + app.command.chars().count();
        if used + note.len() + 2 <= usize::from(area.width) {
            frame.render_widget(Paragraph::new(Line::styled(note, WARN)).alignment(ratatui::layout::Alignment::Right), Rect { height: 1, ..area });
        }
    }
}

fn pane_block(app: &App, pane: Pane, title: String) -> Block<'static> {
    let focused = app.focus == pane;
    let n = PANES.iter().position(|&p| p == pane).map_or(0, |i| i + 1);
    let style = if focused { Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD) } else { Style::new() };
    Block::new().borders(Borders::ALL).border_style(if focused { Style::new().fg(Color::Cyan) } else { DIM }).title(Span::styled(format!(" {n} {title} "), style))
}

fn render_pane(app: &App, frame: &mut Frame, pane: Pane, area: Rect, tier: Tier) {
    if area.width < 3 || area.height < 3 {
        return;
    }
    match pane {
        Pane::Violations => render_violations(app, frame, area, tier),
        Pane::Output => render_output(app, frame, area),
        Pane::Tail => render_tail(app, frame, area),
        Pane::Processes => render_processes(app, frame, area),
        Pane::Network => render_network(app, frame, area),
    }
}

fn render_violations(app: &App, frame: &mut Frame, area: Rect, tier: Tier) {
    let rows = app.rows();
    let mut title = format!("Violations {}/{} · sort {}", rows.len(), app.aggs.len(), app.sort.as_str());
    if !app.filter.is_empty() || app.editing_filter {
        title.push_str(&format!(" · filter \"{}\"", app.filter));
    }
    if app.agg_overflowed > 0 {
        title.push_str(" · table full");
    }
    let block = pane_block(app, Pane::Violations, title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if rows.is_empty() {
        let text = if app.aggs.is_empty() { "no denials yet" } else { "no row matches the filter" };
        frame.render_widget(Paragraph::new(Line::styled(text, DIM)), inner);
        return;
    }
    let visible = usize::from(inner.height.saturating_sub(1));
    if visible == 0 {
        return;
    }
    let selected = app.selected.and_then(|s| rows.iter().position(|&r| r == s)).unwrap_or(0);
    let offset = if selected < visible { 0 } else { selected + 1 - visible };
    let w = inner.width;
    let (header, widths): (Vec<&str>, Vec<Constraint>) = if w >= 90 && tier == Tier::Wide {
        (
            vec!["COUNT", "SOURCE", "OP", "OBJECT", "PROCESSES", "FIRST", "LAST"],
            vec![
                Constraint::Length(7),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Fill(1),
                Constraint::Length(16),
                Constraint::Length(7),
                Constraint::Length(7),
            ],
        )
    } else if w >= 56 {
        (
            vec!["COUNT", "SOURCE", "OP", "OBJECT", "LAST"],
            vec![Constraint::Length(6), Constraint::Length(8), Constraint::Length(8), Constraint::Fill(1), Constraint::Length(7)],
        )
    } else {
        (vec!["COUNT", "SRC", "OBJECT"], vec![Constraint::Length(5), Constraint::Length(4), Constraint::Fill(1)])
    };
    let columns = header.len();
    let table_rows: Vec<Row> = rows
        .iter()
        .skip(offset)
        .take(visible)
        .map(|&i| {
            let a = &app.aggs[i as usize];
            let object = if a.object.is_empty() { "-".to_string() } else { a.object.clone() };
            let source_style = Style::new().fg(source_color(a.source));
            let cells: Vec<Cell> = match columns {
                7 => {
                    let mut procs: Vec<String> = a.procs.iter().map(|(pid, comm)| format!("{comm}[{pid}]")).collect();
                    if a.more_procs {
                        procs.push("…".into());
                    }
                    vec![
                        Cell::from(count(a.count)),
                        Cell::from(Span::styled(a.source.as_str(), source_style)),
                        Cell::from(a.op.clone()),
                        Cell::from(object),
                        Cell::from(procs.join(",")),
                        Cell::from(rel(app, a.first)),
                        Cell::from(rel(app, a.last)),
                    ]
                }
                5 => vec![
                    Cell::from(count(a.count)),
                    Cell::from(Span::styled(a.source.as_str(), source_style)),
                    Cell::from(a.op.clone()),
                    Cell::from(object),
                    Cell::from(rel(app, a.last)),
                ],
                _ => vec![
                    Cell::from(count(a.count)),
                    Cell::from(Span::styled(&a.source.as_str()[..4.min(a.source.as_str().len())], source_style)),
                    Cell::from(if object.starts_with(&a.op) { object } else { format!("{} {object}", a.op) }),
                ],
            };
            Row::new(cells)
        })
        .collect();
    let highlight = if app.focus == Pane::Violations { Style::new().add_modifier(Modifier::REVERSED) } else { Style::new().add_modifier(Modifier::BOLD) };
    let table = Table::new(table_rows, widths).header(Row::new(header).style(HEAD)).row_highlight_style(highlight);
    let mut state = TableState::default().with_selected(Some(selected - offset));
    frame.render_stateful_widget(table, inner, &mut state);
}

fn source_color(s: crate::report::Source) -> Color {
    use crate::report::Source;
    match s {
        Source::Landlock => Color::Magenta,
        Source::Seccomp => Color::Red,
        Source::Proxy => Color::Blue,
        Source::Netns => Color::LightBlue,
        Source::Mount => Color::Yellow,
        Source::Dac => Color::Cyan,
        Source::Limit => Color::LightRed,
        Source::Command => Color::LightMagenta,
        Source::Dns => Color::LightCyan,
        Source::Other => Color::Gray,
    }
}

fn render_output(app: &App, frame: &mut Frame, area: Rect) {
    let mut title = "Output".to_string();
    if app.focus == Pane::Output {
        title.push_str(" · typing goes to the command, Tab leaves");
    }
    let scrolled = app.output.scrolled();
    if scrolled > 0 {
        title.push_str(&format!(" · scrolled back {scrolled}"));
    }
    let block = pane_block(app, Pane::Output, title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if app.replay.is_some() {
        frame.render_widget(Paragraph::new(Line::styled("(a replay: the log does not record the command's output)", DIM)).wrap(Wrap { trim: false }), inner);
        return;
    }
    if app.output.is_empty() {
        frame.render_widget(Paragraph::new(Line::styled("(no output yet)", DIM)), inner);
        return;
    }
    draw_screen(app.output.screen(), frame.buffer_mut(), inner);
    // The command's cursor, where the keys go (none over a prompt).
    if app.focus == Pane::Output && app.asks.is_empty() && app.overlay == Overlay::None && !app.editing_filter {
        set_cursor(app, frame, inner);
    }
}

/// Shows the command's cursor when it wants one and the live screen is in
/// view.
fn set_cursor(app: &App, frame: &mut Frame, area: Rect) {
    let screen = app.output.screen();
    let (row, col) = screen.cursor_position();
    if !screen.hide_cursor() && app.output.scrolled() == 0 && row < area.height && col < area.width {
        frame.set_cursor_position((area.x + col, area.y + row));
    }
}

/// Draws the command's screen into `area`, cell by cell, from its top left
/// (the screen has the area's size but for a moment after a resize). The
/// cells hold printed characters only: every control byte and escape
/// sequence the command wrote was interpreted by the emulator.
fn draw_screen(screen: &vt100::Screen, buf: &mut ratatui::buffer::Buffer, area: Rect) {
    let area = area.intersection(buf.area);
    let (rows, cols) = screen.size();
    for row in 0..area.height.min(rows.get()) {
        for col in 0..area.width.min(cols.get()) {
            let Some(cell) = screen.cell(row, col) else { continue };
            // The second half of a wide character: the first drew it.
            if cell.is_wide_continuation() {
                continue;
            }
            let target = &mut buf[(area.x + col, area.y + row)];
            // A wide character cut by the area's edge would spill over it.
            let symbol = if !cell.has_contents() || (cell.is_wide() && col + 1 >= area.width) { " " } else { cell.contents() };
            target.set_symbol(symbol);
            target.set_style(cell_style(cell));
        }
    }
}

fn cell_style(cell: &vt100::Cell) -> Style {
    let color = |c: vt100::Color| match c {
        vt100::Color::Default => Color::Reset,
        vt100::Color::Idx(i) => Color::Indexed(i),
        vt100::Color::Rgb(r, g, b) => Color::Rgb(r, g, b),
    };
    let mut style = Style::new().fg(color(cell.fgcolor())).bg(color(cell.bgcolor()));
    for (on, m) in [
        (cell.bold(), Modifier::BOLD),
        (cell.dim(), Modifier::DIM),
        (cell.italic(), Modifier::ITALIC),
        (cell.underline(), Modifier::UNDERLINED),
        (cell.inverse(), Modifier::REVERSED),
    ] {
        if on {
            style = style.add_modifier(m);
        }
    }
    style
}

/// Zoomed: the command's screen on the whole terminal, and one status line
/// with the counters, the newest denial, the held prompts and the key back.
fn render_zoom(app: &App, frame: &mut Frame, area: Rect) {
    let Some(screen) = output_area(app, area) else {
        frame.render_widget(Paragraph::new(Line::styled(format!("{ZOOM_KEY} dashboard"), BOLD)), area);
        return;
    };
    draw_screen(app.output.screen(), frame.buffer_mut(), screen);
    set_cursor(app, frame, screen);
    let status = Rect { y: screen.bottom(), height: 1, ..area };
    frame.render_widget(Paragraph::new(zoom_status(app)).style(Style::new().add_modifier(Modifier::REVERSED)), status);
}

/// The zoomed status line, the most important first: a narrow terminal
/// cuts the end.
fn zoom_status(app: &App) -> Line<'static> {
    let sep = || Span::raw(" │ ");
    let mut spans = vec![Span::styled(" sbx ", BOLD), Span::styled(format!("{ZOOM_KEY} dashboard"), BOLD)];
    if let Some(ask) = app.asks.front() {
        let left = ask.deadline.saturating_duration_since(app.now).as_secs();
        let n = app.asks.len();
        let what = if n == 1 { format!("request to {}:{} held", crate::termtext::escape(&ask.host), ask.port) } else { format!("{n} requests held") };
        spans.push(sep());
        spans.push(Span::styled(format!("{what}: {ZOOM_KEY}, Tab to answer ({left} s)"), BOLD.fg(Color::Yellow)));
    }
    spans.push(sep());
    match app.state {
        RunState::Running => spans.push(Span::raw(format!("running {}", fmt_duration(app.elapsed())))),
        RunState::Exited(code) => spans.push(Span::raw(format!("exited {code} {}", fmt_duration(app.elapsed())))),
    }
    spans.push(sep());
    let total: u64 = app.denials.iter().sum();
    let mut denials = format!("denials {}", count(total));
    let by_layer: Vec<String> = SOURCES.iter().filter(|&&s| app.denials[source_index(s)] > 0).map(|&s| format!("{} {}", s.as_str(), count(app.denials[source_index(s)]))).collect();
    if !by_layer.is_empty() {
        denials.push_str(&format!(": {}", by_layer.join(" ")));
    }
    spans.push(Span::styled(denials, if total > 0 { BOLD } else { Style::new() }));
    let lost = app.lost();
    if lost > 0 {
        spans.push(Span::styled(format!(" · lost {}", count(lost)), BOLD.fg(Color::Red)));
    }
    if app.observation.as_ref().is_some_and(|o| !o.kernel_tracer) {
        spans.push(Span::styled(" · file denials not observed", BOLD.fg(Color::Yellow)));
    }
    if let Some(a) = app.newest_denial.and_then(|i| app.aggs.get(i as usize)) {
        spans.push(sep());
        let what = if a.object.starts_with(&a.op) { a.object.clone() } else { format!("{} {}", a.op, a.object) };
        spans.push(Span::raw(format!("newest: {} {what}", a.source.as_str())));
    }
    Line::from(spans)
}

/// One event as one line of the tail.
fn tail_line(app: &App, event: &Event, time: SystemTime) -> Line<'static> {
    let t = Span::styled(format!("{:>6} ", rel(app, time)), DIM);
    let (kind, style, text) = match event {
        Event::SessionStart(s) => ("start", GOOD, super::app::join_command(s.command.iter().map(|a| a.to_string_lossy()))),
        Event::Denial(d) => {
            let who = match (&d.comm, d.pid) {
                (Some(c), Some(p)) => format!(" {c}[{p}]"),
                (None, Some(p)) => format!(" [{p}]"),
                (Some(c), None) => format!(" {c}"),
                (None, None) => String::new(),
            };
            let (op, object) = super::app::row_key(d);
            // A seccomp call names its syscall already.
            let what = if object.starts_with(&*op) { object.into_owned() } else { format!("{op} {object}") };
            ("denied", Style::new().fg(source_color(d.source)), format!("{} {what}{who}", d.source.as_str()))
        }
        Event::Net(n) => (
            if n.allowed { "net ok" } else { "net no" },
            if n.allowed { Style::new() } else { WARN },
            format!("{} {}:{} ({})", n.protocol, n.host, n.port, n.rule),
        ),
        Event::Process(p) => match p.action {
            ProcessAction::Exec => ("exec", DIM, format!("[{}] {}", p.pid, if p.argv.is_empty() { p.comm.clone() } else { p.argv.join(" ") })),
            ProcessAction::Exit => ("exit", DIM, format!("[{}] {}", p.pid, p.comm)),
        },
        Event::Loss(l) => ("LOST", BAD, format!("{} events ({})", l.count, l.source)),
        Event::SessionEnd(e) => ("end", BOLD, format!("exit {}, {} lost", e.exit_code, e.lost)),
        Event::Policy(p) => ("policy", GOOD, format!("{} {} {} {}", p.action.as_str().replace('_', " "), p.key, p.change.as_str(), p.value)),
        Event::Tamper(t) => ("TAMPER", BAD, format!("{} {} ({})", t.change.as_str(), t.path.display(), t.action.as_str())),
    };
    Line::from(vec![t, Span::styled(format!("{kind:<6} "), style), Span::raw(text)])
}

fn render_tail(app: &App, frame: &mut Frame, area: Rect) {
    let end_seq = app.tail_paused.unwrap_or(app.total_events);
    let mut title = format!("Events {}", count(app.total_events));
    if let Some(at) = app.tail_paused {
        title.push_str(&format!(" · PAUSED (+{} new, space resumes)", app.total_events - at));
    }
    if app.history_dropped > 0 {
        title.push_str(&format!(" · {} oldest dropped", count(app.history_dropped)));
    }
    let block = pane_block(app, Pane::Tail, title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let h = u64::from(inner.height);
    let end = end_seq.saturating_sub(app.history_dropped) as usize;
    let start = end.saturating_sub(h as usize);
    let lines: Vec<Line> = app.history.range(start.min(app.history.len())..end.min(app.history.len())).map(|(e, t)| tail_line(app, e, *t)).collect();
    if lines.is_empty() {
        frame.render_widget(Paragraph::new(Line::styled("(no events yet)", DIM)), inner);
    } else {
        frame.render_widget(Paragraph::new(lines), inner);
    }
}

fn render_processes(app: &App, frame: &mut Frame, area: Rect) {
    let mut title = format!("Processes {} running / {}", app.procs_alive, app.procs.len());
    if app.procs_forgotten > 0 {
        title.push_str(&format!(" · {} forgotten", count(app.procs_forgotten)));
    }
    let block = pane_block(app, Pane::Processes, title);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if app.procs.is_empty() {
        frame.render_widget(Paragraph::new(Line::styled("(no process seen yet)", DIM)), inner);
        return;
    }
    let visible = usize::from(inner.height.saturating_sub(1));
    let tree = app.proc_rows();
    let offset = app.proc_scroll.min(tree.len().saturating_sub(visible.max(1)));
    let rows: Vec<Row> = tree
        .iter()
        .skip(offset)
        .take(visible)
        .filter_map(|r| app.procs.get(&r.pid).map(|p| (r, p)))
        .map(|(r, p)| {
            let argv = p.execs.back().filter(|a| !a.is_empty()).map_or_else(|| p.comm.clone(), |a| a.join(" "));
            let den_style = if p.denials > 0 { WARN } else { Style::new() };
            Row::new(vec![
                Cell::from(r.pid.to_string()),
                Cell::from(Span::styled(count(p.denials), den_style)),
                Cell::from(if p.alive { Span::raw("run") } else { Span::styled("exit", DIM) }),
                Cell::from(Line::from(vec![Span::styled(tree_prefix(r), DIM), Span::raw(argv)])),
            ])
        })
        .collect();
    let table = Table::new(rows, [Constraint::Length(7), Constraint::Length(6), Constraint::Length(4), Constraint::Fill(1)])
        .header(Row::new(["PID", "DENIED", "", "COMMAND"]).style(HEAD));
    frame.render_widget(table, inner);
}

/// The tree lines left of a process's command: "│ ├─ ", "  └─ "...
fn tree_prefix(r: &TreeRow) -> String {
    let depth = r.depth.min(MAX_TREE_INDENT);
    let mut s = String::new();
    for level in 1..depth {
        s.push_str(if level < 64 && r.rails & (1 << level) != 0 { "│  " } else { "   " });
    }
    if depth > 0 {
        s.push_str(if r.last { "└─ " } else { "├─ " });
    }
    s
}

fn render_network(app: &App, frame: &mut Frame, area: Rect) {
    let block = pane_block(app, Pane::Network, format!("Network {} hosts · {} ok {} denied", app.hosts.len(), count(app.net_allowed), count(app.net_denied)));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let hosts = app.host_rows();
    if hosts.is_empty() {
        frame.render_widget(Paragraph::new(Line::styled("(no connection through the proxy yet)", DIM)), inner);
        return;
    }
    let visible = usize::from(inner.height.saturating_sub(1));
    let offset = app.host_scroll.min(hosts.len().saturating_sub(visible.max(1)));
    let rows: Vec<Row> = hosts
        .iter()
        .skip(offset)
        .take(visible)
        .filter_map(|name| app.hosts.get(name).map(|h| (name, h)))
        .map(|(name, h)| {
            Row::new(vec![
                Cell::from(count(h.allowed)),
                Cell::from(Span::styled(count(h.denied), if h.denied > 0 { WARN } else { Style::new() })),
                Cell::from(format!("{name}:{}", h.last_port)),
                Cell::from(Span::styled(format!("{} {}", if h.last_allowed { "ok" } else { "denied" }, h.last_rule), if h.last_allowed { Style::new() } else { WARN })),
            ])
        })
        .collect();
    let table = Table::new(rows, [Constraint::Length(5), Constraint::Length(5), Constraint::Percentage(45), Constraint::Fill(1)])
        .header(Row::new(["OK", "DENY", "HOST", "LAST DECISION"]).style(HEAD));
    frame.render_widget(table, inner);
}

fn field<'a>(name: &str, value: impl Into<String>) -> Line<'a> {
    Line::from(vec![Span::styled(format!("{name:<15}"), BOLD), Span::raw(value.into())])
}

fn render_detail(app: &App, frame: &mut Frame, area: Rect) {
    let Some((_, id)) = app.selection() else { return };
    let a = &app.aggs[id as usize];
    let d = &a.latest;
    let mut lines = vec![
        Line::styled(format!("{} {} {}", a.source.as_str(), a.op, a.object), BOLD),
        field("count", format!("{}   first {}   last {}", a.count, rel(app, a.first), rel(app, a.last))),
        field("denied by", d.source.as_str()),
    ];
    let reason = d.detail.iter().find(|(k, _)| k == "reason").map(|(_, v)| v.as_str());
    lines.push(field("why", reason.unwrap_or("(no reason recorded)")));
    let opt = |lines: &mut Vec<Line>, name: &str, v: Option<String>| {
        if let Some(v) = v {
            lines.push(field(name, v));
        }
    };
    opt(&mut lines, "syscall", d.syscall.clone());
    opt(&mut lines, "errno", d.errno.clone());
    opt(&mut lines, "operation", d.operation.map(|o| o.to_string()));
    opt(&mut lines, "path", d.path.as_ref().map(|p| p.to_string_lossy().into_owned()));
    opt(&mut lines, "requested path", d.requested_path.clone());
    opt(&mut lines, "host", d.host.clone());
    opt(&mut lines, "port", d.port.map(|p| p.to_string()));
    opt(&mut lines, "pid", d.pid.map(|p| p.to_string()));
    opt(&mut lines, "tid", d.tid.map(|p| p.to_string()));
    opt(&mut lines, "comm", d.comm.clone());
    for (k, v) in &d.detail {
        if k != "reason" {
            lines.push(field(&format!("detail.{k}"), v.clone()));
        }
    }
    let mut procs: Vec<String> = a.procs.iter().map(|(pid, comm)| format!("{comm}[{pid}]")).collect();
    if a.more_procs {
        procs.push("and more".into());
    }
    lines.push(field("processes", procs.join(", ")));
    if let Some(pid) = d.pid {
        match app.procs.get(&pid) {
            Some(p) if !p.execs.is_empty() => {
                lines.push(Line::styled(format!("execs of pid {pid} (oldest first):"), BOLD));
                for argv in &p.execs {
                    lines.push(Line::raw(format!("  {}", if argv.is_empty() { p.comm.clone() } else { argv.join(" ") })));
                }
                if let Some(exe) = &p.exe {
                    lines.push(field("  exe", exe.to_string_lossy().into_owned()));
                }
            }
            _ => lines.push(Line::styled(format!("no exec of pid {pid} seen"), DIM)),
        }
        lines.push(Line::styled("ancestry (innermost first, from the execs seen):", BOLD));
        let indent = "  ";
        for a in app.ancestry(pid) {
            match a {
                Ancestor::Known(p, comm, argv) => {
                    let argv = if argv.is_empty() { "(no exec seen)".to_string() } else { argv.join(" ") };
                    let this = if p == pid { "  (this process)" } else { "" };
                    lines.push(Line::from(vec![Span::raw(format!("{indent}{p} {comm}: {argv}")), Span::styled(this, DIM)]));
                }
                Ancestor::Unseen { pid: parent, child } => {
                    lines.push(Line::styled(format!("{indent}(parent {parent} of {child} not seen: outside the sandbox, or forgotten)"), DIM));
                }
                Ancestor::NoParent { child } => lines.push(Line::styled(format!("{indent}(parent of {child} unknown: no exec of it with a parent seen)"), DIM)),
                Ancestor::Loop { pid: p } => lines.push(Line::styled(format!("{indent}(pid {p} again: pids were reused, the ancestry stops here)"), DIM)),
                Ancestor::More => lines.push(Line::styled(format!("{indent}(further ancestors not listed: only the {} nearest are)", super::app::MAX_ANCESTORS), DIM)),
            }
        }
    }
    frame.render_widget(Clear, area);
    let block = Block::bordered().border_style(Style::new().fg(Color::Cyan)).title(" Violation detail · Esc closes · ↑↓ previous/next ");
    frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), area);
}

/// Every key, for the help screen.
pub(super) const HELP: &[(&str, &str)] = &[
    ("Tab / Shift-Tab", "next / previous pane (1-5 jump to a pane)"),
    ("↑ ↓ j k", "select a violation / scroll the focused pane"),
    ("PgUp PgDn Home End", "page / first / last"),
    ("Enter", "details of the selected violation (Esc closes)"),
    ("/", "filter violations as you type (Enter keeps, Esc clears)"),
    ("s", "sort violations: count, last seen, source, object"),
    ("Esc", "clear the filter, close a window"),
    ("space", "pause / resume the event tail"),
    ("e", "export the session's events as JSON Lines"),
    ("?", "this help"),
    ("q / Ctrl-C", "quit (asks first while the command runs: y/n)"),
    ("z / Ctrl-]", "zoom: the command gets the whole terminal and every key; Ctrl-] comes back"),
    ("Output pane", "keys go to the command; Tab leaves; Shift-PgUp/PgDn/↑/↓ scroll back"),
    ("--ask prompt", "Tab takes the keyboard, then a/A allow once/always, d/D deny once/always; Esc gives it back"),
];

/// The keys of `--replay`'s time cursor, for the help screen.
pub(super) const REPLAY_HELP: &[(&str, &str)] = &[
    ("← →", "replay: one event back / forward"),
    ("[ ]", "replay: a twentieth of the log back / forward"),
    ("{ }", "replay: the start / the end of the log"),
    (":", "replay: go to event N (type N, Enter)"),
];

fn render_help(app: &App, frame: &mut Frame, area: Rect) {
    let replay: &[(&str, &str)] = if app.replay.is_some() { REPLAY_HELP } else { &[] };
    let mut lines: Vec<Line> = replay.iter().chain(HELP).map(|(k, v)| Line::from(vec![Span::styled(format!("{k:<20}"), BOLD), Span::raw(*v)])).collect();
    lines.push(Line::raw(""));
    lines.push(Line::styled(
        format!(
            "Bounds: {} events kept for the tail and export, {} violation rows, {} processes, {} hosts, {} rows of the command's scroll-back.",
            super::app::MAX_HISTORY,
            super::app::MAX_AGGREGATES,
            super::app::MAX_PROCESSES,
            super::app::MAX_HOSTS,
            super::output::MAX_SCROLLBACK
        ),
        DIM,
    ));
    if app.history_dropped > 0 {
        lines.push(Line::styled(format!("{} older events were dropped and will not be exported.", app.history_dropped), WARN));
    }
    frame.render_widget(Clear, area);
    let block = Block::bordered().border_style(Style::new().fg(Color::Cyan)).title(" Keys · any key closes ");
    frame.render_widget(Paragraph::new(lines).block(block).wrap(Wrap { trim: false }), area);
}

fn render_footer(app: &App, frame: &mut Frame, area: Rect, tier: Tier) {
    if area.height == 0 {
        return;
    }
    let key = |k: &'static str| Span::styled(k, Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD));
    let mut spans = Vec::new();
    if let Some((text, _)) = &app.status {
        spans.push(Span::styled(format!("{text} "), WARN));
    }
    let hints: &[(&'static str, &'static str)] = match app.overlay {
        Overlay::ConfirmQuit => &[("y", "kill the command and quit"), ("n", "stay")],
        Overlay::Help => &[("any key", "close help")],
        Overlay::Detail => &[("Esc", "close"), ("↑↓", "previous/next")],
        Overlay::None if app.editing_filter => &[("Enter", "keep filter"), ("Esc", "clear")],
        Overlay::None if app.replay.as_ref().is_some_and(|r| r.seek_input.is_some()) => &[("Enter", "go"), ("Esc", "cancel")],
        Overlay::None if app.replay.is_some() && tier == Tier::Narrow => &[("q", "quit"), ("?", "help"), ("←→", "step")],
        Overlay::None if app.replay.is_some() => &[
            ("q", "quit"),
            ("?", "help"),
            ("←→", "step"),
            ("[]", "5%"),
            ("{}", "start/end"),
            (":", "go to event"),
            ("Tab", "pane"),
            ("Enter", "detail"),
            ("/", "filter"),
            ("s", "sort"),
        ],
        Overlay::None if app.focus == Pane::Output => &[("Tab", "leave output"), ("Ctrl-]", "zoom"), ("S-PgUp/PgDn", "scroll"), ("keys", "go to the command")],
        Overlay::None if tier == Tier::Narrow => &[("q", "quit"), ("?", "help"), ("Tab", "pane")],
        Overlay::None => &[
            ("q", "quit"),
            ("?", "help"),
            ("Tab", "pane"),
            ("Enter", "detail"),
            ("/", "filter"),
            ("s", "sort"),
            ("space", "pause"),
            ("e", "export"),
            ("z", "zoom"),
        ],
    };
    if app.editing_filter && app.overlay == Overlay::None {
        spans.push(Span::styled(format!("filter: {}▏ ", app.filter), BOLD));
    }
    if let Some(typed) = app.replay.as_ref().and_then(|r| r.seek_input.as_ref()) {
        spans.push(Span::styled(format!("go to event (0-{}): {typed}▏ ", app.replay.as_ref().map_or(0, |r| r.events)), BOLD));
    }
    for (i, (k, what)) in hints.iter().enumerate() {
        if i > 0 {
            spans.push(Span::raw(" "));
        }
        spans.push(key(k));
        spans.push(Span::raw(format!(" {what}")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}
