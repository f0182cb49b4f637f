//! One trainer per run folder: an advisory lock on a file in it.
//!
//! The lock is the operating system's (`flock` on Linux, `LockFileEx` on Windows, through
//! [`File::try_lock`]), not the file's existence: it ends with the process that holds it, so a
//! run killed mid-epoch leaves nothing to clean up before it is resumed. Each acquisition opens
//! the file anew, and such locks conflict even between two handles of the same process.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::TrainError;
use crate::fs::FileError;

/// The lock file in a run folder. It holds the PID of the process that last held the lock, for
/// the error message; its presence alone means nothing.
pub const LOCK_FILE: &str = ".lock";

/// An exclusive claim on a run folder, released when dropped (or when the process ends).
///
/// ```
/// use aia::train::{RunLock, TrainError};
/// let dir = tempfile::tempdir()?;
/// let first = RunLock::acquire(dir.path())?;
/// assert!(matches!(RunLock::acquire(dir.path()), Err(TrainError::RunLocked { .. })));
/// drop(first);
/// let _again = RunLock::acquire(dir.path())?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct RunLock {
    /// `None` where the file system has no locks (some network file systems).
    file: Option<File>,
    path: PathBuf,
}

impl RunLock {
    /// Claims the run folder `root`, creating it if needed.
    ///
    /// # Errors
    /// [`TrainError::RunLocked`] when another holder (of this process or another) has it;
    /// [`TrainError::File`] when the folder or its lock file cannot be created.
    pub fn acquire(root: &Path) -> Result<Self, TrainError> {
        crate::fs::create_dir_all(root)?;
        let path = root.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| FileError::write(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(TrainError::RunLocked {
                    path: root.to_path_buf(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                log::warn!(
                    "{}: the file system has no file locks; nothing stops two trainings from \
                     writing into this run folder at once",
                    path.display()
                );
                return Ok(Self { file: None, path });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(FileError::write(&path, e).into()),
        }
        // The PID only improves the message a second trainer gets: a full disk must not stop
        // this one here, where it would hide which file of the run could not be written.
        let pid = format!("{}\n", std::process::id());
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(pid.as_bytes()));
        Ok(Self {
            file: Some(file),
            path,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // The file stays: removing it would let a newcomer lock a fresh file while a waiter
        // locks the unlinked one. Emptying it keeps a stale PID out of later messages.
        if let Some(file) = &self.file {
            let _ = file.set_len(0);
        }
    }
}
