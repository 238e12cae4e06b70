//! One client of the rolling restart: a stream of one group that follows the group across
//! reconnections, as `EventSource` does, and checks every event against the group's sequence.
//!
//! Its stream ends when its server dies; it waits a random part of the retry time, reconnects
//! to a random server (the other one when that one refuses) with the `Last-Event-ID` of the last
//! event it completed, and notes when it is back and when it has caught up: when it holds every
//! event published before it reconnected.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    pin::Pin,
    sync::atomic::Ordering::{Relaxed, SeqCst},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{body::Incoming, client::conn::http1, header, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

use super::run::{Phase, Run};
use crate::{scan::Scanner, soak::Random};

/// How long opening a stream may take before the client gives up on that attempt.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// What one client saw, in µs since the run started where it is a time.
#[derive(Serialize, Default)]
pub(super) struct ClientReport {
    pub(super) id: usize,
    pub(super) group: usize,
    /// The server of its first stream (0 survives, 1 is killed).
    pub(super) first_server: usize,
    pub(super) received: u64,
    /// Events it never got: gaps between two it got, or the end of the group it did not reach.
    pub(super) missed: u64,
    pub(super) duplicated: u64,
    /// Events whose data is not the publisher's (a `stream-reset`, where a server could not
    /// resume it).
    pub(super) foreign: u64,
    /// Streams opened after its first, on each server.
    pub(super) reopened_on: [u64; 2],
    /// Opening attempts that failed (refused, not `200`, timed out), by why.
    pub(super) failed_opens: u64,
    pub(super) failures: BTreeMap<String, u64>,
    /// When its stream first ended, when it first tried to reconnect (after waiting part of
    /// the retry time), when it had a stream again, and when it had caught up.
    pub(super) dropped_at: Option<u64>,
    pub(super) retried_at: Option<u64>,
    pub(super) reopened_at: Option<u64>,
    pub(super) resumed_at: Option<u64>,
    /// Publish → receive latency of the events of its first stream, with when they arrived.
    #[serde(skip)]
    pub(super) latencies: Vec<(u64, u32)>,
    #[serde(skip)]
    last_seq: Option<u64>,
    /// Away: its stream ended and it has not caught up yet; and the last sequence number
    /// published to its group when its new stream opened, which it must reach to catch up.
    #[serde(skip)]
    away: bool,
    #[serde(skip)]
    catch_up_to: u64,
}

impl ClientReport {
    /// Checks an event against the group's sequence.
    fn event(&mut self, data: &[u8], run: &Run) {
        if data.is_empty() {
            return; // `sse`'s `stream-start`: there for its id
        }
        let now = run.shared.now_us();
        let mut fields = data.split(|&b| b == b' ');
        let mut number = || {
            std::str::from_utf8(fields.next()?)
                .ok()?
                .parse::<u64>()
                .ok()
        };
        let (Some(seq), Some(sent_us)) = (number(), number()) else {
            self.foreign += 1;
            return;
        };
        match self.last_seq {
            None => {
                run.subscribed.fetch_add(1, Relaxed);
            }
            Some(last) if seq <= last => {
                self.duplicated += 1;
                return;
            }
            Some(last) => self.missed += seq - last - 1,
        }
        self.last_seq = Some(seq);
        self.received += 1;
        if self.dropped_at.is_none() {
            let latency = now.saturating_sub(sent_us).min(u32::MAX as u64) as u32;
            self.latencies.push((now, latency));
        }
        self.maybe_resumed(run, now);
    }

    /// Marks the client back once it has every event published before it reconnected.
    fn maybe_resumed(&mut self, run: &Run, now: u64) {
        if self.away && self.reopened_at.is_some() && self.last_seq >= Some(self.catch_up_to) {
            self.away = false;
            self.resumed_at = Some(now);
            run.away.fetch_sub(1, SeqCst);
        }
    }

    /// Whether it has the group's last event, once publishing stopped.
    fn done(&self, run: &Run) -> bool {
        *run.phase.borrow() >= Phase::Draining
            && self.last_seq >= Some(run.published[self.group].load(SeqCst))
    }
}

/// An open stream: the connection, driven alongside the body it carries.
struct Stream {
    conn: Pin<Box<http1::Connection<TokioIo<TcpStream>, Empty<Bytes>>>>,
    body: Incoming,
}

/// Opens `path` on `addr` with `last_id` as `Last-Event-ID` (if any); returns once the `200`
/// head arrived.
async fn open(addr: SocketAddr, path: &str, last_id: &[u8]) -> Result<Stream, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    // Closed with a reset at the end: no TIME_WAIT left behind.
    tcp.set_zero_linger().map_err(|e| e.to_string())?;
    let (mut sender, conn) = http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let mut request = Request::get(path)
        .header(header::HOST, addr.to_string())
        .header(header::ACCEPT, "text/event-stream");
    if !last_id.is_empty() {
        request = request.header("last-event-id", last_id);
    }
    let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
    let mut conn = Box::pin(conn);
    let response = tokio::select! {
        response = sender.send_request(request) => response.map_err(|e| format!("request: {e}"))?,
        _ = &mut conn => return Err("connection ended before the answer".to_owned()),
    };
    if !response.status().is_success() {
        return Err(format!("answered {}", response.status()));
    }
    Ok(Stream {
        conn,
        body: response.into_body(),
    })
}

/// Runs client `id` until it has its group's last event after publishing stopped, or the run
/// stops waiting for it.
pub(super) async fn follow(run: std::sync::Arc<Run>, id: usize) -> ClientReport {
    let group = id % run.published.len();
    let path = run.sub_path(group);
    let mut report = ClientReport {
        id,
        group,
        first_server: id % 2,
        ..ClientReport::default()
    };
    let mut random = Random::new(id as u64 + 1);
    let mut phase = run.phase.clone();
    let mut server = report.first_server;
    let mut last_id = Vec::new();
    let mut opened_once = false;
    let mut failed_in_a_row = 0;
    while *phase.borrow() != Phase::Stopped && !report.done(&run) {
        let attempt =
            tokio::time::timeout(OPEN_TIMEOUT, open(run.servers[server], &path, &last_id));
        let mut stream = match attempt.await {
            Ok(Ok(stream)) => stream,
            failed => {
                let why = match failed {
                    Ok(Err(why)) => why,
                    _ => format!("no answer within {OPEN_TIMEOUT:?}"),
                };
                *report.failures.entry(why).or_default() += 1;
                report.failed_opens += 1;
                failed_in_a_row += 1;
                // A first stream waits for its own server; a reconnecting one tries the other.
                if opened_once {
                    server = 1 - server;
                }
                if failed_in_a_row % 2 == 0 || !opened_once {
                    tokio::time::sleep(Duration::from_millis(50 + random.next() % 50)).await;
                }
                continue;
            }
        };
        failed_in_a_row = 0;
        if opened_once {
            report.reopened_on[server] += 1;
            report.reopened_at = Some(run.shared.now_us());
            report.catch_up_to = run.published[group].load(SeqCst);
            report.maybe_resumed(&run, run.shared.now_us());
        } else {
            opened_once = true;
            run.opened.fetch_add(1, Relaxed);
        }
        let mut scanner = Scanner::resuming(std::mem::take(&mut last_id));
        loop {
            tokio::select! {
                biased;
                frame = stream.body.frame() => match frame {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            scanner.feed(data, &mut |data| report.event(data, &run));
                        }
                    }
                    _ => break,
                },
                _ = &mut stream.conn => break,
                _ = phase.changed() => {}
            }
            if *phase.borrow() == Phase::Stopped || report.done(&run) {
                break;
            }
        }
        if !run.forget_ids {
            last_id = scanner.last_id;
        }
        if *phase.borrow() == Phase::Stopped || report.done(&run) {
            break;
        }
        // The stream ended under it: its server is gone.
        if !report.away {
            report.away = true;
            report.dropped_at.get_or_insert(run.shared.now_us());
            run.away.fetch_add(1, SeqCst);
            run.dropped.fetch_add(1, SeqCst);
        }
        report.reopened_at = None;
        let wait = Duration::from_millis(random.next() % run.retry.as_millis().max(1) as u64);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = phase.wait_for(|phase| *phase == Phase::Stopped) => break,
        }
        report.retried_at.get_or_insert(run.shared.now_us());
        server = (random.next() % 2) as usize;
    }
    let last = run.published[group].load(SeqCst);
    report.missed += last.saturating_sub(report.last_seq.unwrap_or(0));
    report
}
