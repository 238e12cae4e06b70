//! `sse-bench`: `sse` side by side with the dedicated SSE servers, on loopback, in one run.
//!
//! ```text
//! sse-bench quick [--out DIR]            seconds: sse, the axum baseline and the floor, small N;
//!                                        fails unless every event reached every subscriber
//! sse-bench full [--out DIR] [--only WORKLOAD,..] [--fanout N,..] [--rounds N]
//!                [--deliveries N] [--pin] [SYSTEM..]
//!                                        every workload at full size against every system
//!                                        (peers started with ../shared/peers/peer; sse@PATH
//!                                        is another build of our server, to compare two;
//!                                        --rounds: fan-out rounds, the median reported;
//!                                        --deliveries: about that many per round (400,000);
//!                                        --pin: the servers on every core but the last, this
//!                                        program on the last)
//! sse-bench floor ADDR                   the no-HTTP floor server (the runner starts it)
//! sse-bench soak [--minutes N] [--healthy N] [--groups N] [--rate N] [--stalled N]
//!                [--hostile N] [--churners N] [--out DIR]
//!                                        our server under healthy, stalled, churning and
//!                                        hostile clients for N minutes (10), its RSS sampled;
//!                                        fails if a healthy client lost an event
//! sse-bench restart [--clients N] [--groups N] [--rate N] [--retry-ms N] [--before S]
//!                   [--after S] [--forget-ids] [--out DIR] [sse] [nchan-redis]
//!                                        a rolling restart under load: two processes on one
//!                                        Redis, one killed and started again (our server needs
//!                                        the `redis` feature); fails if a client of sse missed
//!                                        or repeated an event
//! ```
//!
//! It prints one table per workload and writes `report.md`, `results.json` and `fanout.svg`
//! to the output directory (default `target/bench`).

mod client;
mod floor;
mod http1;
mod report;
mod restart;
mod scan;
mod soak;
mod systems;
mod workloads;

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use report::SystemResult;
use workloads::Sizes;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, rest) = args
        .split_first()
        .map_or(("", &[][..]), |(m, r)| (m.as_str(), r));
    match mode {
        "floor" if rest.len() == 1 => match floor::serve(&rest[0]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
        "soak" => match soak::Sizes::parse(rest) {
            Ok((sizes, out)) => soak::run(&sizes, &out.unwrap_or_else(default_out)),
            Err(e) => fail(&e),
        },
        "restart" => match restart::Sizes::parse(rest) {
            Ok((sizes, out, systems)) => {
                restart::run(&sizes, &out.unwrap_or_else(default_out), &systems)
            }
            Err(e) => fail(&e),
        },
        "quick" | "full" => {
            let Options {
                out,
                names,
                only,
                fanout,
                rounds,
                deliveries,
                pin,
            } = options(rest);
            let quick = mode == "quick";
            let names = match names {
                Some(names) => names,
                None if quick => systems::QUICK.iter().map(|s| s.to_string()).collect(),
                None => systems::ALL.iter().map(|s| s.to_string()).collect(),
            };
            let mut sizes = if quick { Sizes::quick() } else { Sizes::full() };
            if let Some(only) = only {
                if let Err(e) = sizes.only(&only) {
                    return fail(&e);
                }
            }
            if let Some(fanout) = fanout {
                match fanout.split(',').map(str::parse).collect() {
                    Ok(counts) => sizes.fanout_subscribers = counts,
                    Err(e) => return fail(&format!("--fanout {fanout}: {e}")),
                }
            }
            match (count("--rounds", rounds), count("--deliveries", deliveries)) {
                (Err(e), _) | (_, Err(e)) => return fail(&e),
                (Ok(rounds), Ok(deliveries)) => {
                    sizes.fanout_rounds = rounds.map_or(sizes.fanout_rounds, |n| n as usize);
                    sizes.fanout_deliveries = deliveries.unwrap_or(sizes.fanout_deliveries);
                }
            }
            if pin {
                match systems::pin() {
                    Ok(split) => eprintln!("{split}"),
                    Err(e) => return fail(&e),
                }
            }
            run(&names, &sizes, &out, quick)
        }
        _ => {
            eprintln!(
                "usage: sse-bench quick|full [--out DIR] [--only W,..] [--fanout N,..] [--rounds N] [--deliveries N] [--pin] [SYSTEM..]   (systems: {})\n       sse-bench soak [--minutes N] [--out DIR] ...\n       sse-bench restart [--clients N] [--out DIR] [sse] [nchan-redis] ...",
                systems::ALL.join(" ")
            );
            ExitCode::from(2)
        }
    }
}

/// The count an option gave, if it was given: a whole number above 0.
fn count(option: &str, value: Option<String>) -> Result<Option<u64>, String> {
    value
        .map(|value| match value.parse() {
            Ok(count) if count > 0 => Ok(count),
            _ => Err(format!("{option} {value}: not a count above 0")),
        })
        .transpose()
}

fn fail(why: &str) -> ExitCode {
    eprintln!("sse-bench: {why}");
    ExitCode::FAILURE
}

struct Options {
    out: PathBuf,
    /// The systems asked for, if any.
    names: Option<Vec<String>>,
    /// The workloads asked for, if not all.
    only: Option<String>,
    /// The fan-out sizes asked for, if not the mode's.
    fanout: Option<String>,
    /// How many fan-out rounds, if not the mode's.
    rounds: Option<String>,
    /// About how many deliveries a fan-out round makes, if not the mode's.
    deliveries: Option<String>,
    /// The servers on every core but the last, this program on the last (`--pin`).
    pin: bool,
}

/// Where results go unless `--out` says otherwise.
fn default_out() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench"))
}

fn options(args: &[String]) -> Options {
    let mut out = default_out();
    let (mut names, mut only, mut fanout) = (Vec::new(), None, None);
    let (mut rounds, mut deliveries, mut pin) = (None, None, false);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => out = args.next().map(PathBuf::from).unwrap_or(out),
            "--only" => only = args.next().cloned(),
            "--fanout" => fanout = args.next().cloned(),
            "--rounds" => rounds = args.next().cloned(),
            "--deliveries" => deliveries = args.next().cloned(),
            "--pin" => pin = true,
            name => names.push(name.to_owned()),
        }
    }
    Options {
        out,
        names: (!names.is_empty()).then_some(names),
        only,
        fanout,
        rounds,
        deliveries,
        pin,
    }
}

fn run(names: &[String], sizes: &Sizes, out: &std::path::Path, quick: bool) -> ExitCode {
    if let Err(e) = raise_open_files_limit() {
        return fail(&e);
    }
    if let Err(e) = std::fs::create_dir_all(out) {
        return fail(&format!("{}: {e}", out.display()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let mut results = Vec::new();
    for name in names {
        eprintln!("== {name}");
        let result = runtime.block_on(measure(name, sizes, out));
        for error in &result.errors {
            eprintln!("   {name}: {error}");
        }
        results.push(result);
    }
    let tables = report::tables(&results);
    println!("{tables}");
    let json = serde_json::to_string_pretty(&results).expect("results serialize");
    let written = std::fs::write(out.join("report.md"), &tables)
        .and_then(|()| std::fs::write(out.join("results.json"), json))
        .map_err(|e| e.to_string())
        .and_then(|()| report::chart(&results, &out.join("fanout.svg")));
    if let Err(e) = written {
        return fail(&format!("writing the results to {}: {e}", out.display()));
    }
    eprintln!(
        "wrote report.md, results.json and fanout.svg to {}",
        out.display()
    );
    let incomplete: Vec<&str> = results
        .iter()
        .filter(|r| !r.errors.is_empty() || !r.delivered_everything())
        .map(|r| r.name.as_str())
        .collect();
    if quick && !incomplete.is_empty() {
        return fail(&format!(
            "not every event reached every subscriber on: {}",
            incomplete.join(", ")
        ));
    }
    ExitCode::SUCCESS
}

/// Every workload against one system, each on what the previous one left: capacity and churn
/// first on a fresh server, then fan-out (the largest fan-out's streams also serve latency),
/// then many groups.
async fn measure(name: &str, sizes: &Sizes, out: &std::path::Path) -> SystemResult {
    let mut result = SystemResult {
        name: name.to_owned(),
        ..SystemResult::default()
    };
    let system = match systems::start(name, out) {
        Ok(system) => system,
        Err(e) => {
            result.errors.push(format!("could not start: {e}"));
            return result;
        }
    };
    let shared = client::Shared::new();
    if !sizes.capacity.is_empty() {
        let (capacity, error) =
            workloads::capacity(&system, &shared, sizes, (&sizes.capacity, None)).await;
        result.capacity = capacity;
        result
            .errors
            .extend(error.map(|e| format!("capacity: {e}")));
    }
    if sizes.churn_cycles > 0 {
        result.churn = Some(workloads::churn(&system, &shared, sizes).await);
    }

    let mut latency_done = false;
    for &n in &sizes.fanout_subscribers {
        let subscribers = fan_out(&mut result, &system, &shared, sizes, (n, None)).await;
        if n == sizes.latency_subscribers && sizes.latency_events > 0 && !subscribers.is_empty() {
            latency_done = true;
            let group = format!("fan{n}");
            record_latency(&mut result, &system, &shared, &subscribers, &group, sizes).await;
        }
    }
    if !latency_done && sizes.latency_events > 0 {
        let n = sizes.latency_subscribers;
        let (subscribers, error) = workloads::open(
            &system,
            &shared,
            n,
            |_| "lat".to_owned(),
            sizes.patience,
            None,
        )
        .await;
        result.errors.extend(error.map(|e| format!("latency: {e}")));
        if !subscribers.is_empty() {
            record_latency(&mut result, &system, &shared, &subscribers, "lat", sizes).await;
        }
    }
    if sizes.group_events > 0 || sizes.batch_events > 0 {
        match workloads::many_groups(&system, &shared, sizes, &mut result.errors).await {
            Ok((over_http, in_process)) => {
                result.groups = over_http;
                result.groups_in_process = in_process;
            }
            Err(e) => result.errors.push(format!("many groups: {e}")),
        }
    }
    if sizes.page_clients > 0 && system.page.is_some() {
        match workloads::pages(&system, sizes).await {
            Ok(pages) => result.pages = pages,
            Err(e) => result.errors.push(format!("pages: {e}")),
        }
    }
    let after_page = !sizes.after_page_capacity.is_empty() || !sizes.after_page_fanout.is_empty();
    let system = match (after_page, system.page.is_some()) {
        // Streams opened after a page, on a server of their own, so its memory starts afresh.
        (true, true) => {
            system.stop();
            match systems::start(name, out) {
                Ok(system) => system,
                Err(e) => {
                    result.errors.push(format!("could not start again: {e}"));
                    return result;
                }
            }
        }
        _ => return stopped(system, result),
    };
    let page = system.page.clone();
    if !sizes.after_page_capacity.is_empty() {
        let counts = (&sizes.after_page_capacity[..], page.as_ref());
        let (capacity, error) = workloads::capacity(&system, &shared, sizes, counts).await;
        result.capacity_after_page = capacity;
        result
            .errors
            .extend(error.map(|e| format!("capacity after a page: {e}")));
    }
    for &n in &sizes.after_page_fanout {
        fan_out(&mut result, &system, &shared, sizes, (n, page.as_ref())).await;
    }
    stopped(system, result)
}

fn stopped(system: systems::Running, result: SystemResult) -> SystemResult {
    system.stop();
    result
}

/// Opens `n` streams of one group (each after loading `page` on its connection, if given) and
/// fans out to them; returns them, to be measured further.
async fn fan_out(
    result: &mut SystemResult,
    system: &systems::Running,
    shared: &Arc<client::Shared>,
    sizes: &Sizes,
    (n, page): (usize, Option<&client::Url>),
) -> Vec<client::Subscriber> {
    let (group, what, results) = match page {
        None => (
            format!("fan{n}"),
            format!("fan-out to {n}"),
            &mut result.fanout,
        ),
        Some(_) => (
            format!("page{n}"),
            format!("fan-out to {n} after a page"),
            &mut result.fanout_after_page,
        ),
    };
    let (subscribers, error) =
        workloads::open(system, shared, n, |_| group.clone(), sizes.patience, page).await;
    if let Some(error) = error {
        result.errors.push(format!("{what}: {error}"));
    }
    if subscribers.is_empty() {
        return subscribers;
    }
    let mut notes = Vec::new();
    match workloads::fan_out(system, shared, (&subscribers, n), &group, sizes, &mut notes).await {
        Ok(fanout) => results.push(fanout),
        Err(e) => notes.push(format!("{what}: {e}")),
    }
    result.errors.extend(notes);
    subscribers
}

async fn record_latency(
    result: &mut SystemResult,
    system: &systems::Running,
    shared: &Arc<client::Shared>,
    subscribers: &[client::Subscriber],
    group: &str,
    sizes: &Sizes,
) {
    match workloads::latency(
        system,
        shared,
        subscribers,
        group,
        sizes,
        &mut result.errors,
    )
    .await
    {
        Ok(latency) => result.latency = Some(latency),
        Err(e) => result.errors.push(format!("latency: {e}")),
    }
}

/// Lets this process (and the servers it starts, which inherit it) open as many files as the
/// machine allows: 19k streams need 19k sockets.
fn raise_open_files_limit() -> Result<(), String> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the kernel to fill in and read.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
        }
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
