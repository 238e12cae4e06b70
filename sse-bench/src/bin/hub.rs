//! The hub alone, without sockets or a runtime: how reading and publishing scale from one thread
//! to two, and, built with the `lock-timing` feature, how long each delivery and each publish
//! waits for and holds the registry's locks.
//!
//! ```text
//! cargo run --release -p sse-bench --bin sse-bench-hub [-- ROUNDS [TEXT]]
//! cargo run --release -p sse-bench --bin sse-bench-hub --features lock-timing [-- ROUNDS [TEXT]]
//! ```
//!
//! Reading: 10,000 subscriptions (of one group, or of a group each) get events published, then
//! reader threads drain them, taking 50 subscriptions at a time until none is left; in passes,
//! the first reader publishing the next pass's events (untimed) while the others wait.
//! Publishing: each thread publishes to its own groups (or all to one), in passes between which
//! the groups' subscribers are read (untimed).
//! Threads wait for each other spinning, not sleeping: a virtual core that sleeps takes a while
//! to come back, which would measure the hypervisor. First, as a ceiling for the ratios, the
//! machine alone: two threads that share nothing.
//!
//! A round measures a workload with one thread then two, each time on a fresh hub. Each workload
//! gets ROUNDS rounds (default 5): a round during which other processes used more than a tenth
//! of a core is run again, up to three times ROUNDS in all, and the quietest are kept. TEXT
//! keeps only the workloads whose names hold it (`"one group"`, `held`, …; the machine's
//! always run). It prints Markdown
//! tables: the median round with the slowest and fastest; the CPU time of the working threads
//! per operation (steadier than rates on a shared machine: it leaves out the time spent waiting
//! for a core); each round's two-thread rate over its one-thread rate; and the CPU other
//! processes used meanwhile. Lock times cost three clock reads per lock taken, so take rates from
//! the build without them.

use std::{
    sync::{
        atomic::{
            AtomicU64, AtomicUsize,
            Ordering::{AcqRel, Acquire, Relaxed, Release},
        },
        Mutex,
    },
    task::{Context, Poll},
    thread,
    time::{Duration, Instant},
};

use futures_util::{task::noop_waker_ref, StreamExt};
use sse::{Config, GroupName, Hub, LastEventId, Subscription};

/// The streams of every reading workload: the fan-out size of `scripts/bench`.
const SUBSCRIBERS: usize = 10_000;
/// How many subscriptions a reader takes at a time.
const SLICE: usize = 50;

/// An event's data: 100 bytes, as the load generator of `scripts/bench` publishes.
const DATA: &str = "0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop";

/// Passes of the publishing workloads; between passes (untimed) the subscribers are read.
const PUBLISH_PASSES: usize = 50;

/// Events already published, then read: `passes` times, `events` to each of `groups`, after
/// which reader threads drain every subscription (the `SUBSCRIBERS` spread over the groups).
struct Reading {
    name: &'static str,
    groups: usize,
    events: usize,
    passes: usize,
}

const READING: &[Reading] = &[
    Reading {
        name: "one group of 10,000: 200 events, then read; × 20",
        groups: 1,
        events: 200,
        passes: 20,
    },
    Reading {
        name: "10,000 groups of 1: 20 events each, then read; × 25",
        groups: SUBSCRIBERS,
        events: 20,
        passes: 25,
    },
    Reading {
        name: "one group of 10,000: 1 event, then read; × 400",
        groups: 1,
        events: 1,
        passes: 400,
    },
    Reading {
        name: "10,000 groups of 1: 1 event each, then read; × 300",
        groups: SUBSCRIBERS,
        events: 1,
        passes: 300,
    },
];

/// Threads publishing `publishes` events each per pass, in turn to each of their groups.
struct Publishing {
    name: &'static str,
    /// Events each thread publishes per pass.
    publishes: usize,
    /// Groups each thread publishes to.
    groups: usize,
    /// Every thread publishes to the same groups, not to groups of its own.
    shared: bool,
    /// Subscribers of each group: with any, its events are stored and they are woken.
    subscribers: usize,
}

const PUBLISHING: &[Publishing] = &[
    Publishing {
        name: "100 groups per thread, each held by a subscriber",
        publishes: 10_000,
        groups: 100,
        shared: false,
        subscribers: 1,
    },
    Publishing {
        name: "100 groups per thread, nobody subscribed",
        publishes: 10_000,
        groups: 100,
        shared: false,
        subscribers: 0,
    },
    Publishing {
        name: "one group for all threads, held by a subscriber",
        publishes: 10_000,
        groups: 1,
        shared: true,
        subscribers: 1,
    },
    Publishing {
        name: "one group per thread, held by 1,000 subscribers",
        publishes: 200,
        groups: 1,
        shared: false,
        subscribers: 1_000,
    },
];

/// One measurement: operations (deliveries or publishes), the wall time they took, the CPU
/// time of the threads doing them, and the locks' totals over it.
struct Measured {
    ops: u64,
    wall: Duration,
    cpu: Duration,
    locks: Vec<LockTime>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.wall.as_secs_f64()
    }

    fn cpu_ns(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.ops as f64
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds = match args.next().map(|arg| arg.parse::<usize>()) {
        None => 5,
        Some(Ok(rounds)) if rounds > 0 => rounds,
        Some(_) => {
            eprintln!(
                "usage: sse-bench-hub [ROUNDS [TEXT]]   (TEXT: only workloads named with it)"
            );
            std::process::exit(2);
        }
    };
    let only = args.next().unwrap_or_default();
    // A thread that panics would leave the others spinning at their barrier: end the process.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |panic| {
        report(panic);
        std::process::exit(101);
    }));
    println!("Rounds: {rounds}. Cores: {}.", cores());
    if cfg!(feature = "lock-timing") {
        println!(
            "Lock timing on; one clock read costs {:.0} ns here.",
            clock_read_ns()
        );
    }
    let machine: Vec<Compared> = MACHINE
        .iter()
        .map(|w| compare(w.name, rounds, |threads| alone(w, threads)))
        .collect();
    print_rates("The machine, no hub", &machine);
    let reading: Vec<Compared> = READING
        .iter()
        .filter(|w| w.name.contains(&only))
        .map(|w| compare(w.name, rounds, |threads| read(w, threads)))
        .collect();
    print_rates("Reading: deliveries", &reading);
    let publishing: Vec<Compared> = PUBLISHING
        .iter()
        .filter(|w| w.name.contains(&only))
        .map(|w| compare(w.name, rounds, |threads| publish(w, threads)))
        .collect();
    print_rates("Publishing: events", &publishing);
    if cfg!(feature = "lock-timing") {
        print_locks(
            "delivery",
            &reading,
            &["ring read", "ring write", "members"],
        );
        print_locks("publish", &publishing, &["shard", "ring write", "members"]);
    }
}

/// The machine alone, as a ceiling for the hub's ratios: how far two threads that share nothing
/// scale here, now, at arithmetic and at copying (as a read copies events into its chunk).
struct Alone {
    name: &'static str,
    /// Operations per thread.
    ops: u64,
    /// One thread's work: so many operations.
    work: fn(u64),
}

const MACHINE: &[Alone] = &[
    Alone {
        name: "atomic adds, each thread to a counter of its own",
        ops: 50_000_000,
        work: add,
    },
    Alone {
        name: "16 KiB copies, each thread between its own buffers",
        ops: 500_000,
        work: copy,
    },
];

fn add(times: u64) {
    let counter = AtomicU64::new(0);
    for _ in 0..times {
        counter.fetch_add(1, Relaxed);
    }
}

fn copy(times: u64) {
    let (from, mut to) = (vec![1u8; 16 << 10], vec![0u8; 16 << 10]);
    for _ in 0..times {
        to.copy_from_slice(std::hint::black_box(&from));
        std::hint::black_box(&mut to);
    }
}

fn alone(workload: &Alone, threads: usize) -> Measured {
    let (wall, cpu) = on_threads(vec![(); threads], |_, (), barrier| {
        pass(barrier, || (workload.work)(workload.ops))
    });
    Measured {
        ops: workload.ops * threads as u64,
        wall,
        cpu,
        locks: Vec::new(),
    }
}

/// A hub whose subscriptions are polled by hand: no keep-alive timers, no runtime.
fn hub(config: Config) -> Hub {
    Hub::new(config.keep_alive(None).retry(None))
}

fn group(name: String) -> GroupName {
    GroupName::new(name).expect("a valid group name")
}

fn subscribe(hub: &Hub, group: &GroupName) -> Subscription {
    let mut subscription = hub
        .subscribe([group.clone()], &LastEventId::default())
        .expect("room for every subscription");
    // Its first chunk is where the stream starts; reading it also registers the waker.
    drain(&mut subscription);
    subscription
}

/// Reads everything the subscription has for now.
fn drain(subscription: &mut Subscription) {
    let mut cx = Context::from_waker(noop_waker_ref());
    loop {
        match subscription.poll_next_unpin(&mut cx) {
            Poll::Ready(Some(chunk)) => drop(std::hint::black_box(chunk)),
            Poll::Ready(None) => panic!("a subscription ended: was it cut for lagging?"),
            Poll::Pending => return,
        }
    }
}

fn read(workload: &Reading, threads: usize) -> Measured {
    // Each group's ring holds one pass of its events, as the readers leave it.
    let hub = hub(Config::default()
        .max_streams(SUBSCRIBERS)
        .history(workload.events, Duration::from_secs(3600))
        .subscriber_queue(workload.events));
    let groups: Vec<GroupName> = (0..workload.groups)
        .map(|g| group(format!("g{g}")))
        .collect();
    let mut subscriptions: Vec<Subscription> = (0..SUBSCRIBERS)
        .map(|i| subscribe(&hub, &groups[i % groups.len()]))
        .collect();
    let delivered = hub.stats().delivered;
    let locks = lock_times();
    // Readers take the subscriptions a slice at a time, the first from the front, the second
    // from the back: both finish together (with fixed halves, a pass lasted as long as the
    // slower half), and each reads mostly the same subscriptions pass after pass, as a
    // runtime's worker keeps its tasks.
    let slices: Vec<Mutex<&mut [Subscription]>> =
        subscriptions.chunks_mut(SLICE).map(Mutex::new).collect();
    let untaken = Untaken::new(slices.len());
    let (wall, cpu) = on_threads(vec![(); threads], |index, (), barrier| {
        let (mut wall, mut cpu) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..workload.passes {
            // Published before the pass, by one of the readers (the others wait): untimed.
            if index == 0 {
                for group in &groups {
                    for _ in 0..workload.events {
                        hub.publish(group.as_str(), None, DATA).expect("published");
                    }
                }
                untaken.reset();
            }
            let (pass_wall, pass_cpu) = pass(barrier, || {
                while let Some(slice) = untaken.take(index == 1).map(|i| &slices[i]) {
                    let mut slice = slice.lock().expect("a reader panicked");
                    slice.iter_mut().for_each(drain);
                }
            });
            wall += pass_wall;
            cpu += pass_cpu;
        }
        (wall, cpu)
    });
    let ops = (workload.passes * workload.events * SUBSCRIBERS) as u64;
    assert_eq!(
        hub.stats().delivered - delivered,
        ops,
        "every event reached every subscriber"
    );
    Measured {
        ops,
        wall,
        cpu,
        locks: since(&locks),
    }
}

fn publish(workload: &Publishing, threads: usize) -> Measured {
    // Each group's ring holds one pass of its events: after the first pass it is as full as it
    // stays, and its subscribers, read between passes, never fall behind.
    let sharing = if workload.shared { threads } else { 1 };
    let per_pass = workload.publishes * sharing / workload.groups;
    let hub = hub(Config::default()
        .history(per_pass, Duration::from_secs(3600))
        .subscriber_queue(per_pass));
    let shares: Vec<(Vec<String>, Vec<Subscription>)> = (0..threads)
        .map(|t| {
            let owner = if workload.shared { 0 } else { t };
            let names: Vec<String> = (0..workload.groups)
                .map(|g| format!("t{owner}.g{g}"))
                .collect();
            if owner != t {
                return (names, Vec::new());
            }
            let mut subscriptions: Vec<Subscription> = names
                .iter()
                .flat_map(|name| (0..workload.subscribers).map(|_| group(name.clone())))
                .map(|name| subscribe(&hub, &name))
                .collect();
            // Fill the rings first, so that every publish measured also drops the oldest event.
            for name in &names {
                for _ in 0..per_pass {
                    hub.publish(name, None, DATA).expect("published");
                }
            }
            subscriptions.iter_mut().for_each(drain);
            (names, subscriptions)
        })
        .collect();
    let published = hub.stats().published;
    let locks = lock_times();
    let (wall, cpu) = on_threads(shares, |_, (names, mut subscriptions), barrier| {
        let mut next = names.iter().cycle();
        let (mut wall, mut cpu) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..PUBLISH_PASSES {
            let (pass_wall, pass_cpu) = pass(barrier, || {
                for name in next.by_ref().take(workload.publishes) {
                    hub.publish(name, None, DATA).expect("published");
                }
            });
            wall += pass_wall;
            cpu += pass_cpu;
            subscriptions.iter_mut().for_each(drain);
        }
        (wall, cpu)
    });
    let ops = (workload.publishes * PUBLISH_PASSES * threads) as u64;
    assert_eq!(hub.stats().published - published, ops);
    assert_eq!(hub.stats().dropped, 0, "no subscriber was cut");
    Measured {
        ops,
        wall,
        cpu,
        locks: since(&locks),
    }
}

/// The slices of a pass not taken yet: `front << 32 | back`.
struct Untaken {
    cursors: AtomicU64,
    slices: u64,
}

impl Untaken {
    fn new(slices: usize) -> Self {
        let slices = slices as u64;
        Self {
            cursors: AtomicU64::new(slices),
            slices,
        }
    }

    /// Every slice untaken again, for the next pass.
    fn reset(&self) {
        self.cursors.store(self.slices, Relaxed);
    }

    /// The index of the first untaken slice, or of the last one if `from_back`.
    fn take(&self, from_back: bool) -> Option<usize> {
        let mut taken = None;
        let _ = self.cursors.fetch_update(Relaxed, Relaxed, |cursors| {
            let (front, back) = (cursors >> 32, cursors & u64::from(u32::MAX));
            taken = (front < back).then(|| if from_back { back - 1 } else { front });
            match (taken, from_back) {
                (None, _) => None,
                (Some(_), true) => Some(front << 32 | (back - 1)),
                (Some(_), false) => Some((front + 1) << 32 | back),
            }
        });
        taken.map(|index| index as usize)
    }
}

/// Runs `work` on a thread per share, all at once. Each returns its wall and CPU time; the
/// result is the longest wall time and the CPU time of all.
fn on_threads<T: Send>(
    shares: Vec<T>,
    work: impl Fn(usize, T, &SpinBarrier) -> (Duration, Duration) + Sync,
) -> (Duration, Duration) {
    let barrier = SpinBarrier::new(shares.len());
    thread::scope(|scope| {
        let threads: Vec<_> = shares
            .into_iter()
            .enumerate()
            .map(|(index, share)| {
                let (work, barrier) = (&work, &barrier);
                scope.spawn(move || work(index, share, barrier))
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().expect("a bench thread"))
            .fold((Duration::ZERO, Duration::ZERO), |(wall, cpu), (w, c)| {
                (wall.max(w), cpu + c)
            })
    })
}

/// Runs `work` when every thread is ready: the wall time until every thread has done its work,
/// and the CPU time this thread spent on it.
fn pass(barrier: &SpinBarrier, work: impl FnOnce()) -> (Duration, Duration) {
    barrier.wait();
    let (start, start_cpu) = (Instant::now(), thread_cpu());
    work();
    let cpu = thread_cpu() - start_cpu;
    barrier.wait();
    (start.elapsed(), cpu)
}

/// A barrier that spins rather than sleeps: a virtual core that sleeps between passes takes
/// its time to come back, and that would measure the hypervisor, not the hub.
struct SpinBarrier {
    threads: usize,
    arrived: AtomicUsize,
    /// How many times every thread arrived.
    generation: AtomicUsize,
}

impl SpinBarrier {
    fn new(threads: usize) -> Self {
        Self {
            threads,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
        }
    }

    fn wait(&self) {
        let generation = self.generation.load(Acquire);
        if self.arrived.fetch_add(1, AcqRel) + 1 == self.threads {
            self.arrived.store(0, Relaxed);
            self.generation.fetch_add(1, Release);
        } else {
            while self.generation.load(Acquire) == generation {
                std::hint::spin_loop();
            }
        }
    }
}

/// A workload measured with one thread and with two, round after round.
struct Compared {
    name: &'static str,
    rounds: Vec<Round>,
    /// Rounds run to find them, noisy ones included.
    tried: usize,
}

struct Round {
    one: Measured,
    two: Measured,
    /// CPU time other processes used meanwhile, in cores.
    others: f64,
}

/// Other processes may use this much CPU during a round (in cores) before it is measured again:
/// two threads need both cores.
const QUIET: f64 = 0.1;

/// Measures `rounds` rounds, running up to three times as many while other processes are busy,
/// and keeps the quietest.
fn compare(name: &'static str, rounds: usize, measure: impl Fn(usize) -> Measured) -> Compared {
    eprintln!("{name}");
    let mut tried: Vec<Round> = Vec::new();
    let quiet = |tried: &[Round]| tried.iter().filter(|r| r.others <= QUIET).count();
    while quiet(&tried) < rounds && tried.len() < 3 * rounds {
        let (busy, start) = (others_busy(), Instant::now());
        let (one, two) = (measure(1), measure(2));
        // Clock ticks of the machine against nanoseconds of this process: never below zero.
        let others = (others_busy() - busy).max(0.0) / start.elapsed().as_secs_f64();
        tried.push(Round { one, two, others });
    }
    let run = tried.len();
    tried.sort_by(|a, b| a.others.total_cmp(&b.others));
    tried.truncate(rounds);
    Compared {
        name,
        rounds: tried,
        tried: run,
    }
}

fn print_rates(what: &str, workloads: &[Compared]) {
    println!("\n| {what} | 1 thread: per s | CPU ns each | 2 threads: per s | CPU ns each | 2 ÷ 1 threads, per round | other processes, cores (rounds run) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for w in workloads {
        let rate = |threads: fn(&Round) -> &Measured| {
            spread(w.rounds.iter().map(|r| threads(r).rate()), count)
        };
        let cpu = |threads: fn(&Round) -> &Measured| {
            let each = w.rounds.iter().map(|r| threads(r).cpu_ns());
            spread(each, |ns| format!("{ns:.0}"))
        };
        let ratios = w.rounds.iter().map(|r| r.two.rate() / r.one.rate());
        let others = w.rounds.iter().map(|r| r.others);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} ({}) |",
            w.name,
            rate(|r| &r.one),
            cpu(|r| &r.one),
            rate(|r| &r.two),
            cpu(|r| &r.two),
            spread(ratios, |r| format!("{r:.2}")),
            spread(others, |c| format!("{c:.2}")),
            w.tried,
        );
    }
}

/// Per operation, the locks `kinds` of each workload: how often taken, and median nanoseconds
/// waited for and held.
fn print_locks(op: &str, workloads: &[Compared], kinds: &[&str]) {
    println!("\n| per {op} | threads | lock | taken | ns waited | ns held |");
    println!("|---|---:|---|---:|---:|---:|");
    for w in workloads {
        let one: Vec<&Measured> = w.rounds.iter().map(|r| &r.one).collect();
        let two: Vec<&Measured> = w.rounds.iter().map(|r| &r.two).collect();
        for (threads, all) in [(1, &one), (2, &two)] {
            for &kind in kinds {
                let per_op = |value: fn(&LockTime) -> u64| {
                    all.iter().map(move |m| {
                        let lock = m.locks.iter().find(|lock| lock.lock == kind);
                        lock.map_or(0, value) as f64 / m.ops as f64
                    })
                };
                let fraction = |x: f64| format!("{x:.3}");
                let ns = |x: f64| format!("{x:.1}");
                println!(
                    "| {} | {threads} | {kind} | {} | {} | {} |",
                    w.name,
                    spread(per_op(|l| l.taken), fraction),
                    spread(per_op(|l| l.waited_ns), ns),
                    spread(per_op(|l| l.held_ns), ns),
                );
            }
        }
    }
}

/// The median, and the range when there is one.
fn spread(values: impl Iterator<Item = f64>, show: impl Fn(f64) -> String) -> String {
    let mut values: Vec<f64> = values.collect();
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    match (values.first(), values.last()) {
        (Some(&low), Some(&high)) if low < high => {
            format!("{} ({}–{})", show(median), show(low), show(high))
        }
        _ => show(median),
    }
}

fn count(per_sec: f64) -> String {
    match per_sec {
        x if x >= 1e6 => format!("{:.2} M", x / 1e6),
        x => format!("{:.0} k", x / 1e3),
    }
}

/// The CPU time the calling thread used so far.
fn thread_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the kernel to fill in.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// CPU seconds the whole machine spent busy, less this process's: what other processes used.
fn others_busy() -> f64 {
    // SAFETY: sysconf only reads a constant.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // The first line sums every core: user nice system idle iowait irq softirq steal …
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    let idle = ticks.get(3).unwrap_or(&0) + ticks.get(4).unwrap_or(&0);
    let busy = ticks.iter().take(8).sum::<u64>() - idle;
    busy as f64 / ticks_per_sec - process_cpu().as_secs_f64()
}

/// The CPU time every thread of this process used so far.
fn process_cpu() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for the kernel to fill in.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut now) };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

fn cores() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
}

/// What one `Instant::now()` costs: lock times include about one.
fn clock_read_ns() -> f64 {
    const READS: u32 = 1_000_000;
    let start = Instant::now();
    for _ in 0..READS {
        std::hint::black_box(Instant::now());
    }
    start.elapsed().as_nanos() as f64 / f64::from(READS)
}

/// One lock's totals, from `sse::__private::lock_totals` (the `lock-timing` feature).
#[derive(Clone, Copy)]
struct LockTime {
    lock: &'static str,
    taken: u64,
    waited_ns: u64,
    held_ns: u64,
}

#[cfg(feature = "lock-timing")]
fn lock_times() -> Vec<LockTime> {
    sse::__private::lock_totals()
        .iter()
        .map(|t| LockTime {
            lock: t.lock,
            taken: t.taken,
            waited_ns: t.waited_ns,
            held_ns: t.held_ns,
        })
        .collect()
}

/// Without the `lock-timing` feature the locks are not timed.
#[cfg(not(feature = "lock-timing"))]
fn lock_times() -> Vec<LockTime> {
    Vec::new()
}

/// What the locks took since `before`.
fn since(before: &[LockTime]) -> Vec<LockTime> {
    lock_times()
        .into_iter()
        .zip(before)
        .map(|(now, before)| LockTime {
            taken: now.taken - before.taken,
            waited_ns: now.waited_ns - before.waited_ns,
            held_ns: now.held_ns - before.held_ns,
            ..now
        })
        .collect()
}
