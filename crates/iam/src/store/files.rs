//! The store's files on disk: created private, reported when others may write them.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// A store file (the database, its `-wal` or its `-shm`) that group or others may write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LooseFile {
    /// The file.
    pub path: PathBuf,
    /// Its permission bits (`0o666` and the like).
    pub mode: u32,
}

impl fmt::Display for LooseFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IAM store file {} has mode {:04o}: group or others may write it (and so add keys that \
             the key server publishes); run chmod 600 on it",
            self.path.display(),
            self.mode
        )
    }
}

/// The database file at `path` and its `-wal` and `-shm` files.
fn store_files(path: &Path) -> [PathBuf; 3] {
    let with_suffix = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [path.to_owned(), with_suffix("-wal"), with_suffix("-shm")]
}

/// Which of the store's files (database, `-wal`, `-shm`; those that exist) are group- or
/// world-writable. Empty on platforms without Unix permissions.
pub fn loose_files(path: &Path) -> Vec<LooseFile> {
    store_files(path)
        .into_iter()
        .filter_map(|path| {
            let mode = mode_of(&path)?;
            is_loose(mode).then_some(LooseFile { path, mode })
        })
        .collect()
}

/// Writable by group or others.
fn is_loose(mode: u32) -> bool {
    mode & 0o022 != 0
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> Option<u32> {
    None
}

/// Creates an empty store file with mode 0600 when there is none, before SQLite opens it
/// (SQLite takes an empty file as a new database and gives its `-wal` and `-shm` the file's
/// mode). An existing file is left alone.
pub(super) fn create_private(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_modes() {
        for (mode, loose) in [
            (0o600, false),
            (0o644, false),
            (0o640, false),
            (0o400, false),
            (0o660, true),
            (0o666, true),
            (0o602, true),
            (0o620, true),
        ] {
            assert_eq!(is_loose(mode), loose, "{mode:o}");
        }
    }

    #[test]
    fn the_three_files() {
        let [db, wal, shm] = store_files(Path::new("/x/iam.db"));
        assert_eq!(db, Path::new("/x/iam.db"));
        assert_eq!(wal, Path::new("/x/iam.db-wal"));
        assert_eq!(shm, Path::new("/x/iam.db-shm"));
    }
}
