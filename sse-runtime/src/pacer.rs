//! Work put off to a moment soon, run on a thread of its own (`sse-pacer`): the wakes a group
//! puts off when its events come faster than its batch window
//! ([`Config::batch_window`](crate::Config::batch_window)), so that they share writes.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    sync::{Condvar, Mutex, OnceLock, PoisonError},
    time::Instant,
};

/// What is put off, and when it runs.
pub(crate) type Work = Box<dyn FnOnce() + Send>;

/// Runs `work` at `at`, or at once if the thread could not be started (a wake then comes as
/// early as it would without a window: nothing is lost).
pub(crate) fn at(at: Instant, work: Work) {
    match pacer() {
        Some(pacer) => pacer.put_off(at, work),
        None => work(),
    }
}

#[derive(Default)]
struct Pacer {
    due: Mutex<Due>,
    changed: Condvar,
}

/// The work put off, soonest first.
#[derive(Default)]
struct Due {
    heap: BinaryHeap<Reverse<Entry>>,
    /// Tells apart work due at the same instant, which runs in the order it was put off.
    next: u64,
}

struct Entry {
    at: Instant,
    order: u64,
    work: Work,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Entry {}

fn pacer() -> Option<&'static Pacer> {
    static PACER: OnceLock<Option<&'static Pacer>> = OnceLock::new();
    *PACER.get_or_init(|| {
        let pacer: &'static Pacer = Box::leak(Box::default());
        std::thread::Builder::new()
            .name("sse-pacer".into())
            .spawn(|| pacer.run())
            .inspect_err(|error| {
                tracing::warn!(%error, "pacer thread not started: wakes are not put off");
            })
            .ok()
            .map(|_| pacer)
    })
}

impl Pacer {
    fn put_off(&self, at: Instant, work: Work) {
        let mut due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        let order = due.next;
        due.next += 1;
        let sooner = due.heap.peek().map_or(true, |Reverse(first)| at < first.at);
        due.heap.push(Reverse(Entry { at, order, work }));
        drop(due);
        if sooner {
            self.changed.notify_one();
        }
    }

    fn run(&self) {
        let mut due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let Some(at) = due.heap.peek().map(|Reverse(first)| first.at) else {
                due = self
                    .changed
                    .wait(due)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            };
            let now = Instant::now();
            if at > now {
                due = (self.changed.wait_timeout(due, at - now))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            }
            let work = due.heap.pop().map(|Reverse(first)| first.work);
            // Run unlocked: the work takes a group's locks, and publishes put off more.
            drop(due);
            // A panic would end the thread, and every wake put off after it with it.
            let ran = work.map(|work| std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)));
            if let Some(Err(_)) = ran {
                tracing::error!("work put off panicked");
            }
            due = self.due.lock().unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{sync::mpsc, time::Duration};

    #[test]
    fn work_runs_in_the_order_of_its_instants_not_of_its_putting_off() {
        let (sent, received) = mpsc::channel();
        let now = Instant::now();
        for (label, after_ms) in [("third", 30), ("first", 10), ("second", 20)] {
            let sent = sent.clone();
            at(
                now + Duration::from_millis(after_ms),
                Box::new(move || sent.send(label).unwrap()),
            );
        }
        let order: Vec<_> = (0..3)
            .map(|_| received.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(order, ["first", "second", "third"]);
    }
}
