//! The write-ahead log: segment files of checksummed records, group commit, and
//! the reader recovery uses.
//!
//! The log is one stream of bytes addressed by LSN (log sequence number = byte
//! position in the stream). It is stored in segment files `wal/<first LSN>.wal`
//! of about `segment_bytes` each; a segment starts with a 32-byte header and its
//! records follow back to back, so the record at file offset `o` of a segment
//! whose first LSN is `b` has LSN `b + o - 32`.
//!
//! Segment header: magic `TSWAL001` (8), u64 first LSN, u32 format version (1),
//! u32 reserved, u32 CRC-32C of the 24 bytes before it, u32 reserved.
//!
//! A new segment is zero-filled to its full size before use, so appending a
//! commit overwrites blocks the file system has already allocated and the
//! commit's fdatasync does not also have to journal a change of file size. The
//! records end where the zeros begin (a zero header never passes for a record).
//! With `prepare_ahead`, a helper thread zero-fills and syncs the next segment
//! as [`PREPARED_SEGMENT`] once the current one is half full (not at open, so
//! a process that only reads writes nothing); rotating to it then
//! costs a header write, a sync and a rename instead of writing and syncing a
//! whole segment of zeros on the commit path. Its header is synced before the
//! rename, and the rename before any record is written to it, so a crash
//! leaves either a stray prepared file (removed at open) or an empty segment.
//!
//! Segments a checkpoint covers are recycled rather than deleted: up to
//! [`SegmentPolicy::spares`] of them are renamed to `<first LSN>.spare` and
//! later zero-filled in place to become the next segment (the rest are
//! deleted). Overwriting blocks the file already has is cheaper than freeing
//! them and allocating new ones: on a file system mounted with `discard`,
//! deleting a 16 MiB segment waits for the device to discard it (measured:
//! ingest +16% with two writers). A spare is never read as log (its name is
//! not a segment name), and a crash before it is renamed into place leaves it
//! a spare, which the next open keeps.
//!
//! Record: u32 length field (payload length; bit 31 marks the first record of
//! a write batch), u32 CRC-32C of (LSN u64, length field u32, payload), u64 LSN,
//! payload. A record is valid only if its LSN field equals its position, so
//! stale bytes of an old segment never pass for a record.
//!
//! Group commit: appends go to an in-memory buffer under a short lock; a
//! committer that needs durability either becomes the leader (writes the whole
//! buffer, fdatasyncs, wakes everyone) or waits for the leader's sync to cover
//! its record. Concurrent committers thus share one fsync; a committer about
//! to start a sync first waits briefly for the committers the last sync
//! released ([`crate::gather`]). In timer mode a background thread syncs the
//! buffer every interval instead.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use std::time::Instant;

use crate::error::{Error, Result};
use crate::gather::Gather;
use crate::vfs::{PathKind, StorageFile, Vfs};

/// Directory of the log inside a data directory.
pub const WAL_DIR: &str = "wal";
/// Segment header size.
pub const SEGMENT_HEADER_LEN: u64 = 32;
/// Record header size.
pub const RECORD_HEADER_LEN: u64 = 16;
/// Largest record payload accepted when reading (a commit of at most this size).
pub const MAX_RECORD_LEN: u64 = 1 << 30;
/// Largest segment file read back. Segments stop growing once past their
/// configured size, so a much larger file is not one of ours.
pub const MAX_SEGMENT_FILE: u64 = 4 << 30;
const SEGMENT_MAGIC: [u8; 8] = *b"TSWAL001";
const SEGMENT_VERSION: u32 = 1;

/// Name of the next segment while it is being prepared (not a segment name, so
/// readers and `check` never take it for part of the log).
pub const PREPARED_SEGMENT: &str = "next.wal.prepared";

/// Suffix of a recycled segment waiting to be reused (`<first LSN>.spare`).
pub const SPARE_SUFFIX: &str = ".spare";

/// How the log lays out its segment files.
#[derive(Debug, Clone, Copy)]
pub struct SegmentPolicy {
    /// Size at which the log moves to a new segment.
    pub bytes: u64,
    /// Prepare the next segment on a helper thread (see the module doc).
    pub prepare_ahead: bool,
    /// Covered segments kept for reuse instead of deleted.
    pub spares: usize,
}

/// File name of the segment starting at `lsn`.
pub fn segment_name(lsn: u64) -> String {
    format!("{lsn:020}.wal")
}

/// File name of the segment starting at `lsn` once recycled as a spare.
pub fn spare_name(lsn: u64) -> String {
    format!("{lsn:020}{SPARE_SUFFIX}")
}

/// Parses a segment file name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // LSNs are byte positions; anything near the end of u64 is not ours (and
    // would overflow position arithmetic).
    digits.parse().ok().filter(|&lsn: &u64| lsn <= MAX_LSN)
}

/// Largest LSN a segment may start at (an exabyte of log).
pub const MAX_LSN: u64 = 1 << 60;

/// Bit of a record's length field marking the first record of a write batch
/// (the records one group-commit leader writes and syncs together).
const BATCH_START: u32 = 1 << 31;

fn record_crc(lsn: u64, len_field: u32, payload: &[u8]) -> u32 {
    let mut head = [0u8; 12];
    head[..8].copy_from_slice(&lsn.to_le_bytes());
    head[8..].copy_from_slice(&len_field.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&head), payload)
}

/// Fills the 16-byte header of a record of `payload` (at most
/// [`MAX_RECORD_LEN`] bytes) at `lsn`.
fn write_header(head: &mut [u8], lsn: u64, payload: &[u8], batch_start: bool) {
    let len_field = payload.len() as u32 | if batch_start { BATCH_START } else { 0 };
    head[0..4].copy_from_slice(&len_field.to_le_bytes());
    head[4..8].copy_from_slice(&record_crc(lsn, len_field, payload).to_le_bytes());
    head[8..16].copy_from_slice(&lsn.to_le_bytes());
}

fn segment_header(first_lsn: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..16].copy_from_slice(&first_lsn.to_le_bytes());
    h[16..20].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    let crc = crc32c::crc32c(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header; returns its first LSN.
pub fn parse_segment_header(h: &[u8]) -> Option<u64> {
    if h.len() < SEGMENT_HEADER_LEN as usize || h[..8] != SEGMENT_MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes([h[24], h[25], h[26], h[27]]);
    if crc != crc32c::crc32c(&h[..24]) {
        return None;
    }
    let version = u32::from_le_bytes([h[16], h[17], h[18], h[19]]);
    if version != SEGMENT_VERSION {
        return None;
    }
    Some(u64::from_le_bytes(h[8..16].try_into().ok()?))
}

/// How commits wait for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `commit()` returns once its record is on disk (fdatasync), shared with
    /// concurrent committers. The default.
    Sync,
    /// `commit()` returns once its record is in memory; a background thread
    /// syncs every `interval`. A crash may lose up to one interval of commits.
    Timer { interval: std::time::Duration },
}

/// Counters of the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalStats {
    pub appended_records: u64,
    pub appended_bytes: u64,
    pub fsyncs: u64,
    /// Waits for durability ([`Wal::wait_durable_gathering`], one per commit
    /// group) that held their sync back for more committers to share it
    /// ([`crate::gather`]); each counts once, however often it was woken.
    pub sync_holds: u64,
    /// Everything below this LSN is on disk.
    pub durable_lsn: u64,
    /// The LSN the next record gets (end of everything appended).
    pub end_lsn: u64,
    pub segments: u64,
}

struct Segment {
    first_lsn: u64,
    file: Arc<dyn StorageFile>,
    /// Bytes in the file (header included).
    len: u64,
}

struct WalState {
    /// Framed records not yet written.
    buffer: Vec<u8>,
    /// The buffer the last leader wrote, emptied, kept for the next one so a
    /// multi-MiB record does not fault in fresh memory on every commit.
    spare: Vec<u8>,
    /// LSN of the first buffered byte (= end of what was written).
    written_lsn: u64,
    /// LSN the next record gets.
    next_lsn: u64,
    /// Everything below this is durable.
    durable_lsn: u64,
    /// A leader is writing and syncing right now.
    syncing: bool,
    /// Threads asleep in [`Wal::wait_durable`], so a finished sync makes no
    /// wake-up call when nobody waits (a lone committer's case).
    waiting: usize,
    /// A failed write or sync: the log is unusable until reopened.
    failed: Option<String>,
    /// Records in `buffer`.
    buffered_records: usize,
    /// What a committer's sync waits for before it starts.
    gather: Gather,
    /// Committers waiting in [`Wal::wait_durable_gathering`] for records to
    /// be appended, so appends make no wake-up call when nobody waits.
    gathering: usize,
    current: Segment,
    /// First LSNs of older segments still on disk, oldest first.
    older: Vec<u64>,
    /// The helper preparing the next segment (`prepare_ahead`), if running or
    /// done and not yet used.
    next: Option<Preparing>,
    /// Recycled segment files waiting to be reused, oldest first.
    spares: Vec<PathBuf>,
    /// Segments being renamed into spares right now (counted against the
    /// policy's number before they are listed).
    spares_reserved: usize,
}

/// The helper thread preparing the next segment; it returns the file.
type Preparing = std::thread::JoinHandle<Result<Arc<dyn StorageFile>>>;

/// The write-ahead log of one data directory.
pub struct Wal {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    segment_bytes: u64,
    /// Prepare the next segment on a helper thread (see the module doc).
    prepare_ahead: bool,
    /// Covered segments kept as spares (see the module doc).
    keep_spares: usize,
    state: Mutex<WalState>,
    synced: Condvar,
    /// Signalled on appends while a committer gathers.
    appended: Condvar,
    sync_holds: AtomicU64,
    /// Mirror of `WalState::durable_lsn`, so committers whose record is already
    /// durable return without taking the mutex.
    durable: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    fsyncs: AtomicU64,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).finish()
    }
}

impl Wal {
    /// Opens the log for appending at `end_lsn` (where recovery stopped):
    /// `tail` is the segment holding it (already truncated to it) or `None` to
    /// start a new segment there. `older` lists the first LSNs of the other
    /// segments still on disk, oldest first. A prepared segment left by an
    /// earlier run is removed; its spares are kept (those beyond
    /// `policy.spares` are removed).
    pub fn open(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        policy: SegmentPolicy,
        end_lsn: u64,
        tail: Option<(u64, Arc<dyn StorageFile>)>,
        older: Vec<u64>,
    ) -> Result<Wal> {
        let prepared = dir.join(PREPARED_SEGMENT);
        let stale = vfs
            .path_kind(&prepared)
            .map_err(|e| Error::io(format!("inspecting {}", prepared.display()), e))?;
        if stale != PathKind::Missing {
            vfs.remove_file(&prepared)
                .map_err(|e| Error::io(format!("removing {}", prepared.display()), e))?;
        }
        let mut spares = list_spares(&*vfs, dir)?;
        for extra in spares.split_off(spares.len().min(policy.spares)) {
            // Best effort: an extra spare left behind is only disk space,
            // and the next open tries again.
            let _ = vfs.remove_file(&extra);
        }
        let segment_bytes = policy.bytes.max(SEGMENT_HEADER_LEN + 4096);
        let current = match tail {
            Some((first_lsn, file)) => Segment {
                first_lsn,
                file,
                len: end_lsn - first_lsn + SEGMENT_HEADER_LEN,
            },
            None => create_segment(&*vfs, dir, end_lsn, segment_bytes, spares.pop())?,
        };
        Ok(Wal {
            dir: dir.to_path_buf(),
            vfs,
            segment_bytes,
            prepare_ahead: policy.prepare_ahead,
            keep_spares: policy.spares,
            state: Mutex::new(WalState {
                buffer: Vec::new(),
                spare: Vec::new(),
                written_lsn: end_lsn,
                next_lsn: end_lsn,
                durable_lsn: end_lsn,
                syncing: false,
                waiting: 0,
                buffered_records: 0,
                gather: Gather::default(),
                gathering: 0,
                failed: None,
                current,
                older,
                next: None,
                spares,
                spares_reserved: 0,
            }),
            synced: Condvar::new(),
            appended: Condvar::new(),
            sync_holds: AtomicU64::new(0),
            durable: AtomicU64::new(end_lsn),
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
        })
    }

    /// Starts the helper that prepares the next segment, when preparing ahead
    /// and the current segment is half full (`None` otherwise, or when no
    /// thread could be started: rotation then creates the segment itself).
    /// A spare, if any, is what the helper prepares.
    fn start_preparing(&self, st: &mut WalState) -> Option<Preparing> {
        if !self.prepare_ahead || st.current.len < self.segment_bytes / 2 {
            return None;
        }
        let (vfs, dir, size) = (self.vfs.clone(), self.dir.clone(), self.segment_bytes);
        let reuse = st.spares.pop();
        let back = reuse.clone();
        let started = std::thread::Builder::new()
            .name("treestore-wal-prepare".into())
            .spawn(move || prepare_segment(&*vfs, &dir, size, reuse))
            .ok();
        if started.is_none() {
            st.spares.extend(back);
        }
        started
    }

    fn lock(&self) -> MutexGuard<'_, WalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Buffers `count` records in order under one lock (they may share a
    /// write batch), record `i`'s payload written by `encode(i, buffer)`
    /// straight into the log buffer (no copy of it is made); returns the LSN
    /// just past the last (what to wait for). A payload over
    /// [`MAX_RECORD_LEN`] is refused and none of the records is buffered.
    pub fn append_with(
        &self,
        count: usize,
        mut encode: impl FnMut(usize, &mut Vec<u8>),
    ) -> Result<u64> {
        let mut st = self.lock();
        if let Some(why) = &st.failed {
            return Err(Error::Poisoned(why.clone()));
        }
        let st = &mut *st;
        let (buffer_start, lsn_start) = (st.buffer.len(), st.next_lsn);
        // Leaves no part of this call's records for the next sync to write.
        let undo = |st: &mut WalState| {
            st.buffer.truncate(buffer_start);
            st.next_lsn = lsn_start;
        };
        for i in 0..count {
            let at = st.buffer.len();
            // The leader takes the whole buffer, so a record appended to an
            // empty buffer is the first of the next write batch.
            let batch_start = at == 0;
            st.buffer
                .extend_from_slice(&[0u8; RECORD_HEADER_LEN as usize]);
            let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                encode(i, &mut st.buffer)
            }));
            if let Err(panic) = encoded {
                undo(st);
                std::panic::resume_unwind(panic);
            }
            let len = (st.buffer.len() - at) as u64 - RECORD_HEADER_LEN;
            if len > MAX_RECORD_LEN {
                undo(st);
                return Err(Error::InvalidOptions(format!(
                    "a log record of {len} bytes is over the {MAX_RECORD_LEN} byte limit"
                )));
            }
            let lsn = st.next_lsn;
            let (head, payload) = st.buffer[at..].split_at_mut(RECORD_HEADER_LEN as usize);
            write_header(head, lsn, payload, batch_start);
            st.next_lsn += RECORD_HEADER_LEN + len;
        }
        self.records.fetch_add(count as u64, Ordering::Relaxed);
        self.bytes
            .fetch_add(st.next_lsn - lsn_start, Ordering::Relaxed);
        st.buffered_records += count;
        if st.gathering > 0 {
            self.appended.notify_all();
        }
        Ok(st.next_lsn)
    }

    /// Everything below this LSN is durable.
    pub fn durable_lsn(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Blocks until every record below `lsn` is durable, syncing as the leader
    /// when nobody else is.
    pub fn wait_durable(&self, lsn: u64) -> Result<()> {
        self.wait_until_durable(lsn, false)
    }

    /// [`Wal::wait_durable`] for a committer: a sync it would start waits
    /// first, briefly, for the committers the last sync released to append
    /// again (see [`crate::gather`]), so that one sync carries them all.
    pub fn wait_durable_gathering(&self, lsn: u64) -> Result<()> {
        self.wait_until_durable(lsn, true)
    }

    fn wait_until_durable(&self, lsn: u64, gather: bool) -> Result<()> {
        if self.durable.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        let mut st = self.lock();
        // Whether this call has held a sync back yet (counted once).
        let mut held = false;
        loop {
            if st.durable_lsn >= lsn {
                return Ok(());
            }
            if let Some(why) = &st.failed {
                return Err(Error::Poisoned(why.clone()));
            }
            if st.syncing {
                st.waiting += 1;
                st = self.synced.wait(st).unwrap_or_else(|p| p.into_inner());
                st.waiting -= 1;
                continue;
            }
            let now = Instant::now();
            if let Some(until) = gather
                .then(|| st.gather.wait_until(st.buffered_records, now))
                .flatten()
            {
                if !std::mem::replace(&mut held, true) {
                    self.sync_holds.fetch_add(1, Ordering::Relaxed);
                }
                st.gathering += 1;
                st = self
                    .appended
                    .wait_timeout(st, until - now)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                st.gathering -= 1;
                continue;
            }
            st = self.lead_sync(st);
        }
    }

    /// Writes and syncs whatever is buffered now (the timer thread and
    /// checkpoints use this).
    pub fn sync_all(&self) -> Result<()> {
        let target = self.lock().next_lsn;
        self.wait_durable(target)
    }

    /// Writes the buffer and fdatasyncs as the leader. Called with the lock held;
    /// releases it during I/O and returns it re-taken.
    fn lead_sync<'a>(&'a self, mut st: MutexGuard<'a, WalState>) -> MutexGuard<'a, WalState> {
        st.syncing = true;
        if st.gathering > 0 {
            // Gatherers wait for this sync instead now.
            self.appended.notify_all();
        }
        let started = Instant::now();
        let records = std::mem::take(&mut st.buffered_records);
        let spare = std::mem::take(&mut st.spare);
        let mut buffer = std::mem::replace(&mut st.buffer, spare);
        let start = st.written_lsn;
        let end = start + buffer.len() as u64;
        let needs_rotation = st.current.len >= self.segment_bytes && !buffer.is_empty();
        let prepared = if needs_rotation { st.next.take() } else { None };
        let (mut seg_first, mut seg_file, mut seg_len) = (
            st.current.first_lsn,
            st.current.file.clone(),
            st.current.len,
        );
        drop(st);

        let result = (|| -> Result<Option<Segment>> {
            let mut new_segment = None;
            if needs_rotation {
                // Everything in the old segment is durable (each leader syncs
                // before the next writes), so a new segment may start here.
                // A prepared segment if its helper succeeded; otherwise (none
                // started, or it failed) the segment is created here.
                let ready = prepared.and_then(|helper| helper.join().ok()?.ok());
                let seg = match ready {
                    Some(file) => activate_prepared(&*self.vfs, &self.dir, file, start)?,
                    None => {
                        let reuse = self.lock().spares.pop();
                        create_segment(&*self.vfs, &self.dir, start, self.segment_bytes, reuse)?
                    }
                };
                seg_first = seg.first_lsn;
                seg_file = seg.file.clone();
                seg_len = seg.len;
                new_segment = Some(seg);
            }
            if !buffer.is_empty() {
                let offset = seg_len;
                seg_file.write_all_at(&buffer, offset).map_err(|e| {
                    Error::io(
                        format!("appending to log segment {}", segment_name(seg_first)),
                        e,
                    )
                })?;
            }
            seg_file.sync_data().map_err(|e| {
                Error::io(
                    format!("syncing log segment {}", segment_name(seg_first)),
                    e,
                )
            })?;
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            Ok(new_segment)
        })();

        let mut st = self.lock();
        st.syncing = false;
        match result {
            Ok(new_segment) => {
                if let Some(seg) = new_segment {
                    let old = std::mem::replace(&mut st.current, seg);
                    st.older.push(old.first_lsn);
                }
                st.current.len += buffer.len() as u64;
                if st.next.is_none() {
                    st.next = self.start_preparing(&mut st);
                }
                buffer.clear();
                if buffer.capacity() <= MAX_SPARE_BUFFER {
                    st.spare = buffer;
                }
                st.written_lsn = end;
                st.durable_lsn = end;
                self.durable.store(end, Ordering::Release);
                let buffered = st.buffered_records;
                st.gather
                    .sync_done(started, Instant::now(), records, buffered);
            }
            Err(e) => {
                // After a failed write or fsync the kernel may have dropped the
                // data: nothing after `start` can be trusted to be durable.
                st.failed = Some(e.to_string());
            }
        }
        if st.waiting > 0 {
            self.synced.notify_all();
        }
        st
    }

    /// Retires segments that lie entirely below `lsn` (covered by a
    /// checkpoint): kept as spares up to the policy's count, else deleted.
    /// Returns how many were retired.
    pub fn remove_below(&self, lsn: u64) -> Result<usize> {
        let (doomed, room) = {
            let mut st = self.lock();
            let current_first = st.current.first_lsn;
            // Segment i ends where segment i+1 (or the current one) begins.
            let mut ends: Vec<u64> = st.older.iter().skip(1).copied().collect();
            ends.push(current_first);
            let doomed: Vec<u64> = st
                .older
                .iter()
                .zip(ends)
                .filter(|(_, end)| *end <= lsn)
                .map(|(first, _)| *first)
                .collect();
            st.older.retain(|f| !doomed.contains(f));
            let room = self
                .keep_spares
                .saturating_sub(st.spares.len() + st.spares_reserved)
                .min(doomed.len());
            st.spares_reserved += room;
            (doomed, room)
        };
        let mut recycled = Vec::new();
        let retired = (|| {
            for (i, first) in doomed.iter().enumerate() {
                let path = self.dir.join(segment_name(*first));
                let spare = self.dir.join(spare_name(*first));
                let kept = i < room && self.vfs.rename(&path, &spare).is_ok();
                if kept {
                    recycled.push(spare);
                } else {
                    self.vfs.remove_file(&path).map_err(|e| {
                        Error::io(format!("removing log segment {}", path.display()), e)
                    })?;
                }
            }
            Ok(doomed.len())
        })();
        let mut st = self.lock();
        st.spares_reserved -= room;
        st.spares.extend(recycled);
        retired
    }

    /// Counters.
    pub fn stats(&self) -> WalStats {
        let st = self.lock();
        WalStats {
            appended_records: self.records.load(Ordering::Relaxed),
            appended_bytes: self.bytes.load(Ordering::Relaxed),
            fsyncs: self.fsyncs.load(Ordering::Relaxed),
            sync_holds: self.sync_holds.load(Ordering::Relaxed),
            durable_lsn: st.durable_lsn,
            end_lsn: st.next_lsn,
            segments: st.older.len() as u64 + 1,
        }
    }
}

/// Largest emptied log buffer kept for reuse (a larger one, left by an
/// unusually large write batch, is freed).
const MAX_SPARE_BUFFER: usize = 64 << 20;

impl Drop for Wal {
    fn drop(&mut self) {
        // The helper writes into this directory: let it finish before the
        // directory is unlocked. Its file is removed at the next open.
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(helper) = st.next.take() {
            let _ = helper.join();
        }
    }
}

/// Zeros written per call while preallocating a segment.
const ZERO_CHUNK: usize = 1 << 20;

/// Fills `path` with `header` followed by zeros up to `size` bytes, then
/// syncs it. An existing file (a recycled segment) is overwritten in place,
/// keeping its blocks, and cut to `size` if longer; a missing one is created.
fn preallocate(
    vfs: &dyn Vfs,
    path: &Path,
    header: &[u8],
    size: u64,
) -> std::io::Result<Arc<dyn StorageFile>> {
    let file = vfs.open(path, true)?;
    let zeros = vec![0u8; ZERO_CHUNK];
    file.write_all_at(header, 0)?;
    let mut at = header.len() as u64;
    while at < size {
        let n = (size - at).min(ZERO_CHUNK as u64) as usize;
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    if file.len()? > size {
        file.set_len(size)?;
    }
    file.sync_data()?;
    Ok(file)
}

/// Creates the segment starting at `first_lsn`, from the spare `reuse` when
/// given (prepared, then activated, as a helper would).
fn create_segment(
    vfs: &dyn Vfs,
    dir: &Path,
    first_lsn: u64,
    size: u64,
    reuse: Option<PathBuf>,
) -> Result<Segment> {
    if reuse.is_some() {
        let file = prepare_segment(vfs, dir, size, reuse)?;
        return activate_prepared(vfs, dir, file, first_lsn);
    }
    let path = dir.join(segment_name(first_lsn));
    let file = preallocate(vfs, &path, &segment_header(first_lsn), size)
        .map_err(|e| Error::io(format!("preallocating log segment {}", path.display()), e))?;
    vfs.sync_dir(dir)
        .map_err(|e| Error::io(format!("syncing log directory {}", dir.display()), e))?;
    Ok(Segment {
        first_lsn,
        file,
        len: SEGMENT_HEADER_LEN,
    })
}

/// The helper's work: [`PREPARED_SEGMENT`] zero-filled to `size` and synced,
/// its header left zero (so it is never a valid segment by itself). With
/// `reuse`, that spare is renamed to it first (a spare that cannot be renamed
/// is left alone and a new file made instead).
fn prepare_segment(
    vfs: &dyn Vfs,
    dir: &Path,
    size: u64,
    reuse: Option<PathBuf>,
) -> Result<Arc<dyn StorageFile>> {
    let path = dir.join(PREPARED_SEGMENT);
    if let Some(spare) = reuse {
        // A spare that cannot be renamed stays a spare (the next open finds
        // it); a new file is made instead.
        let _ = vfs.rename(&spare, &path);
    }
    preallocate(vfs, &path, &[], size)
        .map_err(|e| Error::io(format!("preparing log segment {}", path.display()), e))
}

/// Turns the prepared file into the segment starting at `first_lsn`: header
/// written and synced, then renamed and the directory synced, before any
/// record goes in.
fn activate_prepared(
    vfs: &dyn Vfs,
    dir: &Path,
    file: Arc<dyn StorageFile>,
    first_lsn: u64,
) -> Result<Segment> {
    let path = dir.join(segment_name(first_lsn));
    let activate = || -> std::io::Result<()> {
        file.write_all_at(&segment_header(first_lsn), 0)?;
        file.sync_data()?;
        vfs.rename(&dir.join(PREPARED_SEGMENT), &path)?;
        vfs.sync_dir(dir)
    };
    activate().map_err(|e| Error::io(format!("starting log segment {}", path.display()), e))?;
    Ok(Segment {
        first_lsn,
        file,
        len: SEGMENT_HEADER_LEN,
    })
}

/// A record read back from the log (borrowed from the read buffer).
#[derive(Debug)]
pub struct Record<'a> {
    pub lsn: u64,
    pub payload: &'a [u8],
}

/// Where reading the log stopped.
#[derive(Debug)]
pub struct ReadEnd {
    /// LSN just past the last valid record.
    pub end_lsn: u64,
    /// The segment holding `end_lsn` and its handle (for appending), if any.
    pub tail: Option<(u64, Arc<dyn StorageFile>)>,
    /// First LSNs of the segments before the tail still on disk.
    pub older: Vec<u64>,
    /// Bytes of torn tail cut off (0 when the log ended cleanly).
    pub torn_bytes: u64,
}

/// Lists the log segments of `dir`, sorted by first LSN.
pub fn list_segments(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<u64>> {
    let names = vfs
        .list_dir(dir)
        .map_err(|e| Error::io(format!("listing log directory {}", dir.display()), e))?;
    let mut firsts: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    firsts.sort_unstable();
    Ok(firsts)
}

/// The spares in the log directory, oldest first.
fn list_spares(vfs: &dyn Vfs, dir: &Path) -> Result<Vec<PathBuf>> {
    let names = vfs
        .list_dir(dir)
        .map_err(|e| Error::io(format!("listing log directory {}", dir.display()), e))?;
    let mut firsts: Vec<u64> = names
        .iter()
        .filter_map(|n| parse_segment_name(&format!("{}.wal", n.strip_suffix(SPARE_SUFFIX)?)))
        .collect();
    firsts.sort_unstable();
    Ok(firsts
        .into_iter()
        .map(|f| dir.join(spare_name(f)))
        .collect())
}

/// Reads every valid record from `from_lsn` on, calling `visit` once per
/// segment with the segment's bytes and its records (borrowed from those
/// bytes; a visitor may keep the bytes, by cloning the `Arc`, to use the
/// records later), and finds where the log ends. A record that fails its
/// checksum at the very end of the last segment is a torn write: it and
/// everything after it are cut off (`truncate` = true does that on disk). A
/// bad record followed by a valid one, or a bad record in any segment but the
/// last, is corruption: an error naming the segment and offset.
///
/// While `visit` works on one segment, a helper thread reads the next one and
/// verifies its records. A segment's buffer is reused for a later one when
/// the visitor did not keep it (fresh multi-MiB allocations per segment cost
/// more in page faults than reading the data).
pub fn read_from(
    vfs: &dyn Vfs,
    dir: &Path,
    from_lsn: u64,
    truncate: bool,
    mut visit: impl FnMut(&Arc<Vec<u8>>, &[Record<'_>]) -> Result<()>,
) -> Result<ReadEnd> {
    let firsts = list_segments(vfs, dir)?;
    // Segments entirely before from_lsn are not needed (but still on disk).
    let start_idx = firsts.iter().rposition(|&f| f <= from_lsn);
    let mut older: Vec<u64> = Vec::new();
    let Some(start_idx) = start_idx else {
        if let Some(&first) = firsts.first() {
            return Err(Error::CorruptFile {
                path: dir.join(segment_name(first)),
                reason: format!("the log starts at LSN {first}, after the checkpoint's LSN {from_lsn}: records are missing"),
            });
        }
        return Ok(ReadEnd {
            end_lsn: from_lsn,
            tail: None,
            older,
            torn_bytes: 0,
        });
    };
    older.extend_from_slice(&firsts[..start_idx]);
    let last_idx = firsts.len() - 1;
    std::thread::scope(|scope| {
        let mut expected = from_lsn;
        let mut spare: Vec<u8> = Vec::new();
        let mut prefetch: Option<std::thread::ScopedJoinHandle<'_, Result<Loaded>>> = None;
        for (idx, &first) in firsts.iter().enumerate().skip(start_idx) {
            let seg = match prefetch.take() {
                Some(helper) => helper.join().unwrap_or_else(|_| {
                    Err(Error::Poisoned(format!(
                        "reading log segment {} panicked",
                        segment_name(first)
                    )))
                })?,
                None => load_segment(vfs, dir, first, expected, Vec::new())?,
            };
            if let Some(&after) = firsts.get(idx + 1) {
                let buffer = std::mem::take(&mut spare);
                prefetch = Some(scope.spawn(move || load_segment(vfs, dir, after, after, buffer)));
            }
            let corrupt = |offset: u64, what: &str| Error::CorruptFile {
                path: seg.path.clone(),
                reason: format!(
                    "log segment {} offset {offset}: {what}",
                    segment_name(first)
                ),
            };
            if first != expected && idx != start_idx {
                return Err(corrupt(
                    0,
                    &format!(
                        "segment starts at LSN {first}, expected {expected} (a segment is missing)"
                    ),
                ));
            }
            let (data, len) = (&seg.data[..], seg.len);
            let Some(scan) = &seg.scan else {
                // Records are written only after a segment's header and zeros
                // are synced, so a last segment with a bad header and no valid
                // record anywhere is a creation the crash interrupted: rebuild
                // it. A bad header in front of valid records is corruption.
                let interrupted = idx == last_idx
                    && first == expected
                    && !(SEGMENT_HEADER_LEN..len).any(|o| parse_record(data, o, first).is_some());
                if !interrupted {
                    return Err(corrupt(0, "bad segment header"));
                }
                if truncate {
                    let mut fresh = vec![0u8; (len.max(SEGMENT_HEADER_LEN)) as usize];
                    fresh[..SEGMENT_HEADER_LEN as usize].copy_from_slice(&segment_header(first));
                    overwrite(&seg, 0, &fresh, "repairing log segment")?;
                }
                return Ok(ReadEnd {
                    end_lsn: expected,
                    tail: Some((first, seg.file)),
                    older,
                    torn_bytes: len,
                });
            };
            if scan.start > len {
                return Err(corrupt(
                    len,
                    &format!("segment ends before LSN {expected}, where the log must continue"),
                ));
            }
            if let Some(&(lsn, _, n)) = scan.found.last() {
                expected = lsn + RECORD_HEADER_LEN + n as u64;
            }
            if !scan.clean_end {
                // The last write batch is written in one call and synced once;
                // until that sync completes its blocks may land in any order,
                // so damage followed by valid records of the same batch is
                // still a torn write. Damage followed by a later batch, or in
                // an earlier segment, was synced.
                let offset = scan.stop;
                let later_batch = (offset + 1..len)
                    .any(|o| parse_record(data, o, first).is_some_and(|p| p.batch_start));
                if idx != last_idx || later_batch {
                    return Err(corrupt(
                        offset,
                        "record fails its checksum or framing, and a later synced batch follows",
                    ));
                }
                visit(&seg.data, &to_records(&scan.found, data))?;
                // A write cut short by the crash: zero it (keeping the
                // preallocated space) so appends continue from here.
                let torn = len - offset;
                if truncate {
                    let zeros = vec![0u8; torn as usize];
                    overwrite(&seg, offset, &zeros, "cutting the torn tail of")?;
                }
                return Ok(ReadEnd {
                    end_lsn: expected,
                    tail: Some((first, seg.file)),
                    older,
                    torn_bytes: torn,
                });
            }
            visit(&seg.data, &to_records(&scan.found, data))?;
            if idx == last_idx {
                return Ok(ReadEnd {
                    end_lsn: expected,
                    tail: Some((first, seg.file)),
                    older,
                    torn_bytes: 0,
                });
            }
            older.push(first);
            if let Ok(buffer) = Arc::try_unwrap(seg.data) {
                spare = buffer;
            }
        }
        // Not reached: the last segment always returns inside the loop. Answer
        // as a log that ends where reading stopped rather than panic.
        Ok(ReadEnd {
            end_lsn: expected,
            tail: None,
            older,
            torn_bytes: 0,
        })
    })
}

/// Writes `bytes` at `offset` of a segment and syncs it; `what` (followed
/// by the path) says why in an error.
fn overwrite(seg: &Loaded, offset: u64, bytes: &[u8], what: &str) -> Result<()> {
    seg.file
        .write_all_at(bytes, offset)
        .and_then(|()| seg.file.sync_data())
        .map_err(|e| Error::io(format!("{what} {}", seg.path.display()), e))
}

/// A log segment read into memory.
struct Loaded {
    path: PathBuf,
    file: Arc<dyn StorageFile>,
    /// Length of the file.
    len: u64,
    data: Arc<Vec<u8>>,
    /// The records found; `None` when the segment header is bad.
    scan: Option<Scan>,
}

/// The valid records of a segment from a starting offset on.
struct Scan {
    /// File offset scanning started at (past the end: the segment is too short).
    start: u64,
    /// (LSN, payload start, payload length) of each record, in order.
    found: Vec<(u64, usize, usize)>,
    /// Offset of the first byte that is not part of a valid record.
    stop: u64,
    /// Whether the records end cleanly there: at the end of the file, or where
    /// the preallocated zeros begin.
    clean_end: bool,
}

/// Reads segment `first` into `data` (reusing its allocation) and finds its
/// valid records from LSN `start_lsn` on.
fn load_segment(
    vfs: &dyn Vfs,
    dir: &Path,
    first: u64,
    start_lsn: u64,
    mut data: Vec<u8>,
) -> Result<Loaded> {
    let path = dir.join(segment_name(first));
    let file = vfs
        .open(&path, false)
        .map_err(|e| Error::io(format!("opening log segment {}", path.display()), e))?;
    let len = file
        .len()
        .map_err(|e| Error::io(format!("reading the length of {}", path.display()), e))?;
    if len > MAX_SEGMENT_FILE {
        return Err(Error::CorruptFile {
            reason: format!(
                "log segment {} offset 0: segment file of {len} bytes is larger than any log segment",
                segment_name(first)
            ),
            path,
        });
    }
    data.resize(len as usize, 0);
    file.read_exact_at(&mut data, 0)
        .map_err(|e| Error::io(format!("reading log segment {}", path.display()), e))?;
    let scan = (parse_segment_header(&data) == Some(first)).then(|| {
        let start = start_lsn.saturating_sub(first) + SEGMENT_HEADER_LEN;
        let mut found = Vec::new();
        let mut offset = start;
        let clean_end = loop {
            if offset >= len {
                break true;
            }
            match parse_record(&data, offset, first) {
                Some(p) => {
                    found.push((
                        p.lsn,
                        (offset + RECORD_HEADER_LEN) as usize,
                        p.payload_len as usize,
                    ));
                    offset += RECORD_HEADER_LEN + p.payload_len;
                }
                // The preallocated zeros: this segment's records end here.
                None => break data[offset as usize..].iter().all(|&b| b == 0),
            }
        };
        Scan {
            start,
            found,
            stop: offset,
            clean_end,
        }
    });
    Ok(Loaded {
        path,
        file,
        len,
        data: Arc::new(data),
        scan,
    })
}

/// Records from (LSN, payload start, payload length) triples found in `data`.
fn to_records<'a>(found: &[(u64, usize, usize)], data: &'a [u8]) -> Vec<Record<'a>> {
    found
        .iter()
        .map(|&(lsn, start, n)| Record {
            lsn,
            payload: &data[start..start + n],
        })
        .collect()
}

/// A record header that passed validation.
#[derive(Debug, Clone, Copy)]
struct Parsed {
    payload_len: u64,
    lsn: u64,
    batch_start: bool,
}

/// Validates the record at `offset` of a segment starting at LSN `first`: its
/// framing, position and checksum.
fn parse_record(data: &[u8], offset: u64, first: u64) -> Option<Parsed> {
    let o = offset as usize;
    let head = data.get(o..o + RECORD_HEADER_LEN as usize)?;
    let len_field = u32::from_le_bytes(head[0..4].try_into().ok()?);
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    let lsn = u64::from_le_bytes(head[8..16].try_into().ok()?);
    let len = u64::from(len_field & !BATCH_START);
    if lsn != first + offset - SEGMENT_HEADER_LEN || len > MAX_RECORD_LEN {
        return None;
    }
    let start = o + RECORD_HEADER_LEN as usize;
    let payload = data.get(start..start + len as usize)?;
    (record_crc(lsn, len_field, payload) == crc).then_some(Parsed {
        payload_len: len,
        lsn,
        batch_start: len_field & BATCH_START != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vfs::OsVfs;
    use std::time::Duration;

    /// Appends one record and waits until it is durable; returns the LSN
    /// past it.
    fn append_durably(wal: &Wal, payload: &[u8]) -> u64 {
        let end = wal
            .append_with(1, |_, out| out.extend_from_slice(payload))
            .unwrap();
        wal.wait_durable(end).unwrap();
        end
    }

    fn policy(bytes: u64, prepare_ahead: bool) -> SegmentPolicy {
        SegmentPolicy {
            bytes,
            prepare_ahead,
            spares: 0,
        }
    }

    fn records_on_disk(dir: &Path) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let end = read_from(&OsVfs, dir, 0, false, |_, records| {
            out.extend(records.iter().map(|r| (r.lsn, r.payload.to_vec())));
            Ok(())
        })
        .unwrap();
        assert_eq!(end.torn_bytes, 0);
        out
    }

    /// Records encoded straight into the log buffer, across syncs that hand
    /// the emptied buffer to the next batch (a large record, then small ones
    /// that must not pick up its bytes), read back exactly, with their LSNs.
    #[test]
    fn appended_records_read_back_across_reused_buffers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(WAL_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        let wal = Wal::open(
            Arc::new(OsVfs),
            &dir,
            policy(1 << 20, false),
            0,
            None,
            Vec::new(),
        )
        .unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let batches: Vec<Vec<Vec<u8>>> = vec![
            vec![big.clone()],
            vec![b"one".to_vec(), Vec::new(), b"three".to_vec()],
            vec![big[..1000].to_vec()],
            vec![b"last".to_vec()],
        ];
        let mut want = Vec::new();
        let mut lsn = 0;
        for batch in &batches {
            let end = wal
                .append_with(batch.len(), |i, out| out.extend_from_slice(&batch[i]))
                .unwrap();
            for payload in batch {
                want.push((lsn, payload.clone()));
                lsn += RECORD_HEADER_LEN + payload.len() as u64;
            }
            assert_eq!(end, lsn);
            wal.wait_durable(end).unwrap();
        }
        // An encoder that panics leaves nothing behind: the next record
        // takes the LSN the failed one would have had.
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wal.append_with(2, |i, out| {
                out.extend_from_slice(b"partial");
                assert!(i == 0, "encoder fails");
            })
        }));
        assert!(caught.is_err());
        let end = wal
            .append_with(1, |_, out| out.extend_from_slice(b"after"))
            .unwrap();
        want.push((lsn, b"after".to_vec()));
        lsn += RECORD_HEADER_LEN + 5;
        assert_eq!(end, lsn);
        wal.wait_durable(end).unwrap();
        let stats = wal.stats();
        assert_eq!(stats.appended_records, want.len() as u64);
        assert_eq!(stats.appended_bytes, lsn);
        drop(wal);
        assert_eq!(records_on_disk(&dir), want);
    }

    /// A committer alone never holds its sync back (its own record is all
    /// the last sync released), even on a slow disk; committers on several
    /// threads that gather all end durable, every record on disk once, with
    /// fewer syncs than records.
    #[test]
    fn gathering_never_holds_a_lone_committer_and_loses_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(WAL_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        let vfs = Arc::new(crate::vfs::SyncHookVfs::slow(Duration::from_millis(1)));
        let wal = Wal::open(vfs, &dir, policy(1 << 20, false), 0, None, Vec::new()).unwrap();
        for i in 0..20u32 {
            let end = wal
                .append_with(1, |_, out| out.extend_from_slice(&i.to_le_bytes()))
                .unwrap();
            wal.wait_durable_gathering(end).unwrap();
        }
        assert_eq!(wal.stats().sync_holds, 0);
        assert_eq!(wal.stats().fsyncs, 20);
        std::thread::scope(|s| {
            for t in 0..6u32 {
                let wal = &wal;
                s.spawn(move || {
                    for i in 0..30u32 {
                        let end = wal
                            .append_with(1, |_, out| {
                                out.extend_from_slice(&(1000 * (t + 1) + i).to_le_bytes())
                            })
                            .unwrap();
                        wal.wait_durable_gathering(end).unwrap();
                        assert!(wal.stats().durable_lsn >= end);
                    }
                });
            }
        });
        let stats = wal.stats();
        assert_eq!(stats.appended_records, 20 + 6 * 30);
        assert!(stats.fsyncs < 20 + 6 * 30, "{} syncs", stats.fsyncs);
        drop(wal);
        let mut got: Vec<u32> = records_on_disk(&dir)
            .into_iter()
            .map(|(_, p)| u32::from_le_bytes(p.try_into().unwrap()))
            .collect();
        got.sort_unstable();
        let mut want: Vec<u32> = (0..20).collect();
        want.extend((0..6u32).flat_map(|t| (0..30).map(move |i| 1000 * (t + 1) + i)));
        want.sort_unstable();
        assert_eq!(got, want);
    }

    /// With `prepare_ahead`, every rotation uses the file the helper prepared
    /// once the segment was half full (the same inode becomes the segment), a
    /// new one is prepared for each segment, every record reads back, and a
    /// prepared file left behind is removed at open, where none is started.
    #[test]
    fn rotation_uses_the_prepared_segment_and_a_leftover_is_removed() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(WAL_DIR);
        std::fs::create_dir_all(&dir).unwrap();
        let prepared = dir.join(PREPARED_SEGMENT);
        std::fs::write(&prepared, b"left by a crash").unwrap();
        let size = 64 * 1024;
        let wal = Wal::open(
            Arc::new(OsVfs),
            &dir,
            policy(size, true),
            0,
            None,
            Vec::new(),
        )
        .unwrap();
        let mut want = Vec::new();
        let mut lsn = 0;
        let mut prepared_inodes = std::collections::HashSet::new();
        assert!(wal.lock().next.is_none(), "nothing prepared at open");
        for i in 0..40u32 {
            // Once the helper runs, let it finish and note which file it made.
            let helper = wal.lock().next.take();
            if let Some(helper) = helper {
                let file = helper.join().unwrap().unwrap();
                let meta = std::fs::metadata(&prepared).unwrap();
                assert_eq!(meta.len(), size);
                prepared_inodes.insert(meta.ino());
                wal.lock().next = Some(std::thread::spawn(move || Ok(file)));
            }
            let payload = vec![i as u8; 9_000];
            let end = append_durably(&wal, &payload);
            want.push((lsn, payload));
            lsn = end;
        }
        let segments = list_segments(&OsVfs, &dir).unwrap();
        assert!(segments.len() >= 5, "{segments:?}");
        for first in &segments[1..] {
            let ino = std::fs::metadata(dir.join(segment_name(*first)))
                .unwrap()
                .ino();
            assert!(
                prepared_inodes.contains(&ino),
                "segment {first} was not prepared"
            );
        }
        drop(wal);
        assert!(
            std::fs::metadata(&prepared).is_ok(),
            "the next one was prepared"
        );
        assert_eq!(records_on_disk(&dir), want);
        let wal = Wal::open(
            Arc::new(OsVfs),
            &dir,
            policy(size, true),
            lsn,
            None,
            segments,
        )
        .unwrap();
        assert!(std::fs::metadata(&prepared).is_err(), "removed at open");
        drop(wal);
        assert!(
            std::fs::metadata(&prepared).is_err(),
            "an open without appends prepares nothing"
        );
    }

    /// Segments a checkpoint covers become spares (at most the policy's
    /// count, the rest deleted), later segments are made from them (same
    /// inode, stale records gone), with or without a helper preparing
    /// ahead; an open keeps the spares it finds, up to its count.
    #[test]
    fn covered_segments_are_recycled_into_new_ones() {
        use std::os::unix::fs::MetadataExt;
        for prepare_ahead in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join(WAL_DIR);
            std::fs::create_dir_all(&dir).unwrap();
            let size = 64 * 1024;
            let policy = SegmentPolicy {
                bytes: size,
                prepare_ahead,
                spares: 2,
            };
            let spares_on_disk = || -> Vec<u64> {
                let mut v: Vec<u64> = std::fs::read_dir(&dir)
                    .unwrap()
                    .filter_map(|e| {
                        let name = e.unwrap().file_name().into_string().unwrap();
                        name.ends_with(SPARE_SUFFIX)
                            .then(|| std::fs::metadata(dir.join(&name)).unwrap().ino())
                    })
                    .collect();
                v.sort_unstable();
                v
            };
            let wal = Wal::open(Arc::new(OsVfs), &dir, policy, 0, None, Vec::new()).unwrap();
            let (mut want, mut lsn) = (Vec::new(), 0u64);
            let mut spare_inodes = std::collections::HashSet::new();
            let (mut retired, mut reused) = (0, 0);
            for i in 0..200u32 {
                // Sizes vary, so a segment's records end short of where its
                // previous life's did.
                let payload = vec![i as u8 | 1; 9_000 - (i as usize % 5) * 1_700];
                let end = append_durably(&wal, &payload);
                want.push((lsn, payload));
                lsn = end;
                // Segments made since the last check: from a spare or not.
                for first in list_segments(&OsVfs, &dir).unwrap() {
                    let ino = std::fs::metadata(dir.join(segment_name(first)))
                        .unwrap()
                        .ino();
                    if spare_inodes.remove(&ino) {
                        reused += 1;
                    }
                }
                if i % 7 == 6 {
                    // A checkpoint covering everything durable.
                    retired += wal.remove_below(end).unwrap();
                    let spares = spares_on_disk();
                    assert!(spares.len() <= 2, "{spares:?}");
                    // (A helper may be renaming one it took.)
                    let listed = wal.lock().spares.len();
                    assert!(spares.len() == listed || prepare_ahead && spares.len() == listed + 1);
                    spare_inodes.extend(spares);
                }
            }
            assert!(retired >= 12, "retired {retired}");
            assert!(
                reused >= 4,
                "reused {reused} spares (prepare ahead {prepare_ahead})"
            );
            let segments = list_segments(&OsVfs, &dir).unwrap();
            assert!(segments.len() <= 8, "{segments:?}");
            drop(wal);
            // Every record from the oldest segment on reads back, and nothing
            // of what the recycled files held before.
            let from = segments[0];
            let mut got = Vec::new();
            let end = read_from(&OsVfs, &dir, from, false, |_, records| {
                got.extend(records.iter().map(|r| (r.lsn, r.payload.to_vec())));
                Ok(())
            })
            .unwrap();
            assert_eq!((end.end_lsn, end.torn_bytes), (lsn, 0), "a clean end");
            let want: Vec<_> = want.into_iter().filter(|(l, _)| *l >= from).collect();
            assert_eq!(got, want);

            // Three spares on disk, a policy of two: one is removed at open,
            // two are kept and reused.
            let extra = dir.join(spare_name(1));
            std::fs::write(&extra, vec![7u8; 1000]).unwrap();
            while spares_on_disk().len() < 3 {
                let n = spares_on_disk().len() as u64 + 2;
                std::fs::write(dir.join(spare_name(n)), b"x").unwrap();
            }
            let wal = Wal::open(Arc::new(OsVfs), &dir, policy, lsn, None, segments).unwrap();
            assert_eq!(
                spares_on_disk().len(),
                1,
                "two kept, one of them used at once"
            );
            assert_eq!(wal.lock().spares.len(), 1);
            drop(wal);
        }
    }
}
