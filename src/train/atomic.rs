//! Files written so that a reader (or a resumed run) never sees a half-written one.

use std::io::Write;
use std::path::Path;

use super::TrainError;

fn io_error(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The error of a failed write, naming `path`.
pub(crate) fn write_error(path: &Path, source: std::io::Error) -> TrainError {
    TrainError::Write {
        path: path.to_path_buf(),
        source,
    }
}

/// The folder a file is written in (the current one for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to a temporary file in `path`'s folder, flushes it to disk, then renames it
/// over `path`, creating the folder if needed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let folder = parent(path);
    std::fs::create_dir_all(folder).map_err(|e| write_error(folder, e))?;
    // Errors name `path`, not the temporary: that is the file the reader asked for, and the
    // temporary is removed when `file` drops, leaving the previous `path` untouched.
    let mut file = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(folder)
        .map_err(|e| write_error(path, e))?;
    file.write_all(bytes).map_err(|e| write_error(path, e))?;
    file.as_file()
        .sync_all()
        .map_err(|e| write_error(path, e))?;
    file.persist(path).map_err(|e| write_error(path, e.error))?;
    Ok(())
}

/// Reads a whole file, the error naming it.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, TrainError> {
    std::fs::read(path).map_err(|e| io_error(path, e))
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
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        let message = read_file(&missing).unwrap_err().to_string();
        assert!(message.contains("missing.json"), "{message}");
    }
}
