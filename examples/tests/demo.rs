//! The yo demo over real TCP, in process: the seed's "Please login", the session cookie, a yo
//! reaching its receiver's stream and the public feed, who is online, logging out of every tab,
//! the store surviving a restart, the status page and `/metrics`.

use std::{net::SocketAddr, path::Path};

use common::{client, data_file, log_in, post_login, send_yo};
use sse_tests::{eventually, Client};
use yo_demo::store::Store;

mod common;

async fn demo(data: &Path) -> SocketAddr {
    // The first test to get here sets the process-wide hub up as the demo does.
    let _ = sse::init(yo_demo::hub_config());
    sse_tests::serve(yo_demo::app(Store::open(data).unwrap())).await
}

#[tokio::test]
async fn not_logged_in_the_stream_says_please_login() {
    let addr = demo(&data_file("please-login")).await;
    for cookie in [None, Some("user=forged-without-signature")] {
        let mut headers = vec![];
        if let Some(cookie) = cookie {
            headers.push(("cookie", cookie));
        }
        let response = sse_tests::request(&format!("http://{addr}/events/me"), &headers).await;
        assert_eq!(response.status(), 403);
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        assert_eq!(response.text().await.unwrap(), "Please login");
    }
    let response = send_yo(addr, None, "anyone").await;
    assert_eq!(response.status(), 403);
    // A visitor gets the login page, which also shows the public feed.
    let page = sse_tests::request(&format!("http://{addr}/"), &[]).await;
    assert!(page.text().await.unwrap().contains(r#"action="/login""#));
}

#[tokio::test]
async fn a_yo_reaches_its_receiver_and_the_public_feed_on_one_stream() {
    let addr = demo(&data_file("one-stream")).await;
    let alice = log_in(addr, "alice1").await;
    let bob = log_in(addr, "bob1").await;
    let mut bobs_stream =
        Client::open(&format!("http://{addr}/events/me"), &[("cookie", &bob)]).await;
    let mut visitor = Client::open(&format!("http://{addr}/events/yo"), &[]).await;
    eventually("bob online", || {
        sse::hub().group_stats("yo.bob1").subscribers == 1
    })
    .await;

    let online = online(addr).await;
    assert!(online.contains(&"bob1".to_owned()), "{online:?}");
    assert!(!online.contains(&"alice1".to_owned()), "{online:?}");

    let response = send_yo(addr, Some(&alice), "bob1").await;
    assert_eq!(response.status(), 201);
    let sent: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (sent["from"].as_str(), sent["to"].as_str()),
        (Some("alice1"), Some("bob1"))
    );

    // Bob's one stream: his own yo, and the same yo on the public feed.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = bobs_stream.next().await.unwrap();
        if event.event.starts_with("presence-") {
            continue;
        }
        let yo: serde_json::Value = serde_json::from_str(&event.data).unwrap();
        if yo["from"] == "alice1" {
            seen.push((event.event, yo));
        }
    }
    assert_eq!(seen[0].0, "yo");
    assert_eq!(seen[1].0, "feed");
    assert_eq!(seen[0].1, sent);
    assert_eq!(seen[1].1, sent);
    // The visitor's public feed shows it too.
    loop {
        let event = visitor.next().await.unwrap();
        if event.event == "feed"
            && serde_json::from_str::<serde_json::Value>(&event.data).unwrap() == sent
        {
            break;
        }
    }
    // And what a page fetches to catch up holds it, in Bob's inbox.
    let recent = sse_tests::request(&format!("http://{addr}/api/yos"), &[("cookie", &bob)]).await;
    let recent: serde_json::Value = serde_json::from_slice(&recent.bytes().await.unwrap()).unwrap();
    assert_eq!(recent["inbox"], serde_json::json!([sent]));

    let unknown = send_yo(addr, Some(&alice), "nobody-here").await;
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn the_store_survives_a_restart_and_ids_go_on() {
    let data = data_file("restart");
    let first = Store::open(&data).unwrap();
    first.add_user("carol").unwrap();
    let one = first.add_yo("dave", "carol").unwrap();
    let key = first.cookie_key();
    drop(first);

    let again = Store::open(&data).unwrap();
    assert!(again.knows("carol"));
    assert_eq!(
        again.cookie_key().master(),
        key.master(),
        "sessions stay valid"
    );
    let two = again.add_yo("erin", "carol").unwrap();
    assert_eq!(two.id, one.id + 1);
    assert_eq!(again.recent_yos(10, |yo| yo.to == "carol"), [one, two]);
}

#[tokio::test]
async fn bad_names_are_refused_at_login() {
    let addr = demo(&data_file("bad-names")).await;
    for name in ["", "with space", "<script>", &"x".repeat(25)] {
        let response = post_login(addr, name).await;
        assert_eq!(response.status(), 400, "{name:?}");
        assert!(response.headers().get("set-cookie").is_none());
    }
}

#[tokio::test]
async fn status_page_and_metrics_show_the_counters() {
    let addr = demo(&data_file("status")).await;
    let page = sse_tests::request(&format!("http://{addr}/status"), &[]).await;
    let page = page.text().await.unwrap();
    for row in [
        "open streams",
        "events published",
        "events delivered",
        "events replayed",
    ] {
        assert!(page.contains(&format!("<th>{row}</th>")), "{row} in {page}");
    }
    let metrics = sse_tests::request(&format!("http://{addr}/metrics"), &[]).await;
    assert!(metrics
        .text()
        .await
        .unwrap()
        .contains("# TYPE sse_events_published_total counter"));
}

/// The users `/api/online` lists (it answers `sse::Present` as JSON).
async fn online(addr: SocketAddr) -> Vec<String> {
    let online = sse_tests::request(&format!("http://{addr}/api/online"), &[]).await;
    let present: Vec<serde_json::Value> =
        serde_json::from_slice(&online.bytes().await.unwrap()).unwrap();
    let users = present
        .iter()
        .map(|p| p["user"].as_str().unwrap().to_owned());
    users.collect()
}

/// The next join or leave of `user` on `stream`, as `presence-join` or `presence-leave` (the
/// demo's tests share the feed: other users come and go).
async fn next_presence_of(stream: &mut Client, user: &str) -> String {
    loop {
        let event = stream.next().await.expect("the stream goes on");
        let about = serde_json::from_str::<serde_json::Value>(&event.data)
            .is_ok_and(|data| data["user"] == user);
        if event.event.starts_with("presence-") && about {
            return event.event;
        }
    }
}

#[tokio::test]
async fn logging_out_closes_every_tab_and_the_others_see_the_user_leave() {
    let addr = demo(&data_file("log-out")).await;
    let (alice, carol) = (log_in(addr, "alice3").await, log_in(addr, "carol3").await);
    let me = format!("http://{addr}/events/me");
    let mut carols = Client::open(&me, &[("cookie", &carol)]).await;
    let mut tabs = [
        Client::open(&me, &[("cookie", &alice)]).await,
        Client::open(&me, &[("cookie", &alice)]).await,
    ];
    assert_eq!(
        next_presence_of(&mut carols, "alice3").await,
        "presence-join"
    );
    let listed = online(addr).await;
    assert!(listed.contains(&"alice3".to_owned()) && listed.contains(&"carol3".to_owned()));

    let logout = client()
        .post(format!("http://{addr}/logout"))
        .header("cookie", &alice)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 303);
    for tab in &mut tabs {
        let mut last = String::new();
        while let Some(event) = tab.next().await {
            last = event.event;
        }
        assert_eq!(
            last,
            sse::STREAM_CLOSED,
            "each tab's stream ends with stream-closed"
        );
    }
    // One leave, although two tabs closed; and a tab that comes back is refused with 204.
    assert_eq!(
        next_presence_of(&mut carols, "alice3").await,
        "presence-leave"
    );
    assert!(!online(addr).await.contains(&"alice3".to_owned()));
    let back = [
        ("cookie", alice.as_str()),
        ("last-event-id", sse::CLOSED_ID),
    ];
    assert_eq!(sse_tests::request(&me, &back).await.status(), 204);
}
