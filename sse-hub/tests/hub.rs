//! `sse-hub` as a process, as it is deployed: configured by its environment, it streams the
//! groups a token allows, publishes what the app POSTs, serves its metrics and health, refuses
//! what it must with the reason, refuses to start without a key, and on SIGTERM ends its
//! streams and exits.

use std::{
    net::{SocketAddr, TcpListener},
    process::Stdio,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use sse_tests::{http_client, request, within, Client};
use tokio::process::{Child, Command};

const SECRET: &str = "hub-test-secret-of-32-bytes-or-more!!";
const PUBLISH_TOKEN: &str = "hub-test-publish-token-0123456789";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/keys");

/// A hub started with `env` on a free port, once it answers `/health`.
async fn hub(env: &[(&str, &str)]) -> (Child, SocketAddr) {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_sse-hub"))
        .env_clear()
        .env("SSE_HUB_ADDR", addr.to_string())
        .env("SSE_PUBLISH_TOKEN", PUBLISH_TOKEN)
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
        "sse-hub: no token key: set SSE_TOKEN_SECRET (HS256) or SSE_TOKEN_PUBLIC_KEY (a PEM file)"
    );
}
