//! The dashboard's suite: frames with the terminal emulator, its throughput, the
//! scroll-back's memory (a unit benchmark of the sbx crate).

use super::*;

/// The dashboard, in process: `tui::tests::bench_figures` in a release build,
/// at full size (`SBX_BENCH_FIGURES`), prints `figure NAME VALUE` lines: frames of a
/// full screen of the command's output through the emulator (zoomed at
/// 200x50, in the pane at 120x40), the emulator's throughput, the memory of
/// the 10,000 rows of scroll-back; `--replay` over logs of 100,000 and 1,000,000 events
/// (written first): its open time, the memory it keeps, a step back from the end and
/// forward, the seal's check. Measured once: each figure is already an average over many
/// frames, or one pass over a large log.
pub(super) fn tui(cargo: &dyn Fn() -> Command) -> Result<Report> {
    let out = cargo()
        .args(["test", "--release", "--package", "sbx", "--lib", "--", "tui::tests::bench_figures", "--exact", "--nocapture", "--test-threads=1"])
        .env("SBX_BENCH_FIGURES", "1")
        .output()
        .context("running the dashboard's benchmark")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("the dashboard's benchmark failed: {}\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let mut figures = Vec::new();
    for line in stdout.lines() {
        // libtest may print its own "test ... " before the first line.
        let Some((_, rest)) = line.split_once("figure ") else { continue };
        let (name, value) = rest.split_once(' ').with_context(|| format!("a figure line without a value: {line}"))?;
        figures.push((name.to_string(), value.parse::<f64>().with_context(|| format!("not a number: {line}"))?));
    }
    if figures.is_empty() {
        bail!("the dashboard's benchmark printed no figure:\n{stdout}");
    }
    let frame = figures.iter().find(|(n, _)| n == "frame_zoomed_200x50_new_full_screen_ms").map(|(_, v)| *v);
    let figure = |name: &str| figures.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    let mut notes: Vec<String> =
        frame.map(|ms| format!("a full screen of new output, zoomed at 200x50, costs {ms:.2} ms a frame: {:.0}% of the 50 ms between two frames at 20 fps", ms / 50.0 * 100.0)).into_iter().collect();
    for (events, name) in [("100,000", "100k"), ("1,000,000", "1m")] {
        if let (Some(open), Some(rss)) = (figure(&format!("replay_open_{name}_events_s")), figure(&format!("replay_open_{name}_rss_mib"))) {
            let log = figure(&format!("replay_{name}_log_mib")).unwrap_or_default();
            // The larger log is replayed first: the smaller one reuses its heap.
            let heap = if name == "1m" { format!(", the heap grown by {rss:.0} MiB") } else { String::new() };
            notes.push(format!("--replay of {events} events ({log:.0} MiB of log) opens in {open:.2} s (goal: under 2 s){heap}"));
        }
    }
    Ok(Report { suite: "tui", runs: 1, contenders: Vec::new(), ratios: Vec::new(), figures, notes })
}
