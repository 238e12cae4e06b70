//! `sse::Token` over real TCP, under `sse::serve` and `axum::serve`: a signed token, sent as a
//! bearer header, a cookie or `?token=`, opens the groups it allows (exact names and
//! `prefix.*`), as its user, until it expires; every other token is refused with the status and
//! reason it deserves, and opens nothing. A token signed by the Python package is accepted.

use std::{
    net::SocketAddr,
    process::Stdio,
    sync::{
        atomic::{AtomicUsize, Ordering::SeqCst},
        Arc,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{extract::Path, response::IntoResponse, routing::get, Extension, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sse_tests::{eventually, request, within, Client};

const SECRET: &[u8] = b"test-secret-of-at-least-32-bytes-0123456789";
const ED25519_PRIVATE: &str = include_str!("keys/ed25519.pem");
const ED25519_PUBLIC: &str = include_str!("keys/ed25519.pub.pem");
const RSA_PRIVATE: &str = include_str!("keys/rsa.pem");
const RSA_PUBLIC: &str = include_str!("keys/rsa.pub.pem");

/// The HS256 secret for tokens without `kid`, the Ed25519 key as `ed`, the RSA key as `rsa`.
fn keys() -> sse::TokenKeys {
    sse::TokenKeys::new()
        .key(sse::TokenKey::hs256(SECRET).unwrap())
        .key_with_id("ed", sse::TokenKey::ed25519_pem(ED25519_PUBLIC).unwrap())
        .key_with_id("rsa", sse::TokenKey::rs256_pem(RSA_PUBLIC).unwrap())
}

/// A bare `#[sse::subscribe]` handler: the group in the path, if the token allows it.
#[sse::subscribe]
async fn group_events(
    token: sse::Token,
    Path(group): Path<sse::GroupName>,
) -> Result<sse::Join, sse::TokenRefused> {
    token.join([group])
}

/// A plain handler: every group the token names, on the hub the layer put in the request.
async fn named_events(
    token: sse::Token,
    last: sse::LastEventId,
    Extension(hub): Extension<sse::Hub>,
) -> axum::response::Response {
    match token.join(token.named_groups()) {
        Ok(join) => hub.subscribe(join, &last).into_response(),
        Err(refused) => refused.into_response(),
    }
}

async fn start(hub: &sse::Hub, with_axum: bool) -> SocketAddr {
    let app = Router::new()
        .route("/events/{group}", get(group_events))
        .route("/named", get(named_events))
        .layer(keys().layer())
        .layer(hub.layer());
    match with_axum {
        true => sse_tests::serve_with_axum(app).await,
        false => sse_tests::serve(app).await,
    }
}

/// Seconds since 1970, `from_now` from now.
fn at(from_now: i64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    now.checked_add_signed(from_now).unwrap()
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn signed(algorithm: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(algorithm);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// A token's three parts with its header replaced by `header`, unsigned or signed by hand.
fn with_header(header: &Value, claims: &Value, sign: impl FnOnce(&str) -> String) -> String {
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = sign(&message);
    format!("{message}.{signature}")
}

/// HMAC-SHA256 of `message` with `key`, base64url: what an HS256 signature is.
fn hmac_b64(key: &[u8], message: &str) -> String {
    use base64::Engine as _;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&key, message.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
}

/// Opens `path` with `headers`; the stream, which must be open.
async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Client {
    Client::open(&format!("http://{addr}{path}"), headers).await
}

/// Asks for `path` with `headers`; the refusal's status, body and `WWW-Authenticate`.
async fn refused(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let answer = request(&format!("http://{addr}{path}"), headers).await;
    let status = answer.status().as_u16();
    let challenge = answer
        .headers()
        .get("www-authenticate")
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, within(answer.text()).await.unwrap(), challenge)
}

async fn a_token_opens_its_groups_from_a_header_a_cookie_or_the_query(with_axum: bool) {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = start(&hub, with_axum).await;
    let token = hs256(&json!({
        "groups": ["yo", "rooms.*"], "sub": "alice", "meta": "Alice", "exp": at(600)
    }));
    let bearer = format!("Bearer {token}");
    let cookie = format!("theme=dark; {}={token}", sse::TOKEN_COOKIE);
    let mut by_header = open(addr, "/events/yo", &[("authorization", &bearer)]).await;
    let mut by_cookie = open(addr, "/events/rooms.7", &[("cookie", &cookie)]).await;
    let mut by_query = open(addr, &format!("/events/rooms.7.b?token={token}"), &[]).await;
    let mut named = open(addr, &format!("/named?token={token}"), &[]).await;
    eventually("four streams open", || {
        hub.group_stats("yo").subscribers == 2
            && hub.group_stats("rooms.7").subscribers == 1
            && hub.group_stats("rooms.7.b").subscribers == 1
    })
    .await;

    for group in ["yo", "rooms.7", "rooms.7.b"] {
        hub.publish(group, Some("e"), group).unwrap();
    }
    assert_eq!(by_header.next().await.unwrap().data, "yo");
    assert_eq!(by_cookie.next().await.unwrap().data, "rooms.7");
    assert_eq!(by_query.next().await.unwrap().data, "rooms.7.b");
    assert_eq!(named.next().await.unwrap().data, "yo", "named: only `yo`");

    // Each stream counts as the token's user.
    let present = within(hub.presence("rooms.7")).await.unwrap();
    assert_eq!(
        (present[0].user.as_str(), present[0].meta.as_str()),
        ("alice", "Alice")
    );
}

#[tokio::test]
async fn a_token_opens_its_groups_from_a_header_a_cookie_or_the_query_under_sse_serve() {
    a_token_opens_its_groups_from_a_header_a_cookie_or_the_query(false).await;
}

#[tokio::test]
async fn a_token_opens_its_groups_from_a_header_a_cookie_or_the_query_under_axum_serve() {
    a_token_opens_its_groups_from_a_header_a_cookie_or_the_query(true).await;
}

async fn ed25519_and_rsa_tokens_are_accepted_with_their_keys(with_axum: bool) {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = start(&hub, with_axum).await;
    let claims = json!({"groups": ["yo"], "exp": at(600)});
    let ed = EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).unwrap();
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    for token in [
        signed(Algorithm::EdDSA, "ed", &ed, &claims),
        signed(Algorithm::RS256, "rsa", &rsa, &claims),
    ] {
        let mut stream = open(addr, &format!("/events/yo?token={token}"), &[]).await;
        eventually("open", || hub.group_stats("yo").subscribers == 1).await;
        hub.publish("yo", None, "signed").unwrap();
        assert_eq!(stream.next().await.unwrap().data, "signed");
        drop(stream);
        eventually("closed", || hub.group_stats("yo").subscribers == 0).await;
    }
}

#[tokio::test]
async fn ed25519_and_rsa_tokens_are_accepted_with_their_keys_under_sse_serve() {
    ed25519_and_rsa_tokens_are_accepted_with_their_keys(false).await;
}

#[tokio::test]
async fn ed25519_and_rsa_tokens_are_accepted_with_their_keys_under_axum_serve() {
    ed25519_and_rsa_tokens_are_accepted_with_their_keys(true).await;
}

async fn every_bad_token_is_refused_with_its_reason_and_opens_nothing(with_axum: bool) {
    let opened = Arc::new(AtomicUsize::new(0));
    let count = opened.clone();
    let hub = sse::Hub::new(sse::Config::default().on_open(move |_| {
        count.fetch_add(1, SeqCst);
    }));
    let addr = start(&hub, with_axum).await;
    let claims = json!({"groups": ["yo", "rooms.*"], "exp": at(600)});
    let ed = EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).unwrap();
    let other_secret = EncodingKey::from_secret(b"another-secret-of-32-bytes-or-more!!");
    let cases = [
        (
            "no token",
            String::new(),
            401,
            "no token: send it as `Authorization: Bearer`, `?token=` or a cookie",
        ),
        ("not a JWT", "yo".into(), 401, "malformed token"),
        (
            "another secret",
            jsonwebtoken::encode(&Header::default(), &claims, &other_secret).unwrap(),
            401,
            "bad signature",
        ),
        (
            "an unknown kid",
            signed(Algorithm::EdDSA, "2019", &ed, &claims),
            401,
            "unknown key (kid)",
        ),
        (
            "expired",
            hs256(&json!({"groups": ["yo"], "exp": at(-5)})),
            401,
            "token expired",
        ),
        (
            "not valid yet",
            hs256(&json!({"groups": ["yo"], "exp": at(600), "nbf": at(300)})),
            401,
            "token not valid yet (nbf)",
        ),
        (
            "no exp",
            hs256(&json!({"groups": ["yo"]})),
            401,
            "malformed token",
        ),
        (
            "exp past the end of time",
            hs256(&json!({"groups": ["yo"], "exp": u64::MAX})),
            401,
            "malformed token",
        ),
        (
            "exp as text",
            hs256(&json!({"groups": ["yo"], "exp": "never"})),
            401,
            "malformed token",
        ),
        (
            "alg none",
            with_header(&json!({"alg": "none"}), &claims, |_| String::new()),
            401,
            "unsigned token (alg none)",
        ),
        (
            "HS256 signed with the Ed25519 public key",
            with_header(&json!({"alg": "HS256", "kid": "ed"}), &claims, |message| {
                hmac_b64(ED25519_PUBLIC.as_bytes(), message)
            }),
            401,
            "the token's algorithm is not its key's",
        ),
        (
            "HS256 signed with the RSA public key",
            with_header(&json!({"alg": "HS256", "kid": "rsa"}), &claims, |message| {
                hmac_b64(RSA_PUBLIC.as_bytes(), message)
            }),
            401,
            "the token's algorithm is not its key's",
        ),
        (
            "EdDSA where the key is RSA",
            signed(Algorithm::EdDSA, "rsa", &ed, &claims),
            401,
            "the token's algorithm is not its key's",
        ),
    ];
    for (what, token, status, reason) in cases {
        let path = match token.as_str() {
            "" => "/events/yo".to_owned(),
            token => format!("/events/yo?token={token}"),
        };
        let (got, body, challenge) = refused(addr, &path, &[]).await;
        assert_eq!((got, body.as_str()), (status, reason), "{what}");
        // RFC 6750: a request without credentials gets the bare challenge.
        let expected = match token.is_empty() {
            true => "Bearer".to_owned(),
            false => format!(r#"Bearer error="invalid_token", error_description="{reason}""#),
        };
        assert_eq!(challenge, expected, "{what}");
    }

    // A good token, for a group it does not allow: 403. `rooms.*` is not `rooms`.
    let token = hs256(&claims);
    for group in ["admin", "rooms", "yo.bob"] {
        let path = format!("/events/{group}?token={token}");
        let (status, body, challenge) = refused(addr, &path, &[]).await;
        assert_eq!(
            (status, body, challenge),
            (
                403,
                format!("the token does not allow group {group}"),
                "".into()
            )
        );
    }
    // None of them opened a stream: the first stream the hook hears of is this good one (which
    // expires in three billion years: far, yet no trouble for the stream's timer).
    let far = hs256(&json!({"groups": ["yo"], "exp": 100_000_000_000_000_000u64}));
    let _good = open(addr, &format!("/events/yo?token={far}"), &[]).await;
    eventually("the good stream's hook ran", || opened.load(SeqCst) > 0).await;
    assert_eq!(opened.load(SeqCst), 1);
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_reason_and_opens_nothing_under_sse_serve() {
    every_bad_token_is_refused_with_its_reason_and_opens_nothing(false).await;
}

#[tokio::test]
async fn every_bad_token_is_refused_with_its_reason_and_opens_nothing_under_axum_serve() {
    every_bad_token_is_refused_with_its_reason_and_opens_nothing(true).await;
}

async fn at_its_expiry_the_stream_closes_and_the_token_is_refused(with_axum: bool) {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = start(&hub, with_axum).await;
    let token = hs256(&json!({"groups": ["yo"], "sub": "alice", "exp": at(2)}));
    let path = format!("/events/yo?token={token}");
    let mut stream = open(addr, &path, &[]).await;
    eventually("open", || hub.group_stats("yo").subscribers == 1).await;
    let id = hub.publish("yo", None, "before").unwrap();
    assert_eq!(stream.next().await.unwrap().data, "before");

    // Within two seconds: the stream says why it ends, where it stands, and ends.
    let closed = stream.next().await.unwrap();
    assert_eq!(
        (closed.event.as_str(), closed.data.as_str()),
        (sse::STREAM_CLOSED, r#"{"reason":"expired"}"#)
    );
    assert_eq!(closed.id, id.to_string());
    assert!(stream.next().await.is_none());
    eventually("alice left", || hub.group_stats("yo").subscribers == 0).await;

    // The browser comes back with the same URL and its last id: 401, so the page fetches a fresh
    // token, and with it resumes where it was.
    let last = ("last-event-id", closed.id.as_str());
    let (status, body, _) = refused(addr, &path, &[last]).await;
    assert_eq!((status, body.as_str()), (401, "token expired"));
    let missed = hub.publish("yo", None, "meanwhile").unwrap();
    let fresh = hs256(&json!({"groups": ["yo"], "sub": "alice", "exp": at(600)}));
    let mut again = open(addr, &format!("/events/yo?token={fresh}"), &[last]).await;
    let event = again.next().await.unwrap();
    assert_eq!(
        (event.data.as_str(), event.id),
        ("meanwhile", missed.to_string())
    );
}

#[tokio::test]
async fn at_its_expiry_the_stream_closes_and_the_token_is_refused_under_sse_serve() {
    at_its_expiry_the_stream_closes_and_the_token_is_refused(false).await;
}

#[tokio::test]
async fn at_its_expiry_the_stream_closes_and_the_token_is_refused_under_axum_serve() {
    at_its_expiry_the_stream_closes_and_the_token_is_refused(true).await;
}

/// A token signed by `sse_publish.subscribe_token` in a `python3` process.
async fn python_token(groups: &[&str], user: &str) -> String {
    let program = r#"
import json, sys
sys.path.insert(0, sys.argv[1])
import sse_publish
print(sse_publish.subscribe_token(json.loads(sys.argv[2]), user=sys.argv[3], ttl=600))
"#;
    let client = concat!(env!("CARGO_MANIFEST_DIR"), "/../clients/python");
    let groups = serde_json::to_string(groups).unwrap();
    let child = tokio::process::Command::new("python3")
        .args(["-c", program, client, &groups, user])
        .env("SSE_TOKEN_SECRET", std::str::from_utf8(SECRET).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let out = within(child.wait_with_output()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn a_token_the_python_package_signed_is_accepted(with_axum: bool) {
    let hub = sse::Hub::new(sse::Config::default());
    let addr = start(&hub, with_axum).await;
    let token = python_token(&["yo.bob", "rooms.*"], "bob").await;
    let bearer = format!("Bearer {token}");
    let mut stream = open(addr, "/events/rooms.1", &[("authorization", &bearer)]).await;
    eventually("open", || hub.group_stats("rooms.1").subscribers == 1).await;
    hub.publish("rooms.1", None, "from django").unwrap();
    assert_eq!(stream.next().await.unwrap().data, "from django");
    let present = within(hub.presence("rooms.1")).await.unwrap();
    assert_eq!(present[0].user, "bob");
    let (status, _, _) = refused(addr, &format!("/events/yo.alice?token={token}"), &[]).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_token_the_python_package_signed_is_accepted_under_sse_serve() {
    a_token_the_python_package_signed_is_accepted(false).await;
}

#[tokio::test]
async fn a_token_the_python_package_signed_is_accepted_under_axum_serve() {
    a_token_the_python_package_signed_is_accepted(true).await;
}
