//! Output helpers: progress bars, run directories, tables.

use std::path::{Path, PathBuf};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use sptune::train::{EpochLog, Progress};
use sptune::util::write_atomic;

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

/// One human-readable line per epoch.
pub fn epoch_line(l: &EpochLog) -> String {
    let val = l
        .val_acc
        .map(|v| format!(" val {:.2}%", 100.0 * v))
        .unwrap_or_default();
    format!(
        "epoch {:>3} lr {:.2e} loss {:.4} pen(S) {:.4} pen(new) {:.4} train {:.2}%{} ({:.1}s)",
        l.epoch,
        l.lr,
        l.task_loss,
        l.penalty_shared,
        l.penalty_new,
        100.0 * l.train_acc,
        val,
        l.seconds
    )
}

/// The per-epoch CSV (timm's `summary.csv`).
pub fn summary_csv(logs: &[EpochLog]) -> String {
    let mut s =
        String::from("epoch,lr,task_loss,penalty_shared,penalty_new,train_acc,val_acc,seconds\n");
    for l in logs {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{:.3}\n",
            l.epoch,
            l.lr,
            l.task_loss,
            l.penalty_shared,
            l.penalty_new,
            l.train_acc,
            l.val_acc.map(|v| v.to_string()).unwrap_or_default(),
            l.seconds
        ));
    }
    s
}

/// The run directory for an output checkpoint: `--run-dir`, else `<out dir>/<stem>.run/`.
pub fn run_dir_for(out: &Path, run_dir: Option<&PathBuf>) -> PathBuf {
    match run_dir {
        Some(d) => d.clone(),
        None => {
            let stem = out
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into());
            out.with_file_name(format!("{stem}.run"))
        }
    }
}

/// Writes `config.toml`, `summary.csv`, `log.txt` (and `result.json`) into `dir`, each
/// atomically.
pub fn write_run_dir(
    dir: &Path,
    config_toml: &str,
    logs: &[EpochLog],
    log_lines: &[String],
    result_json: &serde_json::Value,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(&dir.join("config.toml"), config_toml.as_bytes())?;
    write_atomic(&dir.join("summary.csv"), summary_csv(logs).as_bytes())?;
    let mut log = log_lines.join("\n");
    log.push('\n');
    write_atomic(&dir.join("log.txt"), log.as_bytes())?;
    write_atomic(
        &dir.join("result.json"),
        serde_json::to_string_pretty(result_json)?.as_bytes(),
    )?;
    Ok(())
}
