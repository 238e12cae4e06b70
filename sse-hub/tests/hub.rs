//! `sse-hub` as a process, as it is deployed: configured by its environment and a TOML file, it
//! streams the groups a token allows (verified with the key its `kid` names), publishes what
//! the app POSTs, tells the app of streams and presence by signed webhooks, serves its metrics
//! and health, refuses what it must with the reason, refuses to start on any mistake in its
//! settings, naming it, shares its groups with other hubs through Redis or Postgres, and on SIGTERM ends
//! its streams and exits.

use std::{
    net::{SocketAddr, TcpListener},
    process::Stdio,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sse_tests::{eventually, http_client, request, within, Client};
use tokio::process::{Child, Command};

const SECRET: &str = "hub-test-secret-of-32-bytes-or-more!!";
const PUBLISH_TOKEN: &str = "hub-test-publish-token-0123456789";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/keys");

/// A hub started with `env` (and the publish token) on a free port, once it answers `/health`.
async fn hub(env: &[(&str, &str)]) -> (Child, SocketAddr) {
    let with_token = [&[("SSE_PUBLISH_TOKEN", PUBLISH_TOKEN)], env].concat();
    hub_with(&[], &with_token).await
}

/// A hub started with `args` and `env` on a free port, once it answers `/health`.
async fn hub_with(args: &[&str], env: &[(&str, &str)]) -> (Child, SocketAddr) {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sse-hub"))
        .args(args)
        .env_clear()
        .env("SSE_HUB_ADDR", addr.to_string())
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    within(async {
        while http_client()
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    (child, addr)
}

fn token(groups: &[&str], algorithm: Algorithm, key: &EncodingKey) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({"groups": groups, "sub": "alice", "exp": exp});
    jsonwebtoken::encode(&Header::new(algorithm), &claims, key).unwrap()
}

async fn publish(addr: SocketAddr, group: &str, data: &str) -> u16 {
    let answer = http_client()
        .post(format!("http://{addr}/publish"))
        .bearer_auth(PUBLISH_TOKEN)
        .header("content-type", "application/json")
        .body(json!({"group": group, "data": data}).to_string())
        .send();
    within(answer).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn it_streams_what_tokens_allow_publishes_and_stops_on_sigterm() {
    let (mut child, addr) = hub(&[
        ("SSE_TOKEN_SECRET", SECRET),
        (
            "SSE_CORS_ORIGINS",
            "https://app.example, https://www.app.example",
        ),
    ])
    .await;
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let token = token(&["room.7", "user.alice.*"], Algorithm::HS256, &key);

    // Two groups in one stream, as `?group=` says; every group the token names without it.
    let both = format!("http://{addr}/events?group=room.7&group=user.alice.inbox&token={token}");
    let mut stream = Client::open(&both, &[("origin", "https://app.example")]).await;
    assert_eq!(
        stream.response_headers["access-control-allow-origin"],
        "https://app.example"
    );
    let mut named = Client::open(&format!("http://{addr}/events?token={token}"), &[]).await;
    let mut one = Client::open(&format!("http://{addr}/events/room.7?token={token}"), &[]).await;
    // A `200` comes once the stream is subscribed: what is published now reaches it.
    assert_eq!(publish(addr, "user.alice.inbox", "for alice").await, 200);
    assert_eq!(publish(addr, "room.7", "for the room").await, 200);
    let seen: Vec<String> = stream.take(2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(seen, ["for alice", "for the room"]);
    assert_eq!(named.next().await.unwrap().data, "for the room");
    assert_eq!(one.next().await.unwrap().data, "for the room");
    let metrics = within(http_client().get(format!("http://{addr}/metrics")).send()).await;
    let metrics = within(metrics.unwrap().text()).await.unwrap();
    assert!(metrics.contains("sse_open_streams 3\n"), "{metrics}");
    assert!(
        metrics.contains("sse_events_published_total 2\n"),
        "{metrics}"
    );

    // Refusals, with their reasons.
    for (path, status, reason) in [
        (
            "/events?group=room.7".to_owned(),
            401,
            "no token: send it as `Authorization: Bearer`, `?token=` or a cookie",
        ),
        (
            format!("/events?group=room.8&token={token}"),
            403,
            "the token does not allow group room.8",
        ),
        (format!("/events?group=no%20spaces&token={token}"), 400, ""),
    ] {
        let answer = request(&format!("http://{addr}{path}"), &[]).await;
        assert_eq!(answer.status().as_u16(), status, "{path}");
        let body = within(answer.text()).await.unwrap();
        assert!(body.starts_with(reason), "{path}: {body}");
    }

    // SIGTERM: the streams end, and the hub exits, successfully.
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    assert!(stream.next().await.is_none());
    let status = within(child.wait()).await.unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn it_takes_a_public_key_from_a_file() {
    let public = format!("{KEYS}/ed25519.pub.pem");
    let (_child, addr) = hub(&[("SSE_TOKEN_PUBLIC_KEY", &public)]).await;
    let private = std::fs::read(format!("{KEYS}/ed25519.pem")).unwrap();
    let key = EncodingKey::from_ed_pem(&private).unwrap();
    let signed = token(&["room.7"], Algorithm::EdDSA, &key);
    let url = format!("http://{addr}/events/room.7?token={signed}");
    let mut stream = Client::open(&url, &[]).await;
    assert_eq!(publish(addr, "room.7", "signed by the app").await, 200);
    assert_eq!(stream.next().await.unwrap().data, "signed by the app");
    // An HS256 token "signed" with the public key, as anyone could: refused.
    let public = std::fs::read(&public).unwrap();
    let hs = token(
        &["room.7"],
        Algorithm::HS256,
        &EncodingKey::from_secret(&public),
    );
    let answer = request(&format!("http://{addr}/events/room.7?token={hs}"), &[]).await;
    assert_eq!(answer.status(), 401);
}

#[tokio::test]
async fn it_will_not_start_without_a_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_sse-hub"))
        .env_clear()
        .env("SSE_PUBLISH_TOKEN", PUBLISH_TOKEN)
        .output();
    let out = within(out).await.unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "sse-hub: token_keys: no key verifies page tokens: set SSE_TOKEN_SECRET or \
         SSE_TOKEN_PUBLIC_KEY or `token_keys` in a --config file ([[token_keys]] with a secret or \
         a public_key)"
    );
}

/// A file of the test's own with `text`, removed when dropped.
struct ConfigFile(std::path::PathBuf);

impl ConfigFile {
    fn new(text: &str) -> ConfigFile {
        static FILES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("sse-hub-test-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        ConfigFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn token_with_kid(kid: Option<&str>, algorithm: Algorithm, key: &EncodingKey) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = json!({"groups": ["room.7"], "sub": "alice", "exp": exp});
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

#[tokio::test]
async fn a_config_file_gives_keys_by_kid_and_the_environment_overrides_it() {
    let file = ConfigFile::new(&format!(
        r#"
        addr = "127.0.0.1:1" # the environment's SSE_HUB_ADDR wins
        publish_token = "{PUBLISH_TOKEN}"
        cors_origins = ["https://app.example"]
        max_streams = 100

        [[token_keys]]
        kid = "2026-12"
        secret = "{SECRET}"

        [[token_keys]]
        kid = "2027-01"
        public_key = "{KEYS}/ed25519.pub.pem"
        "#
    ));
    let (_child, addr) = hub_with(&["--config", file.path()], &[]).await;

    let secret = EncodingKey::from_secret(SECRET.as_bytes());
    let private = std::fs::read(format!("{KEYS}/ed25519.pem")).unwrap();
    let ed25519 = EncodingKey::from_ed_pem(&private).unwrap();
    let hs = token_with_kid(Some("2026-12"), Algorithm::HS256, &secret);
    let ed = token_with_kid(Some("2027-01"), Algorithm::EdDSA, &ed25519);
    let url = |token: &str| format!("http://{addr}/events/room.7?token={token}");
    let mut by_secret = Client::open(&url(&hs), &[("origin", "https://app.example")]).await;
    assert_eq!(
        by_secret.response_headers["access-control-allow-origin"],
        "https://app.example"
    );
    let mut by_key_pair = Client::open(&url(&ed), &[]).await;
    assert_eq!(publish(addr, "room.7", "for both").await, 200);
    assert_eq!(by_secret.next().await.unwrap().data, "for both");
    assert_eq!(by_key_pair.next().await.unwrap().data, "for both");

    for (kid, algorithm, key) in [
        (Some("2025-01"), Algorithm::HS256, &secret), // retired
        (None, Algorithm::HS256, &secret),            // the file gives no key without kid
        (Some("2027-01"), Algorithm::HS256, &secret), // the id of another key
    ] {
        let token = token_with_kid(kid, algorithm, key);
        let answer = request(&url(&token), &[]).await;
        assert_eq!(answer.status(), 401, "{kid:?}");
        let reason = within(answer.text()).await.unwrap();
        let expected = match kid {
            Some("2027-01") => "the token's algorithm is not its key's",
            _ => "unknown key (kid)",
        };
        assert!(reason.starts_with(expected), "{kid:?}: {reason}");
    }
}

/// What the hub says on stderr when it refuses to start with `args` and `env`.
async fn refusal(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sse-hub"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output();
    let out = within(out).await.unwrap();
    assert!(!out.status.success(), "it started with {args:?} {env:?}");
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

#[tokio::test]
async fn every_mistake_in_the_settings_is_named_before_anything_listens() {
    let key = format!("[[token_keys]]\nsecret = \"{SECRET}\"\n");
    let token = format!("publish_token = \"{PUBLISH_TOKEN}\"\n");
    for (text, env, expected) in [
        (
            format!("{token}{key}adress = \"127.0.0.1:9\"\n"),
            &[][..],
            "unknown field `adress`",
        ),
        (
            format!("{token}{key}max_streams = \"many\"\n"),
            &[],
            "max_streams = \"many\"",
        ),
        (
            format!("{token}{key}[webhooks]\nurl = \"ftp://app\"\nsecret = \"{SECRET}\"\n"),
            &[],
            ": webhooks.url: \"ftp://app\" is not an http:// URL",
        ),
        (
            format!("{token}{key}[webhooks]\nurl = \"http://app/hooks\"\n"),
            &[],
            "webhooks: webhooks need a url and a secret",
        ),
        (
            format!("{token}{key}[[token_keys]]\nsecret = \"{SECRET}\"\n"),
            &[],
            ": token_keys[1].kid: a second key without kid",
        ),
        (
            format!("{token}{key}"),
            &[("SSE_MAX_STREAMS", "many")],
            "sse-hub: SSE_MAX_STREAMS: \"many\" is not a number",
        ),
        (
            format!("{token}{key}"),
            &[
                ("SSE_WEBHOOK_URL", "http://app/hooks"),
                ("SSE_WEBHOOK_SECRET", "short"),
            ],
            "sse-hub: SSE_WEBHOOK_SECRET: the webhook secret has 5 bytes; it needs at least 32",
        ),
    ] {
        let file = ConfigFile::new(&text);
        let said = refusal(&["--config", file.path()], env).await;
        assert!(said.contains(expected), "{text}: {said}");
    }
    let said = refusal(&[], &[("SSE_HUB_CONFIG", "/nonexistent/hub.toml")]).await;
    assert!(
        said.starts_with("sse-hub: /nonexistent/hub.toml: cannot read it: "),
        "{said}"
    );
    let said = refusal(&["--conf", "hub.toml"], &[]).await;
    assert!(
        said.starts_with("sse-hub: unknown argument \"--conf\""),
        "{said}"
    );
}

/// POSTs an app got: their signature checked with `ring` as the app would, their events.
#[derive(Clone, Default)]
struct App(Arc<Mutex<Vec<Value>>>);

impl App {
    /// An app on a free loopback port that takes webhooks at `/sse/webhooks`, checking each.
    async fn start() -> (App, SocketAddr) {
        let app = App::default();
        let events = app.clone();
        let router = axum::Router::new().route(
            "/sse/webhooks",
            axum::routing::post(move |headers: HeaderMap, body: String| async move {
                let header = |name| headers[name].to_str().unwrap().to_owned();
                let timestamp = header("x-sse-timestamp");
                let signature = header("x-sse-signature");
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, WEBHOOK_SECRET.as_bytes());
                let signed = ring::hmac::sign(&key, format!("{timestamp}.{body}").as_bytes());
                let hex: String = signed.as_ref().iter().map(|b| format!("{b:02x}")).collect();
                if signature != format!("sha256={hex}") {
                    return StatusCode::UNAUTHORIZED;
                }
                let batch: Value = serde_json::from_str(&body).unwrap();
                let batch = batch["events"].as_array().unwrap().iter().cloned();
                events.0.lock().unwrap().extend(batch);
                StatusCode::NO_CONTENT
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (app, addr)
    }

    /// `name user` of each event received.
    fn seen(&self) -> Vec<String> {
        let events = self.0.lock().unwrap();
        let shown = events
            .iter()
            .map(|e| format!("{} {}", e["name"].as_str().unwrap(), e["user"]));
        shown.collect()
    }
}

const WEBHOOK_SECRET: &str = "the-app-s-webhook-secret-of-32-bytes+";

#[tokio::test]
async fn it_tells_the_app_of_streams_and_presence_by_signed_webhooks() {
    let (app, app_addr) = App::start().await;
    let hooks = format!("http://{app_addr}/sse/webhooks");
    let file = ConfigFile::new("[webhooks]\nbatch_wait_ms = 20\nattempts = 3\n");
    let (mut child, addr) = hub_with(
        &["--config", file.path()],
        &[
            ("SSE_PUBLISH_TOKEN", PUBLISH_TOKEN),
            ("SSE_TOKEN_SECRET", SECRET),
            ("SSE_WEBHOOK_URL", &hooks),
            ("SSE_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ],
    )
    .await;
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let token = token(&["room.7"], Algorithm::HS256, &key);
    let mut stream = Client::open(&format!("http://{addr}/events/room.7?token={token}"), &[]).await;
    assert_eq!(publish(addr, "room.7", "hello").await, 200);
    assert_eq!(stream.next().await.unwrap().data, "hello");
    eventually("opened and joined", || app.seen().len() == 2).await;
    drop(stream);
    eventually("left and closed", || app.seen().len() == 4).await;
    assert_eq!(
        app.seen(),
        [
            r#"stream-opened "alice""#,
            r#"presence-join "alice""#,
            r#"presence-leave "alice""#,
            r#"stream-closed "alice""#,
        ]
    );
    let metrics = within(http_client().get(format!("http://{addr}/metrics")).send()).await;
    let metrics = within(metrics.unwrap().text()).await.unwrap();
    assert!(
        metrics.contains("sse_webhook_events_delivered_total 4\n"),
        "{metrics}"
    );

    // On SIGTERM the streams' closes are sent before the hub exits.
    let _stream = Client::open(&format!("http://{addr}/events/room.7?token={token}"), &[]).await;
    eventually("opened again", || app.seen().len() == 6).await;
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(within(killed).await.unwrap().success());
    assert!(within(child.wait()).await.unwrap().success());
    assert_eq!(
        app.seen()[6..],
        [r#"presence-leave "alice""#, r#"stream-closed "alice""#]
    );
    assert_eq!(app.0.lock().unwrap()[7]["reason"], "shut-down");
}

/// Two hubs on the engine at `broker_url`, each with a stream of `room.7`.
#[cfg(any(feature = "redis", feature = "postgres"))]
async fn two_hubs_streaming_room_7(broker_url: &str) -> [(Child, SocketAddr, Client); 2] {
    let env = [("SSE_TOKEN_SECRET", SECRET), ("SSE_BROKER_URL", broker_url)];
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let token = token(&["room.7"], Algorithm::HS256, &key);
    let mut hubs = Vec::new();
    for _ in 0..2 {
        let (child, addr) = hub(&env).await;
        let stream = Client::open(&format!("http://{addr}/events/room.7?token={token}"), &[]).await;
        hubs.push((child, addr, stream));
    }
    hubs.try_into().ok().expect("two hubs")
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn two_hubs_share_their_groups_through_redis() {
    let redis = sse_tests::redis_servers::RedisServer::start().await;
    let [(_first, first, mut on_first), (_second, second, mut on_second)] =
        two_hubs_streaming_room_7(&redis.url()).await;
    redis.wait_listeners("room.7", 2).await;

    assert_eq!(
        publish(first, "room.7", "published on the first").await,
        200
    );
    assert_eq!(
        publish(second, "room.7", "published on the second").await,
        200
    );
    for stream in [&mut on_first, &mut on_second] {
        let seen: Vec<String> = stream.take(2).await.into_iter().map(|e| e.data).collect();
        assert_eq!(seen, ["published on the first", "published on the second"]);
    }
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn two_hubs_share_their_groups_through_postgres() {
    let postgres = sse_tests::postgres_server::PostgresServer::start().await;
    let [(_first, first, mut on_first), (_second, second, mut on_second)] =
        two_hubs_streaming_room_7(&postgres.url()).await;
    // Postgres shows no listeners to wait for: the second hub listens once a publish on the
    // first reaches its stream. What was published before is not promised to it.
    let mut tries = 0;
    loop {
        assert_eq!(publish(first, "room.7", "are you there").await, 200);
        let heard = tokio::time::timeout(Duration::from_millis(200), on_second.next()).await;
        if let Ok(Some(_)) = heard {
            break;
        }
        tries += 1;
        assert!(tries < 50, "the second hub never heard the first");
    }

    assert_eq!(
        publish(second, "room.7", "published on the second").await,
        200
    );
    assert_eq!(
        publish(first, "room.7", "published on the first").await,
        200
    );
    for stream in [&mut on_first, &mut on_second] {
        let mut seen = Vec::new();
        while seen.last().map(String::as_str) != Some("published on the first") {
            seen.push(stream.next().await.expect("the stream goes on").data);
        }
        let ours = &seen[seen.len() - 2..];
        assert_eq!(ours, ["published on the second", "published on the first"]);
        assert!(seen[..seen.len() - 2]
            .iter()
            .all(|data| data == "are you there"));
    }
}
