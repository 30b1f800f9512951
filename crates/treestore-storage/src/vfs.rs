//! The file-system boundary of the engine.
//!
//! All disk access goes through [`Vfs`] and [`StorageFile`], so tests can swap the
//! real operating system ([`OsVfs`]) for a simulated disk that loses unsynced writes,
//! tears pages and fails calls on purpose (see [`crate::fault`]), or for a
//! slower disk ([`SlowSyncVfs`]).

use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A random-access file with explicit durability.
pub trait StorageFile: Send + Sync + Debug {
    /// Reads exactly `buf.len()` bytes at `offset`; a short file is `UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`, extending the file if needed.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every completed write durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// What is found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Missing,
    Directory,
    Other,
}

/// A held lock on a data directory; released when dropped.
pub trait DirLock: Send + Sync + Debug {}

/// Opens files and directories. Implemented by the real OS and by the fault injector.
pub trait Vfs: Send + Sync + Debug {
    /// What is at `path`.
    fn path_kind(&self, path: &Path) -> io::Result<PathKind>;
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Opens a file for reading and writing, creating it when `create` is set.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Makes a directory's entries (created files) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a directory.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Deletes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, replacing any file at `to` (durable after
    /// [`Vfs::sync_dir`]).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Takes the exclusive lock of a data directory, or fails with [`Error::Locked`]
    /// naming the holder.
    fn lock_dir(&self, dir: &Path) -> Result<Box<dyn DirLock>>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsVfs;

#[derive(Debug)]
struct OsFile {
    file: File,
}

impl StorageFile for OsFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
}

#[derive(Debug)]
struct OsDirLock {
    _file: File,
}
impl DirLock for OsDirLock {}

/// Name of the lock file inside a data directory.
pub const LOCK_FILE: &str = "LOCK";

impl Vfs for OsVfs {
    fn path_kind(&self, path: &Path) -> io::Result<PathKind> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Ok(PathKind::Directory),
            Ok(_) => Ok(PathKind::Other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PathKind::Missing),
            Err(e) => Err(e),
        }
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(OsFile { file }))
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn lock_dir(&self, dir: &Path) -> Result<Box<dyn DirLock>> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("opening lock file {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {
                // Record who holds the lock so a refused opener can name us.
                let holder = format!("pid {}", std::process::id());
                let written = file
                    .set_len(0)
                    .and_then(|()| file.seek(io::SeekFrom::Start(0)))
                    .and_then(|_| file.write_all(holder.as_bytes()));
                written
                    .map_err(|e| Error::io(format!("writing lock file {}", path.display()), e))?;
                Ok(Box::new(OsDirLock { _file: file }))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // Best effort: the holder may be rewriting the file right now.
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "holder unknown".to_string()
                } else {
                    holder.to_string()
                };
                Err(Error::Locked {
                    path: dir.to_path_buf(),
                    holder,
                })
            }
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::io(format!("locking {}", path.display()), e))
            }
        }
    }
}

/// Another file system with `hook` run, with the file's path, before each
/// `sync_data` of a file: a slower disk ([`SyncHookVfs::slow`]) or one whose
/// syncs a test holds, for what waits on syncs (group commit, checkpoints).
/// Everything else is the inner file system's.
#[derive(Clone)]
pub struct SyncHookVfs {
    inner: Arc<dyn Vfs>,
    hook: Arc<dyn Fn(&Path) + Send + Sync>,
}

impl Debug for SyncHookVfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHookVfs")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl SyncHookVfs {
    pub fn new(inner: Arc<dyn Vfs>, hook: impl Fn(&Path) + Send + Sync + 'static) -> Self {
        SyncHookVfs {
            inner,
            hook: Arc::new(hook),
        }
    }

    /// The real file system with every `sync_data` made `delay` longer.
    pub fn slow(delay: std::time::Duration) -> Self {
        Self::new(Arc::new(OsVfs), move |_| std::thread::sleep(delay))
    }
}

struct SyncHookFile {
    inner: Arc<dyn StorageFile>,
    path: PathBuf,
    hook: Arc<dyn Fn(&Path) + Send + Sync>,
}

impl Debug for SyncHookFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHookFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StorageFile for SyncHookFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        (self.hook)(&self.path);
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

impl Vfs for SyncHookVfs {
    fn path_kind(&self, path: &Path) -> io::Result<PathKind> {
        self.inner.path_kind(path)
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(SyncHookFile {
            inner: self.inner.open(path, create)?,
            path: path.to_path_buf(),
            hook: self.hook.clone(),
        }))
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn lock_dir(&self, dir: &Path) -> Result<Box<dyn DirLock>> {
        self.inner.lock_dir(dir)
    }
}
