//! Which CPUs the process may run on, which one the calling thread is on,
//! and pinning a thread to one CPU: what [`crate::parallel`] needs to hand
//! a query's second half to a thread on a different CPU than the caller's.
//! On systems other than Linux nothing is known and nothing is pinned.

/// The CPUs this process may run on, in increasing order; empty when unknown.
pub(crate) fn allowed() -> Vec<usize> {
    imp::allowed()
}

/// The CPU the calling thread is running on right now, if known. It may
/// move at any moment: this is a hint for spreading work, nothing more.
pub(crate) fn current() -> Option<usize> {
    imp::current()
}

/// Restricts the calling thread to `cpu`. `false` if the system refused
/// (the thread then runs wherever the scheduler puts it).
pub(crate) fn pin_current_thread(cpu: usize) -> bool {
    imp::pin_current_thread(cpu)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::mem::{size_of, MaybeUninit};

    pub(super) fn allowed() -> Vec<usize> {
        let mut set = MaybeUninit::<libc::cpu_set_t>::zeroed();
        // SAFETY: `set` is a zeroed `cpu_set_t` (all-zero is a valid empty
        // set), and the size passed is its size, so the kernel writes within
        // it; pid 0 means the calling thread.
        let rc =
            unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), set.as_mut_ptr()) };
        if rc != 0 {
            return Vec::new();
        }
        // SAFETY: zero-initialised above and possibly filled in by the kernel:
        // either way a valid `cpu_set_t`.
        let set = unsafe { set.assume_init() };
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `CPU_ISSET` only reads the bit of `cpu` in `set`, and
            // `cpu` is below `CPU_SETSIZE`, the number of bits the set holds.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect()
    }

    pub(super) fn current() -> Option<usize> {
        // SAFETY: `sched_getcpu` takes no arguments and only returns a number
        // (or -1 with errno set).
        usize::try_from(unsafe { libc::sched_getcpu() }).ok()
    }

    pub(super) fn pin_current_thread(cpu: usize) -> bool {
        if cpu >= libc::CPU_SETSIZE as usize {
            return false;
        }
        let set = MaybeUninit::<libc::cpu_set_t>::zeroed();
        // SAFETY: all-zero is a valid empty `cpu_set_t`; `CPU_SET` sets the bit
        // of `cpu`, which is below `CPU_SETSIZE` (checked above); the kernel
        // reads `size_of::<cpu_set_t>()` bytes of the set; pid 0 means the
        // calling thread.
        unsafe {
            let mut set = set.assume_init();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub(super) fn allowed() -> Vec<usize> {
        Vec::new()
    }

    pub(super) fn current() -> Option<usize> {
        None
    }

    pub(super) fn pin_current_thread(_cpu: usize) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_pinned_to_an_allowed_cpu_runs_there() {
        let cpus = allowed();
        if cfg!(target_os = "linux") {
            assert!(!cpus.is_empty(), "Linux reports the allowed CPUs");
            assert!(cpus.windows(2).all(|w| w[0] < w[1]));
            assert!(current().is_some_and(|c| cpus.contains(&c)));
        }
        // Each allowed CPU in turn, in a thread of its own (pinning is for good).
        for &cpu in &cpus {
            let (pinned, now) = std::thread::spawn(move || (pin_current_thread(cpu), current()))
                .join()
                .unwrap();
            assert!(pinned, "pinning to allowed CPU {cpu}");
            assert_eq!(now, Some(cpu));
        }
        assert!(!pin_current_thread(usize::MAX));
    }
}
