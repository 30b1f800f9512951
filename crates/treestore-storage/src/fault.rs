//! A simulated disk for crash and fault-injection tests.
//!
//! [`FaultVfs`] keeps files in memory and tracks, per file, what is durable (synced)
//! and what is only written. A [`FaultPlan`] makes the N-th write or sync fail with
//! EIO or ENOSPC, or cuts the power there: the interrupted write may land torn and
//! every later call fails. [`FaultVfs::power_loss`] then yields the disk as a reboot
//! would find it: the synced contents plus an arbitrary subset of the unsynced
//! writes, one of them possibly torn at a random byte. Tests reopen the database on
//! that disk and compare with what was acknowledged.
//!
//! [`MemFile`] is a plain in-memory file for unit tests.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::vfs::{DirLock, PathKind, StorageFile, Vfs};

/// A plain in-memory file.
#[derive(Debug, Default)]
pub struct MemFile {
    data: Mutex<Vec<u8>>,
}

fn read_from(data: &[u8], buf: &mut [u8], offset: u64) -> io::Result<()> {
    let start =
        usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    let end = start.checked_add(buf.len()).filter(|&e| e <= data.len());
    match end {
        Some(end) => {
            buf.copy_from_slice(&data[start..end]);
            Ok(())
        }
        None => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "read past end of file",
        )),
    }
}

fn write_into(data: &mut Vec<u8>, buf: &[u8], offset: u64) {
    let start = offset as usize;
    if data.len() < start + buf.len() {
        data.resize(start + buf.len(), 0);
    }
    data[start..start + buf.len()].copy_from_slice(buf);
}

impl StorageFile for MemFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_from(
            &self.data.lock().unwrap_or_else(|p| p.into_inner()),
            buf,
            offset,
        )
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        write_into(
            &mut self.data.lock().unwrap_or_else(|p| p.into_inner()),
            buf,
            offset,
        );
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.data.lock().unwrap_or_else(|p| p.into_inner()).len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.data
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .resize(len as usize, 0);
        Ok(())
    }
}

/// What happens at the planned operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The call fails with EIO; later calls work again.
    Eio,
    /// The call fails with ENOSPC; later calls work again.
    NoSpace,
    /// The power goes: a write in progress may land torn, and every later write
    /// or sync fails until [`FaultVfs::power_loss`] "reboots" the disk.
    PowerCut,
}

/// Which calls count towards [`FaultPlan::at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTarget {
    Writes,
    Syncs,
    Any,
}

/// Fail the `at`-th (0-based) counted call.
#[derive(Debug, Clone, Copy)]
pub struct FaultPlan {
    pub at: u64,
    pub kind: FaultKind,
    pub target: FaultTarget,
}

/// How [`FaultVfs::power_loss`] treats writes that were never synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossMode {
    /// Every unsynced write is lost.
    DropUnsynced,
    /// A random subset of unsynced writes survives, one of them possibly torn.
    RandomSubset { seed: u64 },
}

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct FileData {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<PathBuf, Arc<FaultFile>>,
    dirs: HashSet<PathBuf>,
    locks: HashSet<PathBuf>,
    writes: u64,
    syncs: u64,
    plan: Option<FaultPlan>,
    powered_off: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a call and says whether (and how) it must fail.
    fn check(&self, is_sync: bool) -> Option<FaultKind> {
        let mut st = self.lock();
        if st.powered_off {
            return Some(FaultKind::PowerCut);
        }
        let n = if is_sync { st.syncs } else { st.writes };
        let total = st.syncs + st.writes;
        if is_sync {
            st.syncs += 1;
        } else {
            st.writes += 1;
        }
        let plan = st.plan?;
        let hit = match plan.target {
            FaultTarget::Writes => !is_sync && n == plan.at,
            FaultTarget::Syncs => is_sync && n == plan.at,
            FaultTarget::Any => total == plan.at,
        };
        if !hit {
            return None;
        }
        st.plan = None;
        if plan.kind == FaultKind::PowerCut {
            st.powered_off = true;
        }
        Some(plan.kind)
    }
}

fn fault_error(kind: FaultKind) -> io::Error {
    match kind {
        FaultKind::Eio | FaultKind::PowerCut => io::Error::from_raw_os_error(5),
        FaultKind::NoSpace => io::Error::from_raw_os_error(28),
    }
}

/// A file on the simulated disk.
#[derive(Debug)]
pub struct FaultFile {
    shared: Arc<Shared>,
    data: Mutex<FileData>,
}

impl FaultFile {
    fn data(&self) -> std::sync::MutexGuard<'_, FileData> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl StorageFile for FaultFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        read_from(&self.data().current, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if let Some(kind) = self.shared.check(false) {
            if kind == FaultKind::PowerCut {
                // The write was in flight when the power went: it is pending, and
                // power_loss() may keep any part of it.
                let mut d = self.data();
                d.pending.push(Pending::Write {
                    offset,
                    data: buf.to_vec(),
                });
            }
            return Err(fault_error(kind));
        }
        let mut d = self.data();
        write_into(&mut d.current, buf, offset);
        d.pending.push(Pending::Write {
            offset,
            data: buf.to_vec(),
        });
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        if let Some(kind) = self.shared.check(true) {
            return Err(fault_error(kind));
        }
        let mut d = self.data();
        let pending = std::mem::take(&mut d.pending);
        for op in pending {
            apply(&mut d.durable, &op, None);
        }
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.data().current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if let Some(kind) = self.shared.check(false) {
            return Err(fault_error(kind));
        }
        let mut d = self.data();
        d.current.resize(len as usize, 0);
        d.pending.push(Pending::SetLen(len));
        Ok(())
    }
}

fn apply(target: &mut Vec<u8>, op: &Pending, keep: Option<usize>) {
    match op {
        Pending::Write { offset, data } => {
            let n = keep.unwrap_or(data.len()).min(data.len());
            write_into(target, &data[..n], *offset);
        }
        Pending::SetLen(len) => target.resize(*len as usize, 0),
    }
}

/// splitmix64: a tiny deterministic generator so the library needs no `rand`.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// An in-memory disk with fault injection and simulated power loss.
#[derive(Debug, Clone, Default)]
pub struct FaultVfs {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct FaultLock {
    shared: Arc<Shared>,
    path: PathBuf,
}

impl DirLock for FaultLock {}

impl Drop for FaultLock {
    fn drop(&mut self) {
        self.shared.lock().locks.remove(&self.path);
    }
}

impl FaultVfs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms a fault; counting starts from the calls made so far being zero.
    pub fn set_plan(&self, plan: Option<FaultPlan>) {
        let mut st = self.shared.lock();
        st.writes = 0;
        st.syncs = 0;
        st.plan = plan;
    }

    /// Calls counted since the last [`set_plan`](Self::set_plan): (writes, syncs).
    pub fn counts(&self) -> (u64, u64) {
        let st = self.shared.lock();
        (st.writes, st.syncs)
    }

    /// Whether a planned fault has fired and not been consumed.
    pub fn powered_off(&self) -> bool {
        self.shared.lock().powered_off
    }

    /// Simulates a reboot after power loss: every file becomes its durable contents
    /// plus, per `mode`, some of its unsynced writes. Clears faults and locks. Open
    /// handles from before keep pointing at the old contents and must be dropped.
    pub fn power_loss(&self, mode: LossMode) {
        let mut st = self.shared.lock();
        let mut names: Vec<PathBuf> = st.files.keys().cloned().collect();
        names.sort();
        let mut rng = match mode {
            LossMode::DropUnsynced => 0,
            LossMode::RandomSubset { seed } => seed,
        };
        for name in names {
            let old = st.files[&name].clone();
            let mut d = old.data();
            let mut disk = d.durable.clone();
            if let LossMode::RandomSubset { .. } = mode {
                let n = d.pending.len();
                let torn = if n > 0 && next_random(&mut rng).is_multiple_of(2) {
                    Some((next_random(&mut rng) % n as u64) as usize)
                } else {
                    None
                };
                for (i, op) in d.pending.iter().enumerate() {
                    if Some(i) == torn {
                        let keep = match op {
                            Pending::Write { data, .. } => {
                                (next_random(&mut rng) % (data.len() as u64 + 1)) as usize
                            }
                            Pending::SetLen(_) => 0,
                        };
                        if keep > 0 {
                            apply(&mut disk, op, Some(keep));
                        }
                    } else if next_random(&mut rng).is_multiple_of(2) {
                        apply(&mut disk, op, None);
                    }
                }
            }
            d.pending.clear();
            drop(d);
            let fresh = Arc::new(FaultFile {
                shared: self.shared.clone(),
                data: Mutex::new(FileData {
                    current: disk.clone(),
                    durable: disk,
                    pending: Vec::new(),
                }),
            });
            st.files.insert(name, fresh);
        }
        st.plan = None;
        st.powered_off = false;
        st.locks.clear();
    }

    /// Flips bits of one byte of a file, durably (for corruption tests).
    pub fn corrupt_byte(&self, path: &Path, offset: u64, xor: u8) {
        let st = self.shared.lock();
        if let Some(f) = st.files.get(path) {
            let mut d = f.data();
            let at = offset as usize;
            if at < d.current.len() {
                d.current[at] ^= xor;
            }
            if at < d.durable.len() {
                d.durable[at] ^= xor;
            }
        }
    }

    /// Cuts a file to `len` bytes, durably (for torn-tail tests).
    pub fn truncate_file(&self, path: &Path, len: u64) {
        let st = self.shared.lock();
        if let Some(f) = st.files.get(path) {
            let mut d = f.data();
            d.current.truncate(len as usize);
            d.durable.truncate(len as usize);
        }
    }

    /// Cuts the power now: every later write or sync fails until
    /// [`power_loss`](Self::power_loss). Lets a test drop a database without the
    /// final checkpoint a clean close would take.
    pub fn cut_power(&self) {
        self.shared.lock().powered_off = true;
    }

    /// Current length of a file, if it exists.
    pub fn file_len(&self, path: &Path) -> Option<u64> {
        let st = self.shared.lock();
        st.files.get(path).map(|f| f.data().current.len() as u64)
    }
}

impl Vfs for FaultVfs {
    fn path_kind(&self, path: &Path) -> io::Result<PathKind> {
        let st = self.shared.lock();
        Ok(if st.dirs.contains(path) {
            PathKind::Directory
        } else if st.files.contains_key(path) {
            PathKind::Other
        } else {
            PathKind::Missing
        })
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut st = self.shared.lock();
        for anc in path.ancestors() {
            if !anc.as_os_str().is_empty() {
                st.dirs.insert(anc.to_path_buf());
            }
        }
        Ok(())
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut st = self.shared.lock();
        if let Some(f) = st.files.get(path) {
            return Ok(f.clone());
        }
        if !create {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if !parent.as_os_str().is_empty() && !st.dirs.contains(&parent) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let f = Arc::new(FaultFile {
            shared: self.shared.clone(),
            data: Mutex::new(FileData::default()),
        });
        st.files.insert(path.to_path_buf(), f.clone());
        Ok(f)
    }

    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let st = self.shared.lock();
        if !st.dirs.contains(path) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let mut names: Vec<String> = st
            .files
            .keys()
            .chain(st.dirs.iter())
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        // Removing a directory entry is treated as durable at once (as after a
        // directory sync); the file's contents are simply gone.
        match self.shared.lock().files.remove(path) {
            Some(_) => Ok(()),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        // Durable at once, like removal; open handles keep the contents.
        let mut st = self.shared.lock();
        let file = st
            .files
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        st.files.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn lock_dir(&self, dir: &Path) -> Result<Box<dyn DirLock>> {
        let mut st = self.shared.lock();
        if !st.locks.insert(dir.to_path_buf()) {
            return Err(Error::Locked {
                path: dir.to_path_buf(),
                holder: "this process".into(),
            });
        }
        Ok(Box::new(FaultLock {
            shared: self.shared.clone(),
            path: dir.to_path_buf(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_are_lost_synced_kept() {
        let vfs = FaultVfs::new();
        vfs.create_dir_all(Path::new("/d")).unwrap();
        let f = vfs.open(Path::new("/d/f"), true).unwrap();
        f.write_all_at(b"hello", 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(b"world", 5).unwrap();
        vfs.power_loss(LossMode::DropUnsynced);
        let f = vfs.open(Path::new("/d/f"), false).unwrap();
        assert_eq!(f.len().unwrap(), 5);
    }

    #[test]
    fn planned_faults_fire_once_or_cut_power() {
        let vfs = FaultVfs::new();
        vfs.create_dir_all(Path::new("/d")).unwrap();
        let f = vfs.open(Path::new("/d/f"), true).unwrap();
        vfs.set_plan(Some(FaultPlan {
            at: 1,
            kind: FaultKind::NoSpace,
            target: FaultTarget::Writes,
        }));
        f.write_all_at(b"a", 0).unwrap();
        assert_eq!(
            f.write_all_at(b"b", 1).unwrap_err().raw_os_error(),
            Some(28)
        );
        f.write_all_at(b"c", 1).unwrap();
        vfs.set_plan(Some(FaultPlan {
            at: 0,
            kind: FaultKind::PowerCut,
            target: FaultTarget::Syncs,
        }));
        assert!(f.sync_data().is_err());
        assert!(f.write_all_at(b"d", 2).is_err());
        vfs.power_loss(LossMode::DropUnsynced);
        let f = vfs.open(Path::new("/d/f"), false).unwrap();
        assert_eq!(f.len().unwrap(), 0);
        f.write_all_at(b"e", 0).unwrap();
    }
}
