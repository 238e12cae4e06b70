//! Publishes from a process that serves no HTTP at all (a worker, a cron job): with
//! `SSE_BROKER_URL` set, the events reach every subscriber of the group in every process that
//! uses the same Redis.
//!
//! ```sh
//! SSE_BROKER_URL=redis://127.0.0.1:6379/0 \
//!   cargo run -p sse-examples --features redis --example publish -- yo yo "yo from cron"
//! ```
//!
//! Each DATA argument is one event; the id of each is printed on its own line. On failure (bad
//! URL, Redis unreachable, invalid name) the reason goes to stderr and the exit status is 1.
//! Without `SSE_BROKER_URL` the events stay in this short-lived process: nobody gets them.

use std::{error::Error, process::ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (group, event, data) = match args.as_slice() {
        [group, event, data @ ..] if !data.is_empty() => (group, event, data),
        _ => {
            eprintln!(
                "usage: publish GROUP EVENT DATA...  (broker: {}, unset = this process only)",
                sse::BROKER_URL_ENV
            );
            return ExitCode::from(2);
        }
    };
    // No `sse::init`: the process-wide hub reads SSE_BROKER_URL by itself. A bad URL or an
    // unreachable Redis comes back as the publish's error.
    for data in data {
        match sse::publish!(group.as_str(), event.as_str(), data) {
            Ok(id) => println!("{id}"),
            Err(error) => {
                eprintln!("publish: {}", explained(&error));
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// `error`'s message, then its deepest source's: sse's errors say what failed and keep why (the
/// Redis error) as their source. The sources in between are skipped: Redis's own error repeats
/// the message of its source.
fn explained(error: &dyn Error) -> String {
    match std::iter::successors(error.source(), |&cause| cause.source()).last() {
        Some(why) => format!("{error}: {why}"),
        None => error.to_string(),
    }
}
