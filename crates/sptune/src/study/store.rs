//! The study file: one SQLite database that holds a study's config and every trial, so a
//! killed study resumes where it stopped and several worker processes can share one file.
//!
//! Schema (version [`SCHEMA_VERSION`], kept in `PRAGMA user_version`; the file is marked as an
//! sptune study by `PRAGMA application_id` = [`APPLICATION_ID`] and by the `meta` table):
//!
//! ```sql
//! CREATE TABLE meta (
//!     key   TEXT PRIMARY KEY,      -- 'format' = 'sptune-study', 'config', 'created_at'
//!     value TEXT NOT NULL
//! );
//! CREATE TABLE trials (
//!     id          INTEGER PRIMARY KEY AUTOINCREMENT,
//!     key         TEXT NOT NULL UNIQUE,   -- e.g. 'search/l2-sp/007', 'final/l2/seed3'
//!     phase       TEXT NOT NULL,
//!     scheme      TEXT NOT NULL,
//!     params      TEXT NOT NULL,          -- JSON
//!     seed        INTEGER NOT NULL,       -- the u64 seed's bits as a signed integer
//!     status      TEXT NOT NULL,          -- pending | running | done | stopped | failed
//!     metrics     TEXT,                   -- JSON
//!     epochs      TEXT,                   -- JSON (per-epoch figures)
//!     error       TEXT,
//!     seconds     REAL,
//!     worker      TEXT,
//!     host        TEXT,
//!     started_at  TEXT,                   -- UTC, ISO 8601 ('2025-01-31T12:00:00.000Z')
//!     finished_at TEXT
//! );
//! CREATE INDEX trials_status ON trials (status, phase, id);
//! ```
//!
//! The file runs in WAL journal mode with a busy timeout of [`BUSY_TIMEOUT`]; every change is
//! one transaction, and [`Store::claim`] takes the write lock up front (`BEGIN IMMEDIATE`), so
//! two processes never claim the same trial.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The schema version this sptune reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// `PRAGMA application_id` of a study file: "SPTS" in ASCII.
pub const APPLICATION_ID: i64 = 0x5350_5453;

/// How long a write waits for another process's lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `format` value in the `meta` table.
const FORMAT: &str = "sptune-study";

/// The 16 bytes every SQLite 3 database starts with.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

const SCHEMA: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE trials (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key         TEXT NOT NULL UNIQUE,
    phase       TEXT NOT NULL,
    scheme      TEXT NOT NULL,
    params      TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    status      TEXT NOT NULL
        CHECK (status IN ('pending', 'running', 'done', 'stopped', 'failed')),
    metrics     TEXT,
    epochs      TEXT,
    error       TEXT,
    seconds     REAL,
    worker      TEXT,
    host        TEXT,
    started_at  TEXT,
    finished_at TEXT
);
CREATE INDEX trials_status ON trials (status, phase, id);
";

/// The current time in SQL, UTC, ISO 8601 with milliseconds.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

const COLUMNS: &str = "id, key, phase, scheme, params, seed, status, metrics, epochs, error, \
                       seconds, worker, host, started_at, finished_at";

/// Where a trial stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Planned, not yet claimed.
    Pending,
    /// Claimed by a worker.
    Running,
    /// Ran to the end.
    Done,
    /// Stopped early by successive halving: a result, not a failure.
    Stopped,
    /// Failed; the error text says why.
    Failed,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Running,
        Status::Done,
        Status::Stopped,
        Status::Failed,
    ];

    /// The name stored in the file (and used by serde): `pending`, `running`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Done => "done",
            Status::Stopped => "stopped",
            Status::Failed => "failed",
        }
    }

    /// The status named `s`, as [`Status::as_str`] writes it.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the trial has an outcome (done, stopped or failed).
    pub fn is_finished(self) -> bool {
        matches!(self, Status::Done | Status::Stopped | Status::Failed)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A trial to plan: `key` is unique in the study (e.g. "search/l2-sp/007", "final/l2/seed3").
#[derive(Clone, Debug, PartialEq)]
pub struct NewTrial {
    /// Unique name of the trial in the study.
    pub key: String,
    /// The study phase it belongs to (e.g. "search", "final").
    pub phase: String,
    /// The regularization scheme.
    pub scheme: String,
    /// Its hyperparameters.
    pub params: serde_json::Value,
    /// Its seed.
    pub seed: u64,
}

/// A trial as stored in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    /// Row id: the order trials were planned in.
    pub id: i64,
    /// Unique name of the trial in the study.
    pub key: String,
    /// The study phase it belongs to.
    pub phase: String,
    /// The regularization scheme.
    pub scheme: String,
    /// Its hyperparameters.
    pub params: serde_json::Value,
    /// Its seed.
    pub seed: u64,
    /// Where it stands.
    pub status: Status,
    /// Final figures, once finished.
    pub metrics: Option<serde_json::Value>,
    /// Per-epoch figures, once finished.
    pub epochs: Option<serde_json::Value>,
    /// Why it failed.
    pub error: Option<String>,
    /// Wall-clock seconds it ran.
    pub seconds: Option<f64>,
    /// The worker that claimed it.
    pub worker: Option<String>,
    /// The host that worker ran on.
    pub host: Option<String>,
    /// When it was claimed (UTC, ISO 8601).
    pub started_at: Option<String>,
    /// When it finished (UTC, ISO 8601).
    pub finished_at: Option<String>,
}

/// An open study file.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens or creates the study file. `config` (the study's resolved config as TOML/JSON
    /// text) is stored at creation; reopening with a different config (compared as text) is an
    /// error naming the file. A file whose schema version differs from [`SCHEMA_VERSION`], or
    /// that is not SQLite, or not an sptune study, is an error naming the file, and the file is
    /// left untouched.
    pub fn open(path: &Path, config: &str) -> Result<Store> {
        Self::open_with(path, Some(config))
    }

    /// Opens an existing study file whatever its config (for reading it: `sptune runs`,
    /// `sptune report`); the same checks of format and version as [`Store::open`].
    pub fn open_existing(path: &Path) -> Result<Store> {
        if !path.is_file() {
            return Err(Error::format(path, "no study file"));
        }
        Self::open_with(path, None)
    }

    fn open_with(path: &Path, config: Option<&str>) -> Result<Store> {
        let existing = match std::fs::metadata(path) {
            Ok(m) => m.len() > 0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io(path, e)),
        };
        if existing {
            check_magic(path)?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, e))?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store
            .conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| store.sql(e))?;
        // Only reads until the file is known to be ours (or empty): a foreign file is left
        // byte-identical.
        if store.is_blank()? {
            let Some(config) = config else {
                return Err(Error::format(path, "not an sptune study file (empty)"));
            };
            store.set_wal()?;
            store.init(config)?;
        }
        store.check(config)?;
        store.set_wal()?;
        Ok(store)
    }

    /// The study file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The study config stored at creation.
    pub fn config(&self) -> Result<String> {
        self.meta("config")?
            .ok_or_else(|| Error::format(&self.path, "the study file has no config"))
    }

    /// Inserts the trials whose key is not there yet (in one transaction); existing ones are
    /// untouched. Returns how many were added.
    pub fn plan(&self, trials: &[NewTrial]) -> Result<usize> {
        let tx = self.write()?;
        let mut added = 0;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO trials (key, phase, scheme, params, seed, status) \
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending') ON CONFLICT (key) DO NOTHING",
                )
                .map_err(|e| self.sql(e))?;
            for t in trials {
                let params = serde_json::to_string(&t.params).map_err(|e| self.json(&t.key, e))?;
                added += stmt
                    .execute((&t.key, &t.phase, &t.scheme, params, t.seed as i64))
                    .map_err(|e| self.sql(e))?;
            }
        }
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(added)
    }

    /// Atomically moves one pending trial (lowest id, optionally only of `phase`) to Running
    /// for `worker`, recording host and start time; `None` when none is pending. Two processes
    /// calling `claim` concurrently never get the same trial.
    pub fn claim(&self, worker: &str, phase: Option<&str>) -> Result<Option<Trial>> {
        let tx = self.write()?;
        let sql = format!(
            "UPDATE trials SET status = 'running', worker = ?1, host = ?2, started_at = {NOW}, \
                 finished_at = NULL, metrics = NULL, epochs = NULL, error = NULL, seconds = NULL \
             WHERE id = (SELECT id FROM trials WHERE status = 'pending' \
                         AND (?3 IS NULL OR phase = ?3) ORDER BY id LIMIT 1) \
             RETURNING {COLUMNS}"
        );
        let raw = tx
            .query_row(&sql, (worker, host_name(), phase), RawTrial::from_row)
            .optional()
            .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        raw.map(|r| r.decode(&self.path)).transpose()
    }

    /// Records the outcome of a running trial (Done, Stopped or Failed) with metrics,
    /// per-epoch figures, error text, seconds and finish time. A trial that is not running
    /// (never claimed, already finished, or requeued) is an error.
    pub fn finish(
        &self,
        id: i64,
        status: Status,
        metrics: Option<&serde_json::Value>,
        epochs: Option<&serde_json::Value>,
        error: Option<&str>,
        seconds: f64,
    ) -> Result<()> {
        if !status.is_finished() {
            return Err(self.other(format!(
                "trial {id} cannot finish as '{status}' (done, stopped or failed)"
            )));
        }
        let what = format!("trial {id}");
        let metrics = metrics
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| self.json(&what, e))?;
        let epochs = epochs
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| self.json(&what, e))?;
        let tx = self.write()?;
        let changed = tx
            .execute(
                &format!(
                    "UPDATE trials SET status = ?2, metrics = ?3, epochs = ?4, error = ?5, \
                     seconds = ?6, finished_at = {NOW} WHERE id = ?1 AND status = 'running'"
                ),
                (id, status.as_str(), metrics, epochs, error, seconds),
            )
            .map_err(|e| self.sql(e))?;
        if changed == 0 {
            let now: Option<String> = tx
                .query_row("SELECT status FROM trials WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(|e| self.sql(e))?;
            return Err(match now {
                None => self.other(format!("no trial {id}")),
                Some(s) => self.other(format!(
                    "trial {id} is {s}, not running: its outcome was not recorded"
                )),
            });
        }
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Puts Running trials back to Pending (a killed study's trials; called by a study that
    /// starts alone) and returns how many.
    pub fn requeue_running(&self) -> Result<usize> {
        let tx = self.write()?;
        let n = tx
            .execute(
                "UPDATE trials SET status = 'pending', worker = NULL, host = NULL, \
                 started_at = NULL WHERE status = 'running'",
                (),
            )
            .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))?;
        Ok(n)
    }

    /// Every trial, in id order.
    pub fn trials(&self) -> Result<Vec<Trial>> {
        self.select("1 ORDER BY id", None)
    }

    /// The trials of `phase`, in id order.
    pub fn trials_of(&self, phase: &str) -> Result<Vec<Trial>> {
        self.select("phase = ?1 ORDER BY id", Some(phase))
    }

    /// The trial named `key`.
    pub fn get(&self, key: &str) -> Result<Option<Trial>> {
        Ok(self.select("key = ?1", Some(key))?.into_iter().next())
    }

    /// How many trials are in each status (every status is present, with 0 where none is).
    pub fn counts(&self) -> Result<BTreeMap<String, usize>> {
        let mut counts: BTreeMap<String, usize> = Status::ALL
            .iter()
            .map(|s| (s.as_str().to_string(), 0))
            .collect();
        let mut stmt = self
            .conn
            .prepare("SELECT status, COUNT(*) FROM trials GROUP BY status")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map((), |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(|e| self.sql(e))?;
        for row in rows {
            let (status, n) = row.map_err(|e| self.sql(e))?;
            counts.insert(status, n as usize);
        }
        Ok(counts)
    }

    // ---- internals ----

    fn select(&self, cond: &str, arg: Option<&str>) -> Result<Vec<Trial>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM trials WHERE {cond}"))
            .map_err(|e| self.sql(e))?;
        let rows = match arg {
            Some(a) => stmt.query_map([a], RawTrial::from_row),
            None => stmt.query_map((), RawTrial::from_row),
        }
        .map_err(|e| self.sql(e))?;
        rows.map(|r| r.map_err(|e| self.sql(e))?.decode(&self.path))
            .collect()
    }

    /// A write transaction holding the write lock from the start.
    fn write(&self) -> Result<Transaction<'_>> {
        Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(|e| self.sql(e))
    }

    /// Sets a note of the study (`state = done` tells helper workers to stop); the keys of
    /// the file's own records (`format`, `config`, `created_at`) are refused.
    pub fn set_note(&self, key: &str, value: &str) -> Result<()> {
        if matches!(key, "format" | "config" | "created_at") {
            return Err(Error::Other(format!("{key} is not a note")));
        }
        let tx = self.write()?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) \
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
        .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Removes a note set by [`Store::set_note`] (the file's own records are refused).
    pub fn clear_note(&self, key: &str) -> Result<()> {
        if matches!(key, "format" | "config" | "created_at") {
            return Err(Error::Other(format!("{key} is not a note")));
        }
        let tx = self.write()?;
        tx.execute("DELETE FROM meta WHERE key = ?1", [key])
            .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Drops every trial (a study starting over on new inputs).
    pub fn clear_trials(&self) -> Result<()> {
        let tx = self.write()?;
        tx.execute("DELETE FROM trials", ())
            .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))
    }

    /// A note set by [`Store::set_note`].
    pub fn note(&self, key: &str) -> Result<Option<String>> {
        self.meta(key)
    }

    fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Whether the database is empty: no tables, no version, no application id.
    fn is_blank(&self) -> Result<bool> {
        let (version, app, tables) = self.header()?;
        Ok(version == 0 && app == 0 && tables == 0)
    }

    /// `user_version`, `application_id` and the number of schema objects.
    fn header(&self) -> Result<(i64, i64, i64)> {
        let pragma = |name: &str| -> Result<i64> {
            self.conn
                .pragma_query_value(None, name, |r| r.get(0))
                .map_err(|e| open_error(&self.path, e))
        };
        let version = pragma("user_version")?;
        let app = pragma("application_id")?;
        let tables = self
            .conn
            .query_row("SELECT COUNT(*) FROM sqlite_schema", (), |r| r.get(0))
            .map_err(|e| open_error(&self.path, e))?;
        Ok((version, app, tables))
    }

    fn set_wal(&self) -> Result<()> {
        // Changing the journal mode needs the file to itself, and SQLite answers "database is
        // locked" at once instead of waiting out the busy timeout when other connections are
        // opening it at the same moment (several workers starting on a new study file): retry
        // for as long as the busy timeout.
        let start = std::time::Instant::now();
        let mode: String = loop {
            match self
                .conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            {
                Ok(mode) => break mode,
                Err(rusqlite::Error::SqliteFailure(f, _))
                    if matches!(
                        f.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && start.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(self.sql(e)),
            }
        };
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(self.other(format!(
                "cannot use WAL journal mode (got '{mode}'); is the file on a network drive?"
            )));
        }
        Ok(())
    }

    /// Creates the schema, unless another process did it first.
    fn init(&self, config: &str) -> Result<()> {
        let tx = self.write()?;
        if !self.is_blank()? {
            return Ok(()); // another worker created it meanwhile; `check` judges it
        }
        tx.execute_batch(SCHEMA).map_err(|e| self.sql(e))?;
        tx.execute(
            &format!(
                "INSERT INTO meta (key, value) VALUES ('format', ?1), ('config', ?2), \
                 ('created_at', {NOW})"
            ),
            (FORMAT, config),
        )
        .map_err(|e| self.sql(e))?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(|e| self.sql(e))?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| self.sql(e))?;
        tx.commit().map_err(|e| self.sql(e))
    }

    /// Checks that the file is an sptune study of this schema version and this config.
    fn check(&self, config: Option<&str>) -> Result<()> {
        let (version, app, _) = self.header()?;
        if app != APPLICATION_ID {
            return Err(Error::format(
                &self.path,
                "is an SQLite file but not an sptune study file",
            ));
        }
        if version != SCHEMA_VERSION {
            return Err(Error::format(
                &self.path,
                format!(
                    "study file schema version {version}, this sptune reads version \
                     {SCHEMA_VERSION}; use a new file or a matching sptune"
                ),
            ));
        }
        let format = self
            .meta("format")
            .map_err(|_| Error::format(&self.path, "not an sptune study file (no meta table)"))?;
        if format.as_deref() != Some(FORMAT) {
            return Err(Error::format(&self.path, "not an sptune study file"));
        }
        if config.is_some_and(|c| self.config().ok().as_deref() != Some(c)) {
            return Err(Error::format(
                &self.path,
                "was created for another study config; use a new file or the same config",
            ));
        }
        Ok(())
    }

    fn sql(&self, e: rusqlite::Error) -> Error {
        Error::Other(format!("{}: {}", self.path.display(), one_line(&e)))
    }

    fn other(&self, msg: String) -> Error {
        Error::Other(format!("{}: {msg}", self.path.display()))
    }

    fn json(&self, what: &str, e: serde_json::Error) -> Error {
        self.other(format!("{what}: cannot write JSON: {e}"))
    }
}

/// A row as read, before the JSON and status columns are parsed.
struct RawTrial {
    id: i64,
    key: String,
    phase: String,
    scheme: String,
    params: String,
    seed: i64,
    status: String,
    metrics: Option<String>,
    epochs: Option<String>,
    error: Option<String>,
    seconds: Option<f64>,
    worker: Option<String>,
    host: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
}

impl RawTrial {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<RawTrial> {
        Ok(RawTrial {
            id: r.get(0)?,
            key: r.get(1)?,
            phase: r.get(2)?,
            scheme: r.get(3)?,
            params: r.get(4)?,
            seed: r.get(5)?,
            status: r.get(6)?,
            metrics: r.get(7)?,
            epochs: r.get(8)?,
            error: r.get(9)?,
            seconds: r.get(10)?,
            worker: r.get(11)?,
            host: r.get(12)?,
            started_at: r.get(13)?,
            finished_at: r.get(14)?,
        })
    }

    fn decode(self, path: &Path) -> Result<Trial> {
        let key = self.key;
        let json = |column: &str, text: &str| -> Result<serde_json::Value> {
            serde_json::from_str(text).map_err(|e| {
                Error::format(path, format!("trial '{key}': bad JSON in {column}: {e}"))
            })
        };
        let params = json("params", &self.params)?;
        let metrics = self
            .metrics
            .as_deref()
            .map(|t| json("metrics", t))
            .transpose()?;
        let epochs = self
            .epochs
            .as_deref()
            .map(|t| json("epochs", t))
            .transpose()?;
        let status = Status::parse(&self.status).ok_or_else(|| {
            Error::format(
                path,
                format!("trial '{key}': unknown status '{}'", self.status),
            )
        })?;
        Ok(Trial {
            id: self.id,
            key,
            phase: self.phase,
            scheme: self.scheme,
            params,
            seed: self.seed as u64,
            status,
            metrics,
            epochs,
            error: self.error,
            seconds: self.seconds,
            worker: self.worker,
            host: self.host,
            started_at: self.started_at,
            finished_at: self.finished_at,
        })
    }
}

/// The first 16 bytes must be SQLite's header; checked before SQLite touches the file.
fn check_magic(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut head = [0u8; 16];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    if n < head.len() || &head != SQLITE_MAGIC {
        return Err(Error::format(
            path,
            "not an sptune study file (not an SQLite database)",
        ));
    }
    Ok(())
}

/// An error while opening or first reading: "not a database" is a format error.
fn open_error(path: &Path, e: rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => {
            Error::format(path, "not an sptune study file (not an SQLite database)")
        }
        _ => Error::Other(format!("{}: {}", path.display(), one_line(&e))),
    }
}

fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// This machine's name, for the `host` column.
fn host_name() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let from_env = ["HOSTNAME", "COMPUTERNAME"]
            .iter()
            .filter_map(|v| std::env::var(v).ok())
            .map(|s| s.trim().to_string())
            .find(|s| !s.is_empty());
        from_env
            .or_else(|| {
                ["/proc/sys/kernel/hostname", "/etc/hostname"]
                    .iter()
                    .filter_map(|p| std::fs::read_to_string(p).ok())
                    .map(|s| s.trim().to_string())
                    .find(|s| !s.is_empty())
            })
            .unwrap_or_else(|| "unknown".to_string())
    })
    .clone()
}
