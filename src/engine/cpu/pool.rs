//! The compute pool between parallel products: [`warm`] keeps its other threads polling for
//! work while a caller runs a loop of short products with serial work between them.
//!
//! Decoding is such a loop: each token runs about 60 parallel regions (the products, the
//! attention), separated by a few microseconds of serial work, and about 100 µs of it at each
//! token's end (the log-probability over the vocabulary, sampling, the embedding). rayon's
//! idle threads sleep after 32 rounds without work, and waking one takes tens of
//! microseconds. Measured over 200 f32 tokens on 2 threads (about 9,800 products): the other
//! thread joined a product 20-100 µs late 208-249 times a run; with the pollers, 1-13 times.
//! (It joined more than 100 µs late, or never, 23-151 times a run either way: the host not
//! running it, which no polling helps.) Per-token time, paired runs: 0.966x at f32, 0.984x
//! at f16, 0.978x at q8_0.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

thread_local! {
    /// Whether this thread is polling for [`warm`] (one poller per thread is enough).
    static POLLING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` on the current thread while every other thread of the current rayon pool polls
/// for work (running any product's tasks it finds) instead of sleeping, until `f` returns.
/// Outside a pool, or in a pool of one thread, it only runs `f`.
pub fn warm<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let others = rayon::current_num_threads().saturating_sub(1);
    let Some(owner) = rayon::current_thread_index() else {
        return f();
    };
    if others == 0 {
        return f();
    }
    let done = AtomicBool::new(false);
    rayon::scope(|s| {
        for _ in 0..others {
            s.spawn(|_| poll_until(&done, owner));
        }
        // Set even when `f` panics, so that the pollers end and the panic goes on.
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _done = Done(&done);
        f()
    })
}

/// Polls the pool for work until `done`: on the owner's own thread (which reaches the pollers
/// it spawned while waiting for its products' tasks) or on a thread already polling, returns
/// at once.
fn poll_until(done: &AtomicBool, owner: usize) {
    if rayon::current_thread_index() == Some(owner) || POLLING.get() {
        return;
    }
    POLLING.set(true);
    let mut idle = 0u32;
    while !done.load(Ordering::Acquire) {
        if let Some(rayon::Yield::Executed) = rayon::yield_now() {
            idle = 0;
            continue;
        }
        idle = idle.wrapping_add(1);
        if idle.is_multiple_of(256) {
            // Where the pool has more threads than the machine has cores, let them run.
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    POLLING.set(false);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn runs_the_work_and_its_products_on_every_pool_size() {
        for threads in [1, 2, 4] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let sum = pool.install(|| {
                warm(|| {
                    (0..200u64)
                        .map(|i| (0..10_000u64).into_par_iter().map(|j| i * j).sum::<u64>())
                        .sum::<u64>()
                })
            });
            let want: u64 = (0..200u64).map(|i| i * (10_000 * 9_999 / 2)).sum();
            assert_eq!(sum, want, "{threads} threads");
        }
        // Outside any pool the work runs as it is.
        assert_eq!(warm(|| 7), 7);
    }

    #[test]
    fn pollers_take_part_in_products_and_end_with_the_work() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let seen = std::sync::Mutex::new(std::collections::HashSet::new());
        pool.install(|| {
            warm(|| {
                for _ in 0..50 {
                    (0..64).into_par_iter().for_each(|_| {
                        std::thread::sleep(std::time::Duration::from_micros(200));
                        seen.lock().unwrap().insert(rayon::current_thread_index());
                    });
                }
            })
        });
        // Both threads ran tasks; and the pool is free again (a later job completes).
        assert_eq!(seen.lock().unwrap().len(), 2);
        assert_eq!(pool.install(|| (0..100).into_par_iter().sum::<i32>()), 4950);
    }

    #[test]
    fn a_panic_in_the_work_ends_the_pollers_and_reaches_the_caller() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.install(|| warm(|| panic!("in the work")))
        }));
        assert!(r.is_err());
        assert_eq!(pool.install(|| warm(|| 3)), 3);
    }
}
