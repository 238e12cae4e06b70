//! Pages in a real browser: headless Chromium driven by chromedriver over WebDriver.
//!
//! `yo_demo_in_two_browsers_survives_a_restart`: Alice and Bob log in to the yo demo from two
//! browsers. Alice sends Bob a yo; Bob's page shows it. The server is killed while Bob's page
//! stays open and started again on the same port; Alice sends another yo at once, while Bob's
//! page is still waiting to reconnect, and a third once it is back. Bob's page shows them after
//! its `EventSource` has reconnected by itself, and no yo is lost or shown twice. A screenshot of
//! Bob's page is saved to `target/yo-bob.png`. The demo runs as a separate process: this test
//! binary started again with `--serve-yo-demo`, which runs the demo (the same code as
//! `cargo run --example yo`).
//!
//! `a_page_and_its_stream_on_one_connection_take_the_fast_path`: a page whose `EventSource`
//! opens on the connection the page came on (as Chromium does with its kept-alive connection)
//! gets its events, and that stream was written by `sse::serve` itself: its answer, read from
//! what the server wrote to the socket, has `connection: close` and no chunked framing.
//!
//! `a_page_cut_before_its_first_event_misses_nothing`: a page whose `EventSource` has seen only
//! its stream's start is cut off by a relay, which keeps the browser away while three events are
//! published. The browser comes back by itself, with the id of the stream's start, and the page
//! gets exactly those three events. Its app runs in this process, under `sse::serve` and then
//! under `axum::serve`.
//!
//! `a_closed_user_s_event_source_stops_reconnecting`: a page whose stream was opened as a user
//! does nothing of its own when the server closes the user's streams. Its `EventSource` comes
//! back once, with the closing id, is answered `204`, and is `CLOSED` from then on: no further
//! request reaches the server. In this process, under both servers.
//!
//! `a_page_whose_token_expires_fetches_a_fresh_one_and_resumes`: a page streams with a
//! subscription token (`?token=`) that expires two seconds later. Its stream ends with
//! `stream-closed` (`{"reason":"expired"}`); the page, as the README's snippet does, fetches a
//! fresh token from the app and opens the stream again from the closed stream's id, and gets the
//! event published in between, then the live ones: none lost, none twice. In this process,
//! under both servers.
//!
//! `django_shop_announces_saved_orders_only`: the Django example (`examples/django`, a process
//! with its sqlite) beside an `sse` server in this process. Alice's page streams her orders
//! with a token the shop signed; an order she places is heard of once saved
//! (`publish_on_commit`), one rolled back never is, and her token does not open another
//! buyer's orders (`403`). Under both servers.
//!
//! `chat_reloaded_mid_answer_shows_it_whole_once`, `chat_two_tabs_on_one_answer_get_it_all` and,
//! with feature `redis`, `chat_answer_finished_by_another_process_after_a_crash`: the chat
//! example (`examples/chat`), see `browser/chat.rs`.
//!
//! `yo_demo_log_out_closes_every_tab`: Alice has the demo open in two tabs, Bob in his browser
//! sees her online. She logs out in one tab: the other tab's stream is closed too ("logged
//! out"), and she vanishes from Bob's online list, by the leave event.

use std::{
    future::{Future, IntoFuture},
    net::{SocketAddr, TcpListener, TcpStream},
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    pin::Pin,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    task::{ready, Context, Poll},
    time::{Duration, Instant},
};

use axum::{response::Html, routing::get, Router};
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::{future::LocalBoxFuture, FutureExt};
use sse_tests::{Relay, PATIENCE};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[path = "../chat/app.rs"]
mod chat;
#[path = "browser/chat.rs"]
mod chat_pages;

/// A scenario: it runs on a runtime of its own, and panics if it fails.
type Scenario = fn() -> LocalBoxFuture<'static, ()>;

/// Each scenario by name, as `--list` and name filters see them.
const SCENARIOS: &[(&str, Scenario)] = &[
    ("yo_demo_in_two_browsers_survives_a_restart", || {
        yo_demo_in_two_browsers().boxed_local()
    }),
    (
        "a_page_and_its_stream_on_one_connection_take_the_fast_path",
        || a_page_and_its_stream_on_one_connection().boxed_local(),
    ),
    ("a_page_cut_before_its_first_event_misses_nothing", || {
        a_page_cut_before_its_first_event().boxed_local()
    }),
    ("a_closed_user_s_event_source_stops_reconnecting", || {
        a_closed_user_s_event_source().boxed_local()
    }),
    ("yo_demo_log_out_closes_every_tab", || {
        yo_demo_log_out().boxed_local()
    }),
    (
        "a_page_whose_token_expires_fetches_a_fresh_one_and_resumes",
        || a_page_whose_token_expires().boxed_local(),
    ),
    ("django_shop_announces_saved_orders_only", || {
        django_shop().boxed_local()
    }),
    ("chat_reloaded_mid_answer_shows_it_whole_once", || {
        chat_pages::reloaded_mid_answer().boxed_local()
    }),
    ("chat_two_tabs_on_one_answer_get_it_all", || {
        chat_pages::two_tabs_on_one_answer().boxed_local()
    }),
    #[cfg(feature = "redis")]
    (
        "chat_answer_finished_by_another_process_after_a_crash",
        || chat_pages::finished_by_another_process().boxed_local(),
    ),
];
const SERVE_FLAG: &str = "--serve-yo-demo";
/// Runs the chat example instead, for the scenarios with two processes.
const CHAT_FLAG: &str = "--serve-chat";
/// A scenario's bound, browsers' start-up included.
const SCENARIO_LIMIT: Duration = Duration::from_secs(100);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|arg| arg == SERVE_FLAG) {
        serve_demo();
        return;
    }
    if args.iter().any(|arg| arg == CHAT_FLAG) {
        chat_pages::serve_chat();
        return;
    }
    if args.iter().any(|arg| arg == "--list") {
        for (name, _) in SCENARIOS {
            println!("{name}: test");
        }
        return;
    }
    // Like libtest: positional arguments are name filters.
    let filters: Vec<&String> = args.iter().filter(|arg| !arg.starts_with('-')).collect();
    let selected: Vec<_> = SCENARIOS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    for (name, scenario) in &selected {
        // A runtime of its own: the tasks a scenario starts end with it.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let started = Instant::now();
        runtime.block_on(scenario());
        println!(
            "test {name} ... ok ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
    }
    let skipped = match SCENARIOS.len() - selected.len() {
        0 => String::new(),
        n => format!(", {n} skipped"),
    };
    println!("browser: {} passed, 0 failed{skipped}", selected.len());
}

/// The child process: the demo, configured by `YO_ADDR` and `YO_DATA`.
fn serve_demo() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(async {
        let settings = yo_demo::Settings::from_env()?;
        yo_demo::run(settings).await
    });
    if let Err(e) = result {
        eprintln!("yo demo: {e}");
        std::process::exit(1);
    }
}

async fn yo_demo_in_two_browsers() {
    let work = scratch_dir("yo");
    let data = work.join("yo.json");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");

    let mut server = Process::demo(port, &data);
    server.wait_listening(port);
    let profiles = [work.join("alice"), work.join("bob")];
    in_browsers(profiles, |[alice, bob]| async move {
        scenario(&alice, &bob, &base, &mut server, port, &data).await;
    })
    .await;
    let _ = std::fs::remove_dir_all(&work);
}

/// Runs `scenario` with a fresh headless Chromium per profile directory, bounded by
/// [`SCENARIO_LIMIT`], and closes them whatever happened, so no Chromium outlives the test.
async fn in_browsers<const N: usize, F>(
    profiles: [PathBuf; N],
    scenario: impl FnOnce([Client; N]) -> F,
) where
    F: Future<Output = ()>,
{
    let driver = Process::chromedriver();
    let webdriver = format!("http://127.0.0.1:{}", driver.port);
    let mut browsers = Vec::with_capacity(N);
    for profile in &profiles {
        browsers.push(browser(&webdriver, profile).await);
    }
    let Ok(browsers) = <[Client; N]>::try_from(browsers) else {
        unreachable!("one browser per profile")
    };
    let outcome = AssertUnwindSafe(tokio::time::timeout(
        SCENARIO_LIMIT,
        scenario(browsers.clone()),
    ))
    .catch_unwind()
    .await;
    for client in browsers {
        let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
    }
    drop(driver);
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("the scenario took longer than {SCENARIO_LIMIT:?}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn scenario(
    alice: &Client,
    bob: &Client,
    base: &str,
    server: &mut Process,
    port: u16,
    data: &Path,
) {
    log_in(alice, base, "alice").await;
    log_in(bob, base, "bob").await;
    wait_for("bob's stream to open", || async {
        text(bob, "#status").await == "live"
    })
    .await;

    // Bob has an open stream, so Alice's page lists him as online.
    let yo_bob = Locator::Css(r#"#online button[data-to="bob"]"#);
    wait_for("alice to see bob online", || async {
        alice.find(yo_bob).await.is_ok()
    })
    .await;
    alice.find(yo_bob).await.unwrap().click().await.unwrap();
    wait_for("bob's page to show alice's yo", || async {
        inbox(bob).await.len() == 1
    })
    .await;
    assert_eq!(inbox(bob).await[0].1, "yo from alice to bob");

    // The server goes away while Bob's page stays open, and comes back on the same port.
    server.kill();
    wait_for("bob's page to notice", || async {
        text(bob, "#status").await != "live"
    })
    .await;
    *server = Process::demo(port, data);
    server.wait_listening(port);

    // At once, before the pages' EventSources retry (the demo's retry hint is 1 s), so Bob's
    // page most likely misses this one on its stream. Alice's session cookie is still good: the
    // demo keeps its signing key with its data.
    send_with_form(alice, "bob").await;
    wait_for("bob's page to reconnect and catch up", || async {
        caught_up(bob).await >= 2 && inbox(bob).await.len() >= 2
    })
    .await;
    // And one more once Bob's page is live again.
    wait_for("bob's stream to reopen", || async {
        text(bob, "#status").await == "live"
    })
    .await;
    send_with_form(alice, "bob").await;
    wait_for("bob's page to show the third yo", || async {
        inbox(bob).await.len() >= 3 && feed(bob).await.len() >= 3
    })
    .await;

    let shown = inbox(bob).await;
    assert_eq!(shown.len(), 3, "each yo once: {shown:?}");
    assert!(
        shown.iter().all(|(_, text)| text == "yo from alice to bob"),
        "{shown:?}"
    );
    let ids: std::collections::BTreeSet<&String> = shown.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 3, "three different yos: {shown:?}");
    // Either path is right for each yo; say which ones this run took.
    for (nth, css) in [
        ("second", "#inbox li:nth-child(2)"),
        ("third", "#inbox li:nth-child(1)"),
    ] {
        let class = bob
            .find(Locator::Css(css))
            .await
            .unwrap()
            .attr("class")
            .await
            .unwrap();
        let path = match class.as_deref() {
            Some("new") => "live, on the reconnected stream",
            _ => "by the catch-up fetch when the stream reopened",
        };
        println!("the {nth} yo reached bob's page {path}");
    }
    // The page shows what the server stored, no more, no less.
    let stored = sse_tests::request(&format!("{base}/api/yos"), &[]).await;
    let stored: serde_json::Value = serde_json::from_slice(&stored.bytes().await.unwrap()).unwrap();
    let mut stored_ids: Vec<String> = stored["feed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|yo| yo["id"].to_string())
        .collect();
    stored_ids.reverse(); // the page shows the newest first
    let feed_ids: Vec<String> = feed(bob).await.into_iter().map(|(id, _)| id).collect();
    assert_eq!(feed_ids, stored_ids);
    assert_eq!(text(bob, "#status").await, "live");

    let png = bob.screenshot().await.unwrap();
    let path = target_dir().join("yo-bob.png");
    std::fs::write(&path, png).unwrap();
    println!("screenshot of bob's page: {}", path.display());
}

/// A page that opens one `EventSource` and records, in `window.received`, the data of each
/// `missed` event, and in `window.starts` the id of each `stream-start`: where each stream it
/// opened started.
const START_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>stream-start</title>
<script>
  window.received = [];
  window.starts = [];
  const source = new EventSource("/events");
  source.addEventListener("stream-start", (event) => window.starts.push(event.lastEventId));
  source.addEventListener("missed", (event) => window.received.push(event.data));
</script>
"#;

/// Opens its stream once the page has loaded, so Chromium has the page's connection idle, kept
/// alive, to send it on.
const STREAM_PAGE: &str = r#"<!doctype html>
<title>one connection</title>
<script>
  window.received = [];
  addEventListener("load", () => {
    const source = new EventSource("/events");
    source.addEventListener("yo", (event) => window.received.push(event.data));
  });
</script>
"#;

async fn a_page_and_its_stream_on_one_connection() {
    let work = scratch_dir("one-connection");
    in_browsers([work.join("page")], |[page]| async move {
        let hub = sse::Hub::new(sse::Config::default());
        let streamed = hub.clone();
        let group = sse::GroupName::new("page").unwrap();
        let app = Router::new()
            .route("/", get(|| std::future::ready(Html(STREAM_PAGE))))
            .route(
                "/events",
                get(move |last: sse::LastEventId| {
                    std::future::ready(streamed.subscribe([group.clone()], &last))
                }),
            );
        let listener = Recording::bind().await;
        let (addr, written) = (listener.addr, listener.written.clone());
        tokio::spawn(sse::serve(listener, app).into_future());
        page.goto(&format!("http://{addr}/")).await.unwrap();
        wait_for("the page's stream to open", || async {
            hub.group_stats("page").subscribers == 1
        })
        .await;
        hub.publish("page", Some("yo"), "over the page's connection")
            .unwrap();
        wait_for("the page to get the event", || async {
            !recorded(&page, "received").await.is_empty()
        })
        .await;
        assert_eq!(
            recorded(&page, "received").await,
            ["over the page's connection"]
        );

        let connections: Vec<String> = written
            .lock()
            .unwrap()
            .iter()
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .collect();
        let streams: Vec<&String> = connections
            .iter()
            .filter(|written| written.contains("text/event-stream"))
            .collect();
        let [stream] = streams[..] else {
            panic!("one connection carried the stream: {connections:#?}");
        };
        let (before, answer) = stream
            .split_once("content-type: text/event-stream")
            .unwrap();
        assert!(
            before.contains("<title>one connection</title>"),
            "the page came first on the stream's connection: {stream}"
        );
        let head = answer.split("\r\n\r\n").next().unwrap();
        assert!(head.contains("connection: close"), "{head}");
        assert!(
            !head.contains("transfer-encoding"),
            "not hyper's chunked framing: {head}"
        );
    })
    .await;
    let _ = std::fs::remove_dir_all(&work);
}

/// A loopback listener that keeps, per connection accepted, the first bytes the server wrote.
struct Recording {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    written: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// What is kept of each connection.
const RECORDED_BYTES: usize = 64 * 1024;

impl Recording {
    async fn bind() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let written = Arc::default();
        Recording {
            listener,
            addr,
            written,
        }
    }
}

impl axum::serve::Listener for Recording {
    type Io = Recorded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Recorded, SocketAddr) {
        let (tcp, peer) = axum::serve::Listener::accept(&mut self.listener).await;
        let mut written = self.written.lock().unwrap();
        written.push(Vec::new());
        let io = Recorded {
            tcp,
            written: self.written.clone(),
            index: written.len() - 1,
        };
        (io, peer)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// A connection whose written bytes are kept, up to [`RECORDED_BYTES`].
struct Recorded {
    tcp: tokio::net::TcpStream,
    written: Arc<Mutex<Vec<Vec<u8>>>>,
    index: usize,
}

impl Recorded {
    fn keep(&self, bytes: &[u8]) {
        let mut written = self.written.lock().unwrap();
        let kept = &mut written[self.index];
        let room = RECORDED_BYTES.saturating_sub(kept.len());
        kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

impl AsyncRead for Recorded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let written = ready!(Pin::new(&mut self.tcp).poll_write(cx, buf))?;
        self.keep(&buf[..written]);
        Poll::Ready(Ok(written))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

async fn a_page_cut_before_its_first_event() {
    let work = scratch_dir("start");
    in_browsers([work.join("page")], |[page]| async move {
        cut_before_its_first_event(&page, "sse::serve", sse_tests::serve).await;
        cut_before_its_first_event(&page, "axum::serve", sse_tests::serve_with_axum).await;
    })
    .await;
    let _ = std::fs::remove_dir_all(&work);
}

/// Loads the page from an app `serve`d behind a relay; once its stream has started, cuts it and
/// keeps the browser away while three events are published. The browser reconnects by itself
/// (the stream's `retry:` hint is 200 ms) and the page gets exactly those three.
async fn cut_before_its_first_event<F>(page: &Client, server: &str, serve: impl FnOnce(Router) -> F)
where
    F: Future<Output = SocketAddr>,
{
    let hub = sse::Hub::new(sse::Config::default().retry(Some(Duration::from_millis(200))));
    let streamed = hub.clone();
    let group = sse::GroupName::new("page").unwrap();
    let app = Router::new()
        .route("/", get(|| std::future::ready(Html(START_PAGE))))
        .route(
            "/events",
            get(move |last: sse::LastEventId| {
                std::future::ready(streamed.subscribe([group.clone()], &last))
            }),
        );
    let relay = Relay::start(serve(app).await).await;
    page.goto(&format!("http://{}/", relay.addr()))
        .await
        .unwrap();
    wait_for("the page's stream to start", || async {
        !recorded(page, "starts").await.is_empty()
    })
    .await;

    relay.hold();
    relay.cut();
    wait_for("the browser to come back, and wait", || async {
        relay.waiting() > 0
    })
    .await;
    let missed: Vec<String> = (1..=3)
        .map(|n| {
            let data = format!("missed {n}");
            hub.publish("page", Some("missed"), &data).unwrap();
            data
        })
        .collect();
    relay.release();

    wait_for("the page to get the missed events", || async {
        recorded(page, "received").await.len() >= missed.len()
    })
    .await;
    let starts = recorded(page, "starts").await;
    assert_eq!(
        recorded(page, "received").await,
        missed,
        "under {server}; the page's streams started at {starts:?}"
    );
    assert!(
        starts.len() > 1 && starts.first() == starts.last(),
        "under {server}, the stream resumes where the first one started: {starts:?}"
    );
}

/// A page whose stream is opened as user `alice`, recording each `readyState` change and each
/// event's name in `window.states` and `window.events`, and doing nothing else.
const USER_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>closed</title>
<script>
  window.states = [];
  window.events = [];
  const source = new EventSource("/events");
  const record = () => window.states.push(String(source.readyState));
  source.addEventListener("open", record);
  source.addEventListener("error", record);
  source.addEventListener("stream-closed", (event) => window.events.push(event.type + " " + event.lastEventId));
</script>
"#;

async fn a_closed_user_s_event_source() {
    let work = scratch_dir("closed");
    in_browsers([work.join("page")], |[page]| async move {
        closed_user_s_page(&page, "sse::serve", sse_tests::serve).await;
        closed_user_s_page(&page, "axum::serve", sse_tests::serve_with_axum).await;
    })
    .await;
    let _ = std::fs::remove_dir_all(&work);
}

/// Loads [`USER_PAGE`], closes the user's streams, and counts the requests for its stream.
async fn closed_user_s_page<F>(page: &Client, server: &str, serve: impl FnOnce(Router) -> F)
where
    F: Future<Output = SocketAddr>,
{
    let hub = sse::Hub::new(sse::Config::default().retry(Some(Duration::from_millis(200))));
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (streamed, counted) = (hub.clone(), requests.clone());
    let group = sse::GroupName::new("page").unwrap();
    let app = Router::new()
        .route("/", get(|| std::future::ready(Html(USER_PAGE))))
        .route(
            "/events",
            get(move |last: sse::LastEventId| {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let join = sse::Join::group(group.clone()).user("alice");
                std::future::ready(streamed.subscribe(join, &last))
            }),
        );
    let addr = serve(app).await;
    page.goto(&format!("http://{addr}/")).await.unwrap();
    wait_for("the page's stream to open", || async {
        recorded(page, "states").await == ["1"]
    })
    .await;

    assert_eq!(hub.close_user("alice").await.unwrap(), 1, "under {server}");
    wait_for("the EventSource to be CLOSED", || async {
        recorded(page, "states").await.last().map(String::as_str) == Some("2")
    })
    .await;
    // Several retry delays later, still closed, and nothing more came.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let counted = requests.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(
        (
            recorded(page, "states").await,
            recorded(page, "events").await
        ),
        (
            // open; error on the end of the stream (CONNECTING); error on the 204 (CLOSED)
            vec!["1".to_owned(), "0".to_owned(), "2".to_owned()],
            vec![format!("{} {}", sse::STREAM_CLOSED, sse::CLOSED_ID)],
        ),
        "under {server}"
    );
    assert_eq!(
        counted, 2,
        "under {server}: the stream, and the one reconnection answered 204"
    );
}

/// The README's page for a token that expires: `stream-closed` with `{"reason":"expired"}`, a
/// fresh token from the app, the stream again from the closed one's id.
const TOKEN_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>token</title>
<script>
  window.events = [];
  window.ends = [];
  function listen(token, lastEventId = "") {
    const query = `token=${token}&lastEventId=${encodeURIComponent(lastEventId)}`;
    const source = new EventSource(`/events/room.7?${query}`);
    source.addEventListener("message", (e) => window.events.push(e.data));
    source.addEventListener("stream-closed", async (e) => {
      source.close();
      window.ends.push(e.data);
      if (JSON.parse(e.data || "{}").reason !== "expired") return;
      const fresh = await (await fetch("/sse-token")).text();
      listen(fresh, e.lastEventId);
    });
  }
  fetch("/sse-token").then((answer) => answer.text()).then((token) => listen(token));
</script>
"#;

const TOKEN_SECRET: &[u8] = b"browser-test-secret-of-32-bytes-or-more";

/// `/events/{group}`: the group, if the request's token allows it, as the token's user.
#[sse::subscribe]
async fn token_events(
    token: sse::Token,
    axum::extract::Path(group): axum::extract::Path<sse::GroupName>,
) -> Result<sse::Join, sse::TokenRefused> {
    token.join([group])
}

async fn a_page_whose_token_expires() {
    let work = scratch_dir("token");
    in_browsers([work.join("page")], |[page]| async move {
        token_page(&page, "sse::serve", sse_tests::serve).await;
        token_page(&page, "axum::serve", sse_tests::serve_with_axum).await;
    })
    .await;
    let _ = std::fs::remove_dir_all(&work);
}

/// Loads [`TOKEN_PAGE`], whose first token expires in two seconds, and publishes before, during
/// and after its renewal.
async fn token_page<F>(page: &Client, server: &str, serve: impl FnOnce(Router) -> F)
where
    F: Future<Output = SocketAddr>,
{
    let hub = sse::Hub::new(sse::Config::default());
    let keys = sse::TokenKeys::new().key(sse::TokenKey::hs256(TOKEN_SECRET).unwrap());
    // The app's token endpoint: a token that expires soon first; the next one waits until the
    // test published while the page had no stream.
    let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let renew = Arc::new(tokio::sync::Notify::new());
    let (count, wait) = (issued.clone(), renew.clone());
    let sign = move || {
        let (count, wait) = (count.clone(), wait.clone());
        async move {
            let first = count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
            if !first {
                wait.notified().await;
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let exp = now + if first { 2 } else { 600 };
            let claims = serde_json::json!({"groups": ["room.7"], "sub": "alice", "exp": exp});
            let key = jsonwebtoken::EncodingKey::from_secret(TOKEN_SECRET);
            jsonwebtoken::encode(&Default::default(), &claims, &key).unwrap()
        }
    };
    let app = Router::new()
        .route("/", get(|| std::future::ready(Html(TOKEN_PAGE))))
        .route("/sse-token", get(sign))
        .route("/events/{group}", get(token_events))
        .layer(keys.layer())
        .layer(hub.layer());
    let addr = serve(app).await;
    page.goto(&format!("http://{addr}/")).await.unwrap();
    wait_for("the page's stream to open", || async {
        hub.group_stats("room.7").subscribers == 1
    })
    .await;
    hub.publish("room.7", None, "one").unwrap();

    // The token expires: the stream closes, and the page asks for a fresh one.
    wait_for("the page to ask for a fresh token", || async {
        issued.load(std::sync::atomic::Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(hub.group_stats("room.7").subscribers, 0, "under {server}");
    hub.publish("room.7", None, "two").unwrap();
    renew.notify_one();
    wait_for("the page's stream to open again", || async {
        hub.group_stats("room.7").subscribers == 1
    })
    .await;
    hub.publish("room.7", None, "three").unwrap();
    wait_for("the page to get three events", || async {
        recorded(page, "events").await.len() >= 3
    })
    .await;
    assert_eq!(
        (recorded(page, "events").await, recorded(page, "ends").await),
        (
            vec!["one".to_owned(), "two".into(), "three".into()],
            vec![r#"{"reason":"expired"}"#.to_owned()]
        ),
        "under {server}"
    );
}

/// The Django example, `examples/django`.
const DJANGO_SHOP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/django");
const PUBLISH_TOKEN: &str = "browser-test-publish-token-0123456789";

async fn django_shop() {
    let work = scratch_dir("django");
    let dir = work.clone();
    in_browsers([work.join("alice")], |[alice]| async move {
        django_shop_under(&alice, &dir, "sse::serve", sse_tests::serve).await;
        django_shop_under(&alice, &dir, "axum::serve", sse_tests::serve_with_axum).await;
    })
    .await;
    let _ = std::fs::remove_dir_all(&work);
}

/// The `sse` server beside the shop: streams authorized by the shop's tokens, its publish
/// endpoint, and CORS for the shop's pages.
fn shop_hub(hub: &sse::Hub, shop: &str) -> Router {
    let keys = sse::TokenKeys::new().key(sse::TokenKey::hs256(TOKEN_SECRET).unwrap());
    let publish = sse::PublishEndpoint::new(PUBLISH_TOKEN).unwrap();
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(axum::http::HeaderValue::from_str(shop).unwrap());
    Router::new()
        .route("/events/{group}", get(token_events))
        .route("/publish", publish.into_method_router())
        .layer(cors)
        .layer(keys.layer())
        .layer(hub.layer())
}

/// Alice orders tea in the shop (a Django process, its sqlite in `work`): her page hears of it
/// from the `sse` server once it is saved. An order rolled back is never heard of, and her
/// page's token does not open another buyer's orders.
async fn django_shop_under<F>(
    alice: &Client,
    work: &Path,
    server: &str,
    serve: impl FnOnce(Router) -> F,
) where
    F: Future<Output = SocketAddr>,
{
    let port = free_port();
    let shop = format!("http://127.0.0.1:{port}");
    let hub = sse::Hub::new(sse::Config::default());
    let addr = serve(shop_hub(&hub, &shop)).await;
    let _django = Process::django(port, addr, &work.join(format!("shop-{port}.sqlite3")));

    alice.goto(&format!("{shop}/login/alice")).await.unwrap();
    wait_for("alice's page to be live", || async {
        text(alice, "#status").await == "live"
    })
    .await;
    alice
        .find(Locator::Css("#place"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the order to be heard of", || async {
        texts(alice, "#orders li").await == ["tea"]
    })
    .await;

    let item = alice.find(Locator::Css("#item")).await.unwrap();
    item.clear().await.unwrap();
    item.send_keys("cake").await.unwrap();
    alice
        .find(Locator::Css("#fail"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the order to be rolled back", || async {
        text(alice, "#answer").await == "rolled back"
    })
    .await;
    // Nothing of the cake came: the next event the page shows is the one published now.
    let source: String =
        serde_json::from_value(alice.execute("return source.url;", vec![]).await.unwrap()).unwrap();
    let group = source
        .split("/events/")
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let data = serde_json::json!({"item": "after the rollback"}).to_string();
    hub.publish(group, Some("order"), &data).unwrap();
    wait_for("the next event", || async {
        texts(alice, "#orders li").await.len() == 2
    })
    .await;
    assert_eq!(
        texts(alice, "#orders li").await,
        ["tea", "after the rollback"],
        "under {server}"
    );
    // The shop saved the tea alone.
    alice.goto(&format!("{shop}/")).await.unwrap();
    assert_eq!(texts(alice, "#orders li").await, ["tea"], "under {server}");

    // Her token, for another buyer's orders: refused.
    let other = source.replace(&format!("/events/{group}?"), "/events/orders.999999?");
    let answer = sse_tests::request(&other, &[]).await;
    assert_eq!(answer.status(), 403, "under {server}");
}

/// The text of every element `css` finds, in order.
async fn texts(client: &Client, css: &str) -> Vec<String> {
    let script = format!(
        "return [...document.querySelectorAll({})].map((element) => element.textContent);",
        serde_json::to_string(css).unwrap()
    );
    serde_json::from_value(client.execute(&script, vec![]).await.unwrap()).unwrap()
}

async fn yo_demo_log_out() {
    let work = scratch_dir("log-out");
    let data = work.join("yo.json");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Process::demo(port, &data);
    server.wait_listening(port);
    let profiles = [work.join("alice"), work.join("bob")];
    in_browsers(profiles, |[alice, bob]| async move {
        log_in(&alice, &base, "alice").await;
        let first_tab = alice.window().await.unwrap();
        let second_tab = alice.new_window(true).await.unwrap().handle;
        alice.switch_to_window(second_tab.clone()).await.unwrap();
        alice.goto(&base).await.unwrap();
        wait_for("alice's second tab to be live", || async {
            text(&alice, "#status").await == "live"
        })
        .await;
        log_in(&bob, &base, "bob").await;
        let alice_online = Locator::Css(r#"#online button[data-to="alice"]"#);
        wait_for("bob to see alice online", || async {
            bob.find(alice_online).await.is_ok()
        })
        .await;

        alice.switch_to_window(first_tab).await.unwrap();
        let log_out = Locator::Css(r#"form[action="/logout"] button"#);
        alice.find(log_out).await.unwrap().click().await.unwrap();
        wait_for("the first tab to show the login page", || async {
            alice
                .find(Locator::Css(r#"form[action="/login"]"#))
                .await
                .is_ok()
        })
        .await;
        alice.switch_to_window(second_tab).await.unwrap();
        wait_for("the second tab to be logged out", || async {
            text(&alice, "#status").await == "logged out"
        })
        .await;
        wait_for("bob to see alice leave", || async {
            bob.find(alice_online).await.is_err()
        })
        .await;
    })
    .await;
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
}

/// `window[name]`: an array of strings the page recorded.
async fn recorded(client: &Client, name: &str) -> Vec<String> {
    let script = format!("return window.{name} || [];");
    let value = client.execute(&script, vec![]).await.unwrap();
    serde_json::from_value(value).unwrap()
}

/// Sends a yo to `to` with the page's form.
async fn send_with_form(client: &Client, to: &str) {
    let input = client.find(Locator::Css("#to")).await.unwrap();
    input.send_keys(to).await.unwrap();
    let button = client.find(Locator::Css("#send button")).await.unwrap();
    button.click().await.unwrap();
}

/// A child process that is killed when dropped, so none outlives a failing test.
struct Process {
    child: Child,
    port: u16,
}

impl Process {
    fn demo(port: u16, data: &Path) -> Process {
        let child = Command::new(std::env::current_exe().unwrap())
            .arg(SERVE_FLAG)
            .env("YO_ADDR", format!("127.0.0.1:{port}"))
            .env("YO_DATA", data)
            .stdout(Stdio::null())
            .spawn()
            .expect("the demo starts");
        Process { child, port }
    }

    /// The Django shop on `port`, its database migrated first, publishing to the `sse` server at
    /// `hub`. Runs Debian's Python with the package from `clients/python` (`SSE_PYTHON` names
    /// another interpreter).
    fn django(port: u16, hub: SocketAddr, db: &Path) -> Process {
        let python = std::env::var("SSE_PYTHON").unwrap_or_else(|_| "python3".into());
        let command = |args: &[&str]| {
            let mut command = Command::new(&python);
            command
                .args(args)
                .current_dir(DJANGO_SHOP)
                .env(
                    "PYTHONPATH",
                    concat!(env!("CARGO_MANIFEST_DIR"), "/../clients/python"),
                )
                .env("PYTHONDONTWRITEBYTECODE", "1")
                .env("SHOP_DB", db)
                .env("SSE_HUB_URL", format!("http://{hub}"))
                .env("SSE_PUBLISH_URL", format!("http://{hub}/publish"))
                .env("SSE_PUBLISH_TOKEN", PUBLISH_TOKEN)
                .env(
                    "SSE_TOKEN_SECRET",
                    std::str::from_utf8(TOKEN_SECRET).unwrap(),
                )
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            command
        };
        let migrated = command(&["manage.py", "migrate"])
            .status()
            .expect("python3 runs (with Django: scripts/test installs python3-django)");
        assert!(migrated.success(), "manage.py migrate failed");
        let child = command(&[
            "manage.py",
            "runserver",
            "--noreload",
            &format!("127.0.0.1:{port}"),
        ])
        .spawn()
        .expect("the shop starts");
        let mut shop = Process { child, port };
        shop.wait_listening(port);
        shop
    }

    fn chromedriver() -> Process {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (scripts/test installs chromium-driver)");
        let mut driver = Process { child, port };
        driver.wait_listening(port);
        driver
    }

    /// Waits until something accepts connections on `port`; fails if the process exits first.
    fn wait_listening(&mut self, port: u16) {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + PATIENCE;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("process exited before listening on {port}: {status}");
            }
            assert!(Instant::now() < deadline, "nothing listens on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh headless Chromium with its own profile: its own cookies, its own session.
async fn browser(webdriver: &str, profile: &Path) -> Client {
    let options = serde_json::json!({
        "binary": "/usr/bin/chromium",
        "args": [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--window-size=820,900",
            format!("--user-data-dir={}", profile.display()),
        ],
    });
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    sse_tests::within(
        ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(webdriver),
    )
    .await
    .expect("a Chromium session")
}

async fn log_in(client: &Client, base: &str, name: &str) {
    client.goto(base).await.unwrap();
    client
        .find(Locator::Css(r#"input[name="name"]"#))
        .await
        .unwrap()
        .send_keys(name)
        .await
        .unwrap();
    client
        .find(Locator::Css(r#"form[action="/login"] button"#))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for("the logged-in page", || async {
        text(client, "#me").await == name
    })
    .await;
}

/// The text of the first element matching `css`, or "" when there is none.
async fn text(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// `(yo id, text)` of each entry of a list on the page, top to bottom.
async fn entries(client: &Client, list: &str) -> Vec<(String, String)> {
    let items = client
        .find_all(Locator::Css(&format!("#{list} li")))
        .await
        .unwrap_or_default();
    let mut entries = Vec::new();
    for item in items {
        let id = item.attr("data-id").await.unwrap().unwrap_or_default();
        let text = item
            .find(Locator::Css("span"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        entries.push((id, text));
    }
    entries
}

async fn inbox(client: &Client) -> Vec<(String, String)> {
    entries(client, "inbox").await
}

async fn feed(client: &Client) -> Vec<(String, String)> {
    entries(client, "feed").await
}

/// How many times the page has fetched the yos it missed.
async fn caught_up(client: &Client) -> u64 {
    let count = client
        .execute("return document.body.dataset.caughtUp || '0';", vec![])
        .await
        .unwrap();
    count.as_str().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// Polls `condition` every 100 ms until it holds; panics after [`PATIENCE`].
async fn wait_for<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let deadline = Instant::now() + PATIENCE;
    while !condition().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory of its own for the scenario named `name`.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sse-browser-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `target/`: where cargo puts this test's scratch directory, `target/tmp`.
fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_owned()
}
