//! The background thread: syncs the log on a timer (timer durability) and takes
//! checkpoints when the log has grown past `Options::checkpoint_log_bytes` or
//! `Options::checkpoint_interval` has passed with changes. Dropping the last
//! [`crate::Db`] handle stops it, then syncs the log and takes a final checkpoint.

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::db::{lock, DbInner, Options};
use crate::wal::Durability;

/// Longest sleep between two looks at the log size.
const MAX_TICK: Duration = Duration::from_millis(200);

pub(crate) struct Background {
    inner: Weak<DbInner>,
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Background {
    pub(crate) fn start(inner: &Arc<DbInner>, options: &Options) -> Arc<Background> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let weak = Arc::downgrade(inner);
        let handle = if options.background {
            let tick = match options.durability {
                Durability::Timer { interval } => interval.min(MAX_TICK),
                Durability::Sync => MAX_TICK,
            };
            let timer = matches!(options.durability, Durability::Timer { .. });
            let (stop2, weak2) = (stop.clone(), weak.clone());
            std::thread::Builder::new()
                .name("treestore-background".into())
                .spawn(move || run(weak2, stop2, tick, timer))
                .ok()
        } else {
            None
        };
        Arc::new(Background {
            inner: weak,
            stop,
            handle: Mutex::new(handle),
        })
    }
}

fn run(inner: Weak<DbInner>, stop: Arc<(Mutex<bool>, Condvar)>, tick: Duration, timer: bool) {
    let (flag, cv) = &*stop;
    loop {
        {
            let stopped = lock(flag);
            let (stopped, _) = cv
                .wait_timeout(stopped, tick)
                .unwrap_or_else(|p| p.into_inner());
            if *stopped {
                return;
            }
        }
        let Some(db) = inner.upgrade() else {
            return;
        };
        if timer {
            if let Err(e) = db.wal.sync_all() {
                lock(&db.commit)
                    .poisoned
                    .get_or_insert_with(|| e.to_string());
                *lock(&db.background_error) = Some(format!("log sync: {e}"));
            }
        }
        if db.checkpoint_due() {
            // A failed checkpoint leaves the previous one and the log intact; the
            // next tick tries again. Errors that make the state unknown poison
            // the database, which commits report.
            match db.checkpoint() {
                Ok(()) => *lock(&db.background_error) = None,
                Err(e) => *lock(&db.background_error) = Some(format!("checkpoint: {e}")),
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        {
            let (flag, cv) = &*self.stop;
            *lock(flag) = true;
            cv.notify_all();
        }
        if let Some(handle) = lock(&self.handle).take() {
            let _ = handle.join();
        }
        if let Some(db) = self.inner.upgrade() {
            // Best effort on close; `Db::close` reports these errors.
            let _ = db.wal.sync_all();
            let _ = db.checkpoint();
        }
    }
}
