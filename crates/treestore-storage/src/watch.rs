//! Key-range watches: which commit last wrote a key in a range, for caches
//! of data read from that range.
//!
//! A cache that holds something read from range R on the snapshot of commit
//! `s0` may answer a reader on snapshot `s` when both snapshots see the same
//! contents of R. With `w` the sequence number of the last commit that wrote
//! in R (as [`Watch::last_write`] reports it), that holds when `s0 >= w` and
//! `s >= w`: both snapshots then include every write ever made in R.
//!
//! The commit path records a commit in every watch it touches while it holds
//! the commit mutex, after applying it and before its snapshot can be
//! published, so a reader that sees a commit in its snapshot also sees it in
//! the watch. A reader must therefore read the watch *after* it took its
//! snapshot and after it looked up the cached entry (an entry put by a reader
//! that saw a newer commit is then matched by a watch value at least as new).

use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use crate::db::WriteSet;

/// The last commit that wrote a key in `[lower, upper)`.
#[derive(Debug)]
pub struct Watch {
    lower: Vec<u8>,
    upper: Vec<u8>,
    last_write: AtomicU64,
}

impl Watch {
    /// Sequence number of the last commit that wrote a key in the range, or
    /// the commit the database was at when the watch was made if none has
    /// since (earlier writes are not known individually).
    pub fn last_write(&self) -> u64 {
        self.last_write.load(Ordering::Acquire)
    }

    fn touched_by(&self, writes: &WriteSet) -> bool {
        // An empty range (which `BTreeMap::range` would panic on, inside a
        // commit) holds no key.
        if self.lower >= self.upper {
            return false;
        }
        let range = (
            Bound::Included(self.lower.as_slice()),
            Bound::Excluded(self.upper.as_slice()),
        );
        writes.range::<[u8], _>(range).next().is_some()
    }
}

/// The watches of one database (a watch nobody holds any more is dropped
/// from the list when the next one is added).
#[derive(Debug, Default)]
pub(crate) struct Watches {
    list: RwLock<Vec<Weak<Watch>>>,
}

impl Watches {
    /// A new watch on `[lower, upper)`, starting at commit `seq`.
    pub fn add(&self, lower: &[u8], upper: &[u8], seq: u64) -> Arc<Watch> {
        let w = Arc::new(Watch {
            lower: lower.to_vec(),
            upper: upper.to_vec(),
            last_write: AtomicU64::new(seq),
        });
        let mut list = self.list.write().unwrap_or_else(|p| p.into_inner());
        list.retain(|w| w.strong_count() > 0);
        list.push(Arc::downgrade(&w));
        w
    }

    /// Watches still held.
    #[cfg(test)]
    fn live(&self) -> usize {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        list.iter().filter(|w| w.strong_count() > 0).count()
    }

    /// Records commit `seq`, which wrote `writes`, in the watches it touches.
    /// Called under the commit mutex before the commit's snapshot is staged.
    pub fn note(&self, seq: u64, writes: &WriteSet) {
        let list = self.list.read().unwrap_or_else(|p| p.into_inner());
        for w in list.iter().filter_map(Weak::upgrade) {
            if w.touched_by(writes) {
                w.last_write.fetch_max(seq, Ordering::Release);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Db, Options};

    fn put(db: &Db, key: &[u8]) -> u64 {
        let mut t = db.begin_write();
        t.put(key, b"v").unwrap();
        t.commit().unwrap().seq
    }

    #[test]
    fn follows_the_last_commit_that_wrote_in_range() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let before = put(&db, b"b1");
        let w = db.watch(b"b", b"c");
        assert_eq!(w.last_write(), before, "starts at the current commit");
        put(&db, b"a");
        put(&db, b"c");
        assert_eq!(w.last_write(), before, "writes outside the range");
        let inside = put(&db, b"b2");
        put(&db, b"d");
        assert_eq!(w.last_write(), inside);
        // A delete is a write too.
        let mut t = db.begin_write();
        t.delete(b"b1").unwrap();
        let deleted = t.commit().unwrap().seq;
        assert_eq!(w.last_write(), deleted);
        // Several committers at once (groups): the newest one that wrote in
        // the range.
        let seqs: Vec<(bool, u64)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let db = &db;
                    s.spawn(move || {
                        let key = if i % 2 == 0 {
                            format!("b-{i}")
                        } else {
                            format!("x-{i}")
                        };
                        (i % 2 == 0, put(db, key.as_bytes()))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let newest = seqs
            .iter()
            .filter(|(inside, _)| *inside)
            .map(|(_, s)| *s)
            .max();
        assert_eq!(Some(w.last_write()), newest);
    }

    #[test]
    fn an_empty_range_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let start = put(&db, b"m");
        let backwards = db.watch(b"z", b"a");
        let empty = db.watch(b"m", b"m");
        put(&db, b"m");
        put(&db, b"q");
        assert_eq!((backwards.last_write(), empty.last_write()), (start, start));
    }

    #[test]
    fn watches_nobody_holds_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), Options::default()).unwrap();
        let kept = db.watch(b"a", b"b");
        for _ in 0..10 {
            drop(db.watch(b"a", b"b"));
        }
        let last = db.watch(b"a", b"b");
        assert_eq!(db.inner.watches.live(), 2);
        assert_eq!(db.inner.watches.list.read().unwrap().len(), 2);
        let seq = put(&db, b"a1");
        assert_eq!((kept.last_write(), last.last_write()), (seq, seq));
    }

    #[test]
    fn a_commit_made_durable_by_a_checkpoint_counts() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            large_txn_bytes: 1024,
            ..Options::default()
        };
        let db = Db::open(dir.path(), options).unwrap();
        let w = db.watch(b"k", b"l");
        let mut t = db.begin_write();
        t.put(b"k1", &[7u8; 4096]).unwrap();
        let seq = t.commit().unwrap().seq;
        assert_eq!(w.last_write(), seq);
    }
}
