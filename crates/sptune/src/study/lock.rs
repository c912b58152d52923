//! One leader per study folder: the leader holds an exclusive lock on `DIR/leader.lock` for as
//! long as it runs. The operating system releases the lock when the process ends in any way
//! (SIGKILL included), so a stale lock never blocks a resume. A second leader on the folder is
//! refused at once, naming the first; a helper polls the lock and exits when no leader holds
//! it.

use std::collections::HashSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{Error, Result};

/// The leader lock of a study folder, held until dropped.
#[derive(Debug)]
pub struct LeaderLock {
    file: File,
    key: PathBuf,
}

/// Folders whose lock this process holds (a lock is per open file, so the process asks here
/// before taking a second one on the same folder).
static HELD: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn lock_path(dir: &Path) -> PathBuf {
    dir.join("leader.lock")
}

fn key(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

impl LeaderLock {
    /// Takes the lock of the existing folder `dir`, or says which process holds it.
    pub fn take(dir: &Path) -> Result<LeaderLock> {
        let path = lock_path(dir);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(Error::Other(format!(
                    "{}: another leader (pid {}) is running this study; add --helper to help \
                     it, or wait until it ends",
                    dir.display(),
                    pid.trim()
                )));
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let key = key(dir);
        HELD.lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashSet::new)
            .insert(key.clone());
        Ok(LeaderLock { file, key })
    }

    /// Whether this process holds the lock of `dir`.
    pub fn held_here(dir: &Path) -> bool {
        HELD.lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|h| h.contains(&key(dir)))
    }
}

impl Drop for LeaderLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
        if let Some(h) = HELD.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            h.remove(&self.key);
        }
    }
}

/// Whether a leader (another process, or this one) holds the lock of `dir` now.
pub fn leader_running(dir: &Path) -> bool {
    if LeaderLock::held_here(dir) {
        return true;
    }
    let Ok(file) = File::open(lock_path(dir)) else {
        return false;
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}
