//! Splitting one query's or one document's work across a few threads:
//! indexing a large document, the cross-policy summary scan, reading a large
//! subtree. The calling thread takes part (a fixed first share in
//! [`in_parts`], items as it comes free in [`shared_out`]); the rest runs on
//! persistent threads (rayon pools): a shared pool for indexing, and for
//! queries one helper pinned to each CPU, a query's parts going to helpers
//! on other CPUs than the caller's (see [`cpus`]); so a query's parts never
//! queue behind a large document being indexed. Persistent threads, not a
//! thread per call: a fresh thread's allocator heap starts empty, and
//! faulting in its memory cost more than a split saved.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::cpus;

/// At most this many threads work on one piece of work.
const MAX_THREADS: usize = 4;

/// Threads worth using for one piece of work: the cores, at most
/// [`MAX_THREADS`].
pub(crate) fn available_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
}

/// Threads for `count` items of work that is worth splitting only from
/// `at_least` items on: [`available_threads`] then, else 1.
pub(crate) fn threads_for(count: usize, at_least: usize) -> usize {
    if count >= at_least {
        available_threads()
    } else {
        1
    }
}

/// Which pool runs the parts beyond the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pool {
    /// Indexing documents being stored.
    Indexing,
    /// Reads: subtrees, search.
    Queries,
}

fn pool(which: Pool) -> Option<&'static rayon::ThreadPool> {
    static INDEXING: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    static QUERIES: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    let (cell, name) = match which {
        Pool::Indexing => (&INDEXING, "treestore-index"),
        Pool::Queries => (&QUERIES, "treestore-query"),
    };
    cell.get_or_init(|| {
        // A pool that cannot start its threads (resource limits) leaves the
        // work to the caller, one part after another.
        rayon::ThreadPoolBuilder::new()
            .num_threads(available_threads())
            .thread_name(move |i| format!("{name}-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// A one-thread pool whose thread is pinned to `cpu`.
struct PinnedHelper {
    cpu: usize,
    pool: rayon::ThreadPool,
}

/// Most query helpers started (one per CPU, on the first this many CPUs).
const MAX_HELPERS: usize = 64;

/// The query helpers: one per CPU the process may run on, each pinned to
/// its CPU. A query hands its other parts to the helpers of CPUs other than
/// the one it runs on. An unpinned pool lets the scheduler wake its thread
/// on the caller's own CPU, where the two then take turns and the split
/// saves nothing: measured on a 300-node subtree (50k nodes, 2 CPUs, 8
/// alternating pairs of processes), p99 366-410 us unpinned against
/// 247-286 us pinned, medians equal. Empty when the CPUs are unknown or
/// pinning is refused: the shared [`Pool::Queries`] pool is used then.
fn pinned_helpers() -> &'static [PinnedHelper] {
    static HELPERS: OnceLock<Vec<PinnedHelper>> = OnceLock::new();
    HELPERS.get_or_init(|| {
        let cpus = cpus::allowed();
        if cpus.len() < 2 {
            return Vec::new();
        }
        let helpers: Option<Vec<PinnedHelper>> = cpus
            .iter()
            .take(MAX_HELPERS)
            .map(|&cpu| {
                let (tx, rx) = std::sync::mpsc::channel();
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(move |_| format!("treestore-query-{cpu}"))
                    .start_handler(move |_| {
                        let _ = tx.send(cpus::pin_current_thread(cpu));
                    })
                    .build()
                    .ok()?;
                rx.recv().ok()?.then_some(PinnedHelper { cpu, pool })
            })
            .collect();
        helpers.unwrap_or_default()
    })
}

/// Up to `n` pools for the parts of `which` work beyond the caller's: for
/// queries, pinned helpers on CPUs other than the caller's (the next ones
/// after it, in turn); otherwise the shared pool, once per part.
fn helpers_for(which: Pool, n: usize) -> Vec<&'static rayon::ThreadPool> {
    if n == 0 {
        return Vec::new();
    }
    let pinned = match which {
        Pool::Queries => pinned_helpers(),
        Pool::Indexing => &[],
    };
    if pinned.is_empty() {
        return pool(which).map(|p| vec![p; n]).unwrap_or_default();
    }
    let cpus: Vec<usize> = pinned.iter().map(|h| h.cpu).collect();
    others_after(&cpus, cpus::current(), n)
        .into_iter()
        .map(|i| &pinned[i].pool)
        .collect()
}

/// Indices of up to `n` of `cpus` (increasing) other than `here`: the ones
/// after `here` first, wrapping around, so callers on different CPUs start
/// with different helpers.
fn others_after(cpus: &[usize], here: Option<usize>, n: usize) -> Vec<usize> {
    let start = here
        .and_then(|c| cpus.iter().position(|&cpu| cpu > c))
        .unwrap_or(0);
    (start..cpus.len())
        .chain(0..start)
        .filter(|&i| Some(cpus[i]) != here)
        .take(n)
        .collect()
}

/// Runs `job` on each of `slots` on its own one of `pools` while `caller`
/// runs on this thread; returns `caller`'s result once every job is done. A
/// panic in a job resumes here after all have finished.
fn beside<S: Send, R>(
    pools: &[&rayon::ThreadPool],
    slots: &mut [S],
    job: &(dyn Fn(&mut S) + Sync),
    caller: impl FnOnce() -> R,
) -> R {
    match (pools.split_first(), slots.split_first_mut()) {
        (Some((pool, pools)), Some((slot, slots))) => pool.in_place_scope(|s| {
            s.spawn(move |_| job(slot));
            beside(pools, slots, job, caller)
        }),
        _ => caller(),
    }
}

/// `f` over `items` cut into at most `threads` contiguous parts (with the
/// index of each part's first item): the first part on the calling thread,
/// the others on `which` pool; the results in part order. A panic in a part
/// resumes in the caller once every part has finished.
pub(crate) fn in_parts<T: Sync, R: Send>(
    which: Pool,
    items: &[T],
    threads: usize,
    f: impl Fn(usize, &[T]) -> R + Sync,
) -> Vec<R> {
    let pool = match pool(which) {
        Some(pool) if threads >= 2 && items.len() >= 2 => pool,
        _ => return vec![f(0, items)],
    };
    let chunk = items.len().div_ceil(threads);
    let mut out: Vec<Option<R>> = Vec::new();
    out.resize_with(items.len().div_ceil(chunk), || None);
    let f = &f;
    pool.in_place_scope(|s| {
        let mut slots = out.iter_mut();
        let mut parts = items.chunks(chunk).enumerate();
        let first = parts.next().zip(slots.next());
        for ((i, part), slot) in parts.zip(slots) {
            s.spawn(move |_| *slot = Some(f(i * chunk, part)));
        }
        if let Some(((_, part), slot)) = first {
            *slot = Some(f(0, part));
        }
    });
    out.into_iter().flatten().collect()
}

/// Counts the callers doing one kind of work at the same time, so that one
/// splits its work across threads only when it is alone: concurrent callers
/// already keep the cores busy, and splitting each of them only adds waits
/// for pool threads busy with the others' parts (measured: two concurrent
/// writers storing documents 18,767 nodes/s unsplit against 14,869 split).
#[derive(Debug, Default)]
pub(crate) struct Occupancy(AtomicUsize);

impl Occupancy {
    /// Counts the caller in until the guard drops.
    pub(crate) fn enter(&self) -> Occupant<'_> {
        let before = self.0.fetch_add(1, Ordering::AcqRel);
        Occupant {
            count: &self.0,
            alone: before == 0,
        }
    }
}

/// A caller counted in by [`Occupancy::enter`].
pub(crate) struct Occupant<'a> {
    count: &'a AtomicUsize,
    /// Nobody else was in when this caller entered.
    pub alone: bool,
}

impl Drop for Occupant<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Work for [`shared_out`] is cut into this many runs per thread, so a
/// thread that starts late or runs slow takes fewer of them.
const RUNS_PER_THREAD: usize = 4;

/// How many of `count` items go in one run of work for [`shared_out`] on
/// `threads` threads: all of them for one thread (one run, one cursor),
/// else [`RUNS_PER_THREAD`] runs per thread. At least 1.
pub(crate) fn run_len(count: usize, threads: usize) -> usize {
    match threads {
        0 | 1 => count.max(1),
        n => count.div_ceil(n * RUNS_PER_THREAD).max(1),
    }
}

/// `f` on each of `items`, shared out as work comes free: the calling thread
/// and up to `threads - 1` jobs on `which` pool each take the next item not
/// yet taken until none is left; the results in item order. Unlike
/// [`in_parts`], nobody waits for a fixed share: the caller starts at once
/// while a pool thread is still waking (tens of µs on a busy machine), and
/// whoever is ahead takes more. Once no item is left the caller spins (it
/// does not sleep) until the pool's items in progress are done, so it is
/// not woken late from a sleep to collect them. Items should be a few
/// times more numerous than threads, each tens of µs of work. A panic in an
/// item resumes in the caller once every job has finished.
pub(crate) fn shared_out<T: Sync, R: Send>(
    which: Pool,
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let pools = match threads >= 2 && items.len() >= 2 {
        true => helpers_for(which, (threads - 1).min(items.len() - 1)),
        false => Vec::new(),
    };
    if pools.is_empty() {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    // Pool jobs taking or working on an item.
    let busy = AtomicUsize::new(0);
    let take_all = |done: &mut Vec<(usize, R)>| loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(item) = items.get(i) else { break };
        done.push((i, f(item)));
    };
    let mut theirs: Vec<Vec<(usize, R)>> = Vec::new();
    theirs.resize_with(pools.len(), Vec::new);
    let mut done = Vec::with_capacity(items.len());
    let job = |slot: &mut Vec<(usize, R)>| {
        busy.fetch_add(1, Ordering::AcqRel);
        // Counted out even when `f` panics, so the caller stops spinning.
        let _out = Leave(&busy);
        take_all(slot);
    };
    beside(&pools, &mut theirs, &job, || {
        take_all(&mut done);
        let mut spins = 0u32;
        while busy.load(Ordering::Acquire) > 0 {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(256) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    });
    for part in theirs {
        done.extend(part);
    }
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

/// Counts a pool job out of [`shared_out`]'s busy count when dropped.
struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_items_in_order_with_their_offsets() {
        let items: Vec<u32> = (0..10).collect();
        for threads in 1..=5 {
            let parts = in_parts(Pool::Queries, &items, threads, |first, part| {
                (first, part.to_vec())
            });
            assert!(!parts.is_empty() && parts.len() <= threads);
            let mut seen = Vec::new();
            for (first, part) in parts {
                assert_eq!(first, seen.len(), "offset of a part with {threads} threads");
                seen.extend(part);
            }
            assert_eq!(seen, items);
        }
        assert_eq!(
            in_parts(Pool::Queries, &[] as &[u32], 3, |_, p| p.len()),
            vec![0]
        );
        assert_eq!(
            in_parts(Pool::Indexing, &[7u32], 3, |_, p| p.to_vec()),
            vec![vec![7]]
        );
    }

    #[test]
    fn runs_are_one_for_one_thread_and_four_per_thread_otherwise() {
        assert_eq!(run_len(299, 1), 299);
        assert_eq!(run_len(0, 1), 1);
        assert_eq!(run_len(299, 2), 38);
        assert_eq!(299usize.div_ceil(run_len(299, 2)), 8);
        assert_eq!(run_len(1024, 4), 64);
        assert_eq!(run_len(3, 2), 1);
    }

    #[test]
    fn shared_out_gives_each_result_once_in_item_order() {
        let items: Vec<u32> = (0..24).collect();
        for threads in 1..=4 {
            let calls = AtomicUsize::new(0);
            let out = shared_out(Pool::Queries, &items, threads, |&i| {
                calls.fetch_add(1, Ordering::Relaxed);
                // Long enough that a pool thread wakes and takes some items.
                std::thread::sleep(std::time::Duration::from_millis(1));
                (i, std::thread::current().id())
            });
            assert_eq!(calls.load(Ordering::Relaxed), items.len());
            let got: Vec<u32> = out.iter().map(|(i, _)| *i).collect();
            assert_eq!(got, items, "{threads} threads");
            let mut workers: Vec<_> = out.iter().map(|(_, t)| *t).collect();
            workers.sort_by_key(|t| format!("{t:?}"));
            workers.dedup();
            if threads == 1 {
                assert_eq!(workers, vec![std::thread::current().id()]);
            } else {
                assert!(workers.len() >= 2, "{threads} threads shared nothing out");
            }
        }
        assert!(shared_out(Pool::Queries, &[] as &[u32], 2, |&i| i).is_empty());
        assert_eq!(shared_out(Pool::Queries, &[5u32], 4, |&i| i * 2), vec![10]);
    }

    #[test]
    fn a_panic_in_a_shared_out_item_reaches_the_caller() {
        let items: Vec<u32> = (0..16).collect();
        let caught = std::panic::catch_unwind(|| {
            shared_out(Pool::Queries, &items, 2, |&i| {
                std::thread::sleep(std::time::Duration::from_millis(1));
                assert!(i != 11, "item {i} fails");
            })
        });
        assert!(caught.is_err());
        // The pool still works afterwards.
        assert_eq!(shared_out(Pool::Queries, &items, 2, |&i| i), items);
    }

    #[test]
    fn helpers_are_the_cpus_after_the_callers_never_its_own() {
        let cpus = [0, 1, 2, 3];
        assert_eq!(others_after(&cpus, Some(1), 1), vec![2]);
        assert_eq!(others_after(&cpus, Some(1), 3), vec![2, 3, 0]);
        assert_eq!(others_after(&cpus, Some(1), 9), vec![2, 3, 0]);
        assert_eq!(others_after(&cpus, Some(3), 2), vec![0, 1]);
        assert_eq!(others_after(&cpus, Some(0), 0), Vec::<usize>::new());
        // A caller on a CPU the helpers do not cover, or on an unknown one.
        assert_eq!(others_after(&[2, 5], Some(3), 2), vec![1, 0]);
        assert_eq!(others_after(&[2, 5], None, 1), vec![0]);
        assert_eq!(others_after(&[2, 5], Some(5), 2), vec![0]);
    }

    /// A query's parts run on another CPU than the caller's: with the caller
    /// pinned to each CPU in turn, every item the pool ran was on a
    /// different CPU (a helper woken on the caller's CPU only takes turns
    /// with it).
    #[test]
    fn query_parts_run_beside_the_caller_not_on_its_cpu() {
        let allowed = cpus::allowed();
        if allowed.len() < 2 || pinned_helpers().is_empty() {
            return; // Nothing to spread over (or pinning is refused here).
        }
        for &cpu in allowed.iter().take(MAX_THREADS) {
            let (caller_id, ran) = std::thread::spawn(move || {
                assert!(cpus::pin_current_thread(cpu));
                let items: Vec<u32> = (0..16).collect();
                let ran = shared_out(Pool::Queries, &items, 2, |_| {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                    (std::thread::current().id(), cpus::current())
                });
                (std::thread::current().id(), ran)
            })
            .join()
            .unwrap();
            let helper_cpus: Vec<_> = ran.iter().filter(|(t, _)| *t != caller_id).collect();
            assert!(
                !helper_cpus.is_empty(),
                "caller on CPU {cpu} shared nothing out"
            );
            for (_, at) in helper_cpus {
                assert!(
                    at.is_some() && *at != Some(cpu),
                    "a part ran on the caller's CPU {cpu}"
                );
            }
        }
    }

    #[test]
    fn only_a_caller_that_entered_alone_is_alone() {
        let o = Occupancy::default();
        let first = o.enter();
        assert!(first.alone);
        {
            let second = o.enter();
            assert!(!second.alone, "the first is still in");
        }
        assert!(!o.enter().alone, "the first is still in");
        drop(first);
        assert!(o.enter().alone, "everyone left");
        let a = std::thread::scope(|s| s.spawn(|| o.enter().alone).join().unwrap());
        assert!(a);
    }

    #[test]
    fn a_panic_in_another_part_reaches_the_caller() {
        let items: Vec<u32> = (0..8).collect();
        let caught = std::panic::catch_unwind(|| {
            in_parts(Pool::Indexing, &items, 2, |first, _| {
                assert!(first == 0, "part at {first} fails");
            })
        });
        assert!(caught.is_err());
    }
}
