//! Webhooks, over real TCP: an axum app on 127.0.0.1 receives them as an app would and checks
//! their signatures on its own (with `ring`, not with `sse`); streams are served by
//! `sse::serve` and `axum::serve`. A dead receiver, one that never answers and one that answers
//! `500` delay no stream and no publish, and each gets what its answers call for.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{extract::State, http::HeaderMap, http::StatusCode, routing::post, Router};
use serde_json::Value;
use sse::{Config, Hub, Webhooks};
use sse_tests::{eventually, presence_app, serve, serve_with_axum, Client};
use tokio::sync::Semaphore;

const SECRET: &str = "webhook-test-secret-of-32-bytes-or-more";

type Serve = fn(Router) -> std::pin::Pin<Box<dyn std::future::Future<Output = SocketAddr>>>;

const SERVERS: [(&str, Serve); 2] = [
    ("sse::serve", |app| Box::pin(serve(app))),
    ("axum::serve", |app| Box::pin(serve_with_axum(app))),
];

/// One POST the receiver got, and what it answered.
#[derive(Debug, Clone)]
struct Received {
    delivery: String,
    timestamp: String,
    signature: String,
    body: String,
    answered: u16,
}

/// How the receiver answers.
#[derive(Clone)]
struct Receiver {
    posts: Arc<Mutex<Vec<Received>>>,
    /// Answers `500` to this many POSTs first.
    failures: Arc<Mutex<usize>>,
    /// Each answer waits for a permit: none given, it never answers.
    answers: Arc<Semaphore>,
}

impl Receiver {
    /// A receiver on a free loopback port, answering `200` at once.
    async fn start() -> (Receiver, SocketAddr) {
        Receiver::answering(1_000).await
    }

    /// A receiver that answers nothing until [`Receiver::answer`].
    async fn holding() -> (Receiver, SocketAddr) {
        Receiver::answering(0).await
    }

    /// A receiver answering up to `requests` requests at once.
    async fn answering(requests: usize) -> (Receiver, SocketAddr) {
        let receiver = Receiver {
            posts: Arc::default(),
            failures: Arc::default(),
            answers: Arc::new(Semaphore::new(requests)),
        };
        let app = Router::new()
            .route("/hooks", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, addr)
    }

    fn answer(&self) {
        self.answers.add_permits(1_000);
    }

    fn posts(&self) -> Vec<Received> {
        self.posts.lock().unwrap().clone()
    }

    /// Every event in the batches answered `200`, in order.
    fn delivered(&self) -> Vec<Value> {
        let posts = self.posts();
        let delivered = posts.iter().filter(|post| post.answered == 200);
        delivered
            .flat_map(|post| body(post)["events"].as_array().unwrap().clone())
            .collect()
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let header = |name: &str| {
        let value = headers.get(name).map(|value| value.to_str().unwrap());
        value.unwrap_or_default().to_owned()
    };
    let mut received = Received {
        delivery: header("x-sse-delivery"),
        timestamp: header("x-sse-timestamp"),
        signature: header("x-sse-signature"),
        body,
        answered: 0,
    };
    let index = {
        let mut posts = receiver.posts.lock().unwrap();
        posts.push(received.clone());
        posts.len() - 1
    };
    let _answer = receiver.answers.acquire().await.unwrap();
    let status = {
        let mut failures = receiver.failures.lock().unwrap();
        match *failures {
            0 => StatusCode::OK,
            _ => {
                *failures -= 1;
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    };
    received.answered = status.as_u16();
    receiver.posts.lock().unwrap()[index] = received;
    status
}

fn body(post: &Received) -> Value {
    serde_json::from_str(&post.body).unwrap()
}

/// Checks the signature as an app does: HMAC-SHA256 of `timestamp.body`, hex, and a timestamp
/// of the last five minutes.
fn signed(post: &Received) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let Some(hex) = post.signature.strip_prefix("sha256=") else {
        return false;
    };
    let Some(signature) = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let message = format!("{}.{}", post.timestamp, post.body);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let fresh = post
        .timestamp
        .parse::<u64>()
        .is_ok_and(|at| at.abs_diff(now) < 300);
    fresh && ring::hmac::verify(&key, message.as_bytes(), &signature).is_ok()
}

/// `name user` of each event, and the stream's groups or the event's group.
fn shown(events: &[Value]) -> Vec<String> {
    let shown = events.iter().map(|event| {
        let place = match &event["groups"] {
            Value::Array(groups) => format!("{groups:?}"),
            _ => event["group"].to_string(),
        };
        format!(
            "{} {} {place}",
            event["name"].as_str().unwrap(),
            event["user"]
        )
    });
    shown.collect()
}

fn webhooks(addr: SocketAddr) -> Webhooks {
    Webhooks::new(&format!("http://{addr}/hooks"), SECRET).unwrap()
}

#[tokio::test]
async fn opens_closes_joins_and_leaves_arrive_signed_in_batches() {
    for (server, start) in SERVERS {
        let (receiver, hook_addr) = Receiver::start().await;
        let batched = webhooks(hook_addr)
            .batch_events(10)
            .batch_wait(Duration::from_millis(300));
        let hub = Hub::new(Config::default().webhooks(batched));
        let addr = start(presence_app(&hub)).await;

        let alice = Client::open(&format!("http://{addr}/room/alice"), &[]).await;
        let anonymous = Client::open(&format!("http://{addr}/room"), &[]).await;
        eventually("3 events delivered", || receiver.delivered().len() == 3).await;
        drop((alice, anonymous));
        eventually("6 events delivered", || receiver.delivered().len() == 6).await;

        let mut events = receiver.delivered();
        let (opened, closed) = events.split_at_mut(3);
        // The two streams' events come in the order they happened, but which stream the server
        // saw first is its own business.
        opened.sort_by_key(|event| event["user"].is_null());
        closed.sort_by_key(|event| event["user"].is_null());
        assert_eq!(
            shown(&events),
            [
                r#"stream-opened "alice" [String("room")]"#,
                r#"presence-join "alice" "room""#,
                r#"stream-opened null [String("room")]"#,
                r#"presence-leave "alice" "room""#,
                r#"stream-closed "alice" [String("room")]"#,
                r#"stream-closed null [String("room")]"#,
            ],
            "{server}: {events:#?}"
        );
        let alice_opened = &events[0];
        assert_eq!(alice_opened["meta"], "alice's meta", "{server}");
        assert_eq!(events[1]["meta"], "alice's meta", "{server}");
        assert_eq!(events[4]["reason"], "client-left", "{server}");
        assert_eq!(alice_opened["stream"], events[4]["stream"], "{server}");

        let posts = receiver.posts();
        assert!(posts.iter().all(signed), "{server}: {posts:#?}");
        assert!(
            posts.len() < 6,
            "{server}: events come in batches: {posts:#?}"
        );
        let hub_name = &body(&posts[0])["hub"];
        assert!(posts.iter().all(|post| &body(post)["hub"] == hub_name));
        let mut deliveries: Vec<&str> = posts.iter().map(|post| post.delivery.as_str()).collect();
        deliveries.dedup();
        assert_eq!(
            deliveries.len(),
            posts.len(),
            "{server}: one delivery per batch"
        );

        let mut forged = posts[0].clone();
        forged.body = forged.body.replace("alice", "mallory");
        assert!(!signed(&forged), "the check itself refuses a changed body");
        let stats = hub.stats().webhooks.unwrap();
        assert_eq!(
            (stats.delivered, stats.failed_attempts, stats.dropped),
            (6, 0, 0)
        );
        assert!(hub
            .stats()
            .to_string()
            .contains("sse_webhook_events_delivered_total 6\n"));
    }
}

#[tokio::test]
async fn a_dead_receiver_delays_no_stream_and_no_publish_and_is_tried_a_bounded_number_of_times() {
    for (server, start) in SERVERS {
        let closed_port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let webhooks = webhooks(closed_port)
            .batch_wait(Duration::from_millis(10))
            .attempts(3)
            .backoff(Duration::from_millis(20))
            .max_backoff(Duration::from_millis(40));
        let hub = Hub::new(Config::default().webhooks(webhooks));
        let addr = start(presence_app(&hub)).await;

        let mut alice = Client::open(&format!("http://{addr}/room/alice"), &[]).await;
        for n in 0..50 {
            hub.publish("room", Some("n"), n.to_string()).unwrap();
        }
        let data: Vec<String> = alice.take(50).await.into_iter().map(|e| e.data).collect();
        assert_eq!(
            data,
            (0..50).map(|n| n.to_string()).collect::<Vec<_>>(),
            "{server}"
        );
        drop(alice);

        eventually("every event abandoned", || {
            let stats = hub.stats().webhooks.unwrap();
            stats.abandoned == 4 && stats.queued == 0
        })
        .await;
        let stats = hub.stats().webhooks.unwrap();
        assert_eq!(stats.delivered, 0, "{server}");
        // Each batch is tried 3 times, then abandoned: at most 4 batches (one per event).
        assert_eq!(stats.failed_attempts % 3, 0, "{server}: {stats:?}");
        assert!(
            (3..=12).contains(&stats.failed_attempts),
            "{server}: {stats:?}"
        );
    }
}

#[tokio::test]
async fn a_receiver_that_never_answers_delays_no_stream_and_no_publish() {
    for (server, start) in SERVERS {
        let (receiver, hook_addr) = Receiver::holding().await;
        let webhooks = webhooks(hook_addr)
            .batch_wait(Duration::from_millis(10))
            .timeout(Duration::from_secs(60));
        let hub = Hub::new(Config::default().webhooks(webhooks));
        let addr = start(presence_app(&hub)).await;

        let mut alice = Client::open(&format!("http://{addr}/room/alice"), &[]).await;
        eventually("the receiver holds a batch", || {
            !receiver.posts().is_empty()
        })
        .await;
        // While the webhooks wait for an answer, streams open, events are published and
        // delivered, streams close.
        let mut bob = Client::open(&format!("http://{addr}/room/bob"), &[]).await;
        for n in 0..50 {
            hub.publish("room", Some("n"), n.to_string()).unwrap();
        }
        for client in [&mut alice, &mut bob] {
            let data: Vec<String> = client.take(50).await.into_iter().map(|e| e.data).collect();
            assert_eq!(
                data,
                (0..50).map(|n| n.to_string()).collect::<Vec<_>>(),
                "{server}"
            );
        }
        drop((alice, bob));
        eventually("both closes queued", || {
            hub.stats().webhooks.unwrap().queued == 6
        })
        .await;
        assert_eq!(receiver.posts().len(), 1, "{server}: still the one request");
        assert!(receiver.posts()[0].answered == 0, "{server}");

        receiver.answer();
        eventually("every event delivered", || receiver.delivered().len() == 8).await;
        let posts = receiver.posts();
        assert!(posts.iter().all(signed), "{server}");
        assert_eq!(
            posts.len(),
            2,
            "{server}: the held batch, then the rest: {posts:#?}"
        );
    }
}

#[tokio::test]
async fn a_batch_answered_500_is_retried_and_delivered_once() {
    for (server, start) in SERVERS {
        let (receiver, hook_addr) = Receiver::start().await;
        *receiver.failures.lock().unwrap() = 2;
        let webhooks = webhooks(hook_addr)
            .batch_wait(Duration::from_millis(200))
            .attempts(5)
            .backoff(Duration::from_millis(20))
            .max_backoff(Duration::from_millis(100));
        let hub = Hub::new(Config::default().webhooks(webhooks));
        let addr = start(presence_app(&hub)).await;

        let alice = Client::open(&format!("http://{addr}/room/alice"), &[]).await;
        eventually("opened and joined, delivered", || {
            receiver.delivered().len() == 2
        })
        .await;
        drop(alice);
        eventually("left and closed, delivered", || {
            receiver.delivered().len() == 4
        })
        .await;

        let posts = receiver.posts();
        let answers: Vec<u16> = posts.iter().map(|post| post.answered).collect();
        assert_eq!(answers, [500, 500, 200, 200], "{server}");
        // The three attempts are one delivery: the same name and body, each signed anew.
        assert!(posts[..3]
            .iter()
            .all(|post| post.delivery == posts[0].delivery));
        assert!(posts[..3].iter().all(|post| post.body == posts[0].body));
        assert_ne!(posts[3].delivery, posts[0].delivery);
        assert!(posts.iter().all(signed), "{server}");
        assert_eq!(
            shown(&receiver.delivered()),
            [
                r#"stream-opened "alice" [String("room")]"#,
                r#"presence-join "alice" "room""#,
                r#"presence-leave "alice" "room""#,
                r#"stream-closed "alice" [String("room")]"#,
            ],
            "{server}: each event once"
        );
        let stats = hub.stats().webhooks.unwrap();
        assert_eq!(
            (stats.delivered, stats.failed_attempts, stats.abandoned),
            (4, 2, 0)
        );
    }
}
