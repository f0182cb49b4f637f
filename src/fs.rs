//! The crate's files: written so that a reader (or a resumed run) never sees half of one, and
//! failures that name the file.
//!
//! Every file the crate writes (results, reports, manifests, weights, annotation files, split
//! and vocabulary files, each file of a checkpoint) is a temporary file in the target's folder,
//! flushed to disk, then renamed over the target; a failed write leaves the previous file as it
//! was. Failures are a [`FileError`], which the modules' own error types wrap.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A file or folder that could not be read or written; the message names it.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A file or folder that cannot be read or listed (missing, no permission...).
    #[error("{path}: {source}")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file or folder that cannot be written, created, replaced or removed: disk full,
    /// read-only, no permission. What was written before is left intact.
    #[error("cannot write {path}: {source}{}", write_advice(.source))]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl FileError {
    /// A failure to read `path`.
    pub(crate) fn read(path: &Path, source: std::io::Error) -> Self {
        Self::Read {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A failure to write `path`.
    pub(crate) fn write(path: &Path, source: std::io::Error) -> Self {
        Self::Write {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The file or folder concerned.
    pub fn path(&self) -> &Path {
        match self {
            Self::Read { path, .. } | Self::Write { path, .. } => path,
        }
    }

    /// The operating system's error.
    pub fn io_error(&self) -> &std::io::Error {
        match self {
            Self::Read { source, .. } | Self::Write { source, .. } => source,
        }
    }
}

/// What to do about a failed write, after its message.
fn write_advice(error: &std::io::Error) -> &'static str {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
            "; free some space and run again (the files written before are intact)"
        }
        ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied => {
            "; choose an output folder you can write to"
        }
        ErrorKind::NotADirectory => "; a file stands where a folder is needed",
        _ => "",
    }
}

/// The folder a file is written in (the current one for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Creates `folder` and its parents.
pub(crate) fn create_dir_all(folder: &Path) -> Result<(), FileError> {
    std::fs::create_dir_all(folder).map_err(|e| FileError::write(folder, e))
}

/// Writes `bytes` to `path` atomically, creating its folder if needed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let mut file = temporary_beside(path)?;
    let error = |e| FileError::write(path, e);
    file.write_all(bytes).map_err(error)?;
    file.as_file().sync_all().map_err(error)?;
    file.persist(path).map_err(|e| error(e.error))?;
    Ok(())
}

/// Has `write` fill a temporary file in `path`'s folder (given its path), flushes it to disk,
/// then renames it over `path`, creating the folder if needed: for writers that take a path
/// rather than bytes.
pub(crate) fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), FileError> {
    let file = temporary_beside(path)?;
    let error = |e| FileError::write(path, e);
    write(file.path()).map_err(error)?;
    // Opened anew: the writer may have replaced the temporary rather than written into it.
    std::fs::OpenOptions::new()
        .write(true)
        .open(file.path())
        .and_then(|written| written.sync_all())
        .map_err(error)?;
    file.persist(path).map_err(|e| error(e.error))?;
    Ok(())
}

/// An empty temporary file in `path`'s folder, removed when dropped. Errors name `path`, not
/// the temporary: that is the file the reader asked for.
fn temporary_beside(path: &Path) -> Result<tempfile::NamedTempFile, FileError> {
    let folder = parent(path);
    create_dir_all(folder)?;
    tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(folder)
        .map_err(|e| FileError::write(path, e))
}

/// Writes `value` to `path` as pretty JSON, atomically.
pub(crate) fn write_json<T: serde::Serialize>(
    path: &Path,
    value: &T,
) -> Result<(), crate::train::TrainError> {
    let json =
        serde_json::to_vec_pretty(value).map_err(|source| crate::train::TrainError::Json {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(write_atomic(path, &json)?)
}

/// Reads a whole file, the error naming it.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, FileError> {
    std::fs::read(path).map_err(|e| FileError::read(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("out.json");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("out.json")]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file_and_names_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        write_atomic(&path, b"kept").unwrap();
        let error =
            write_atomic_with(&path, |_| Err(std::io::Error::other("no space"))).unwrap_err();
        assert!(matches!(error, FileError::Write { .. }), "{error:?}");
        assert_eq!(error.path(), path);
        assert!(error.to_string().contains("out.json"), "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let error = read(&missing).unwrap_err();
        assert!(matches!(error, FileError::Read { .. }), "{error:?}");
        assert!(error.to_string().contains("missing.json"), "{error}");
    }
}
