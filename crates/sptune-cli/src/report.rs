//! Output helpers: progress bars, run directories, tables.

use indicatif::{ProgressBar, ProgressStyle};
use sptune::run::dir::epoch_line;
use sptune::train::Progress;

/// A progress bar that prints epoch lines above itself (hidden with --quiet / --json).
pub struct Bar {
    bar: ProgressBar,
    lines: Vec<String>,
    echo: bool,
}

impl Bar {
    /// A bar titled `what`.
    pub fn new(what: &str, hidden: bool) -> Self {
        let bar = if hidden {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {elapsed} eta {eta}")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        Bar {
            bar,
            lines: Vec::new(),
            echo: !hidden,
        }
    }

    /// Feeds a training progress event.
    pub fn event(&mut self, p: Progress) {
        match p {
            Progress::Start(n) => self.bar.set_length(n),
            Progress::Step => self.bar.inc(1),
            Progress::Epoch(log) => {
                let line = epoch_line(&log);
                if self.echo {
                    self.bar.println(&line);
                }
                self.lines.push(line);
            }
            Progress::Note(note) => {
                if self.echo {
                    self.bar.println(format!("note: {note}"));
                }
                self.lines.push(format!("note: {note}"));
            }
        }
    }

    /// Moves the bar to `n` (for counts other than training steps).
    pub fn set_position(&self, n: u64) {
        self.bar.set_position(n);
    }

    /// Removes the bar; returns the epoch lines (for the log file).
    pub fn finish(self) -> Vec<String> {
        self.bar.finish_and_clear();
        self.lines
    }
}
