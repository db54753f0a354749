//! `e`: exporting the session's events as a sealed JSON Lines file.

use super::*;

impl App {
    /// The file `e` exports to: `sbx-session-<unix time of the session's
    /// start>.jsonl` in the current directory.
    pub fn default_export_path(&self) -> PathBuf {
        let t = self.session_time.unwrap_or_else(SystemTime::now);
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        PathBuf::from(format!("sbx-session-{secs}.jsonl"))
    }

    /// Writes the exportable events to `path` (see `export`) and says so
    /// in the footer; returns how many were written. A file of that name
    /// already there (the command can write the working directory) is
    /// never written through: the export takes the next free name
    /// (`crate::tui::create_export`). The dashboard runs the same as
    /// `export_job` on a thread of its own, then `exported`.
    pub fn export(&mut self, path: &Path) -> io::Result<usize> {
        let result = self.export_job(path)();
        self.exported(path, &result);
        result.map(|(n, _)| n)
    }

    /// The export of the events kept now, as work for another thread:
    /// writes them and returns how many, and the file's name.
    pub fn export_job(&self, path: &Path) -> impl FnOnce() -> io::Result<(usize, PathBuf)> + Send + 'static {
        let events: Vec<(Event, SystemTime)> = self.exportable().map(|(e, t)| (e.clone(), t)).collect();
        let path = path.to_path_buf();
        move || {
            let (file, used) = crate::tui::create_export(&path)?;
            let n = crate::tui::export_iter(events.iter().map(|(e, t)| (e, *t)), file)?;
            Ok((n, used))
        }
    }

    /// Says in the footer how the export to `path` went.
    pub fn exported(&mut self, path: &Path, result: &io::Result<(usize, PathBuf)>) {
        match result {
            Ok((n, used)) => {
                let dropped = if self.history_dropped > 0 { format!(" (the {} oldest were dropped)", self.history_dropped) } else { String::new() };
                self.set_status(format!("exported {n} events to {}{dropped}", used.display()));
            }
            Err(e) => self.set_status(format!("export to {} failed: {e}", path.display())),
        }
    }

    /// The events kept for export: SessionStart (even when it has left the
    /// history), then the history, oldest first.
    pub fn exportable(&self) -> impl Iterator<Item = (&Event, SystemTime)> {
        let start = self.session_start.as_ref().filter(|(seq, _, _)| *seq < self.history_dropped).map(|(_, e, t)| (e, *t));
        start.into_iter().chain(self.history.iter().map(|(e, t)| (e, *t)))
    }
}
