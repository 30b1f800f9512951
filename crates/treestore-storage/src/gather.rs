//! When a log sync waits for more commits to share it.
//!
//! With many committers and a slow sync, group commit settles into cohorts:
//! the committers released by one sync come back while the next sync (of
//! those who queued during the first) is already running, so each sync
//! carries only part of them. [`Gather`] lets a committer about to start a
//! sync wait, briefly, until as many records are buffered as the last sync
//! released plus those already buffered when it ended (so the released
//! committers are back), or until a deadline of half the smoothed sync time
//! (at most [`MAX_HOLD`]) after that sync ended. A lone committer never
//! waits: its own next record is all the last sync released. Nor does
//! anyone when half a sync is under [`MIN_HOLD`]: released committers take
//! longer than that to come back (150 to 250 µs measured on a 2-core VM,
//! waking and re-queuing), and a timed wait that short oversleeps by the
//! kernel's timer slack (50 µs by default), so on a fast disk holding would
//! only delay syncs. Nothing about durability changes; only when a sync
//! starts.

use std::time::{Duration, Instant};

/// Longest a sync is held back after the previous one ended.
pub const MAX_HOLD: Duration = Duration::from_millis(2);
/// Shortest hold worth making; a shorter one (a fast disk) is not made.
pub const MIN_HOLD: Duration = Duration::from_micros(100);

/// What the next sync waits for (see the module doc).
#[derive(Debug, Default, Clone)]
pub(crate) struct Gather {
    /// Smoothed duration of a sync, in nanoseconds (0 before the first).
    sync_nanos: u64,
    /// Records the next sync waits to be buffered.
    target: usize,
    /// Until when it waits; `None` before the first sync.
    deadline: Option<Instant>,
}

impl Gather {
    /// Notes a sync that ran from `started` to `ended` and made `synced`
    /// records durable, while `buffered` more were appended.
    pub fn sync_done(&mut self, started: Instant, ended: Instant, synced: usize, buffered: usize) {
        let took = ended.saturating_duration_since(started).as_nanos() as u64;
        self.sync_nanos = match self.sync_nanos {
            0 => took,
            s => (s * 7 + took) / 8,
        };
        self.target = synced + buffered;
        let hold = Duration::from_nanos(self.sync_nanos / 2).min(MAX_HOLD);
        self.deadline = (hold >= MIN_HOLD).then_some(ended + hold);
    }

    /// Until when a sync about to start `now` with `buffered` records should
    /// wait for more; `None`: start it now.
    pub fn wait_until(&self, buffered: usize, now: Instant) -> Option<Instant> {
        let deadline = self.deadline?;
        (buffered < self.target && now < deadline).then_some(deadline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_committer_never_waits() {
        let mut g = Gather::default();
        let t = Instant::now();
        assert_eq!(g.wait_until(1, t), None, "no sync yet");
        let mut now = t;
        for _ in 0..10 {
            // Its one record synced, nothing else buffered; it comes back
            // with its next record.
            g.sync_done(now, now + Duration::from_millis(1), 1, 0);
            now += Duration::from_millis(1);
            assert_eq!(g.wait_until(1, now), None);
        }
    }

    #[test]
    fn waits_for_the_released_committers_until_the_deadline() {
        let mut g = Gather::default();
        let t = Instant::now();
        let end = t + Duration::from_millis(1);
        // 8 records synced while 8 more were appended: wait for 16.
        g.sync_done(t, end, 8, 8);
        let deadline = end + Duration::from_micros(500);
        assert_eq!(g.wait_until(8, end), Some(deadline));
        assert_eq!(
            g.wait_until(15, end + Duration::from_micros(100)),
            Some(deadline)
        );
        assert_eq!(g.wait_until(16, end), None, "all back");
        assert_eq!(g.wait_until(8, deadline), None, "deadline passed");
    }

    #[test]
    fn the_hold_follows_the_smoothed_sync_time_and_is_capped() {
        let mut g = Gather::default();
        let t = Instant::now();
        g.sync_done(t, t + Duration::from_millis(1), 2, 0);
        // A much slower sync moves the average by an eighth of the change.
        let end = t + Duration::from_millis(10);
        g.sync_done(t + Duration::from_millis(1), end, 2, 0);
        let avg = (1_000_000u64 * 7 + 9_000_000) / 8;
        assert_eq!(
            g.wait_until(0, end),
            Some(end + Duration::from_nanos(avg / 2))
        );
        let slow = t + Duration::from_secs(1);
        for _ in 0..100 {
            g.sync_done(t, slow, 2, 0);
        }
        assert_eq!(g.wait_until(0, slow), Some(slow + MAX_HOLD));
    }

    #[test]
    fn a_fast_disk_never_holds() {
        let mut g = Gather::default();
        let t = Instant::now();
        // Syncs of 150 µs: half of one is under the shortest hold.
        for i in 0..20u32 {
            let start = t + Duration::from_micros(150) * i;
            g.sync_done(start, start + Duration::from_micros(150), 8, 8);
            assert_eq!(g.wait_until(8, start + Duration::from_micros(150)), None);
        }
        // Once syncs slow to 400 µs on average, it holds again.
        for _ in 0..40 {
            g.sync_done(t, t + Duration::from_micros(400), 8, 8);
        }
        assert!(g.wait_until(8, t + Duration::from_micros(400)).is_some());
    }
}
