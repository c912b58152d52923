//! The run directory written beside every checkpoint of a run (timm's layout): the resolved
//! `config.toml` (what `--config` reads back), a per-epoch `summary.csv`, `log.txt` and
//! `result.json`, each written atomically.

use std::path::{Path, PathBuf};

use crate::train::EpochLog;
use crate::util::write_atomic;
use crate::{Error, Result};

/// The run directory for an output checkpoint: `run_dir` if given, else `<out stem>.run/`
/// beside it.
pub fn run_dir_for(out: &Path, run_dir: Option<&Path>) -> PathBuf {
    match run_dir {
        Some(d) => d.to_path_buf(),
        None => {
            let stem = out
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "run".into());
            out.with_file_name(format!("{stem}.run"))
        }
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
    let mut s = String::from(
        "epoch,lr,task_loss,penalty_shared,penalty_new,train_acc,val_acc,val_loss,seconds\n",
    );
    for l in logs {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{:.3}\n",
            l.epoch,
            l.lr,
            l.task_loss,
            l.penalty_shared,
            l.penalty_new,
            l.train_acc,
            l.val_acc.map(|v| v.to_string()).unwrap_or_default(),
            l.val_loss.map(|v| v.to_string()).unwrap_or_default(),
            l.seconds
        ));
    }
    s
}

/// Writes `config.toml`, `summary.csv`, `log.txt` and `result.json` into `dir`.
pub fn write(
    dir: &Path,
    config_toml: &str,
    logs: &[EpochLog],
    log_lines: &[String],
    result_json: &serde_json::Value,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_atomic(&dir.join("config.toml"), config_toml.as_bytes())?;
    write_atomic(&dir.join("summary.csv"), summary_csv(logs).as_bytes())?;
    let mut log = log_lines.join("\n");
    log.push('\n');
    write_atomic(&dir.join("log.txt"), log.as_bytes())?;
    let json = serde_json::to_string_pretty(result_json)
        .map_err(|e| Error::Other(format!("result.json: {e}")))?;
    write_atomic(&dir.join("result.json"), json.as_bytes())
}
