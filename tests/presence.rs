//! Presence, join and leave events, stream hooks and closing streams from the server, in one
//! process, over real TCP with `sse::serve` and `axum::serve`.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    extract::Path,
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use futures_util::StreamExt;
use sse::{Config, GroupName, Hub, Join, LastEventId};
use sse_tests::{eventually, presence_app, request, serve, serve_with_axum, within, Client};

/// Who is in `room`, as `user:streams:meta`.
async fn present(hub: &Hub, room: &str) -> Vec<String> {
    let present = within(hub.presence(room)).await.unwrap();
    let shown = present
        .iter()
        .map(|p| format!("{}:{}:{}", p.user, p.streams, p.meta));
    shown.collect()
}

/// Waits until `room`'s presence is `expected`.
async fn presence_becomes(hub: &Hub, room: &str, expected: &[&str]) {
    let deadline = tokio::time::Instant::now() + sse_tests::PATIENCE;
    loop {
        let now = present(hub, room).await;
        if now == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "presence of {room} stayed {now:?}, never {expected:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

type Serve = fn(Router) -> std::pin::Pin<Box<dyn std::future::Future<Output = SocketAddr>>>;

const SERVERS: [(&str, Serve); 2] = [
    ("sse::serve", |app| Box::pin(serve(app))),
    ("axum::serve", |app| Box::pin(serve_with_axum(app))),
];

#[tokio::test]
async fn presence_counts_each_user_s_tabs_and_join_and_leave_are_published_once() {
    for (server, start) in SERVERS {
        let hub = Hub::new(Config::default().presence_events(true));
        let addr = start(presence_app(&hub)).await;
        let url = |path: &str| format!("http://{addr}/{path}");
        let mut watcher = Client::open(&url("room"), &[]).await;

        let alice_tab1 = Client::open(&url("room/alice"), &[]).await;
        let alice_tab2 = Client::open(&url("room/alice"), &[]).await;
        let bob = Client::open(&url("room/bob"), &[]).await;
        presence_becomes(&hub, "room", &["alice:2:alice's meta", "bob:1:bob's meta"]).await;
        assert_eq!(hub.group_stats("room").subscribers, 4, "{server}");

        drop(alice_tab1);
        presence_becomes(&hub, "room", &["alice:1:alice's meta", "bob:1:bob's meta"]).await;
        drop(bob);
        presence_becomes(&hub, "room", &["alice:1:alice's meta"]).await;
        drop(alice_tab2);
        presence_becomes(&hub, "room", &[]).await;

        let events: Vec<String> = watcher
            .take(4)
            .await
            .into_iter()
            .map(|e| format!("{} {}", e.event, e.data))
            .collect();
        assert_eq!(
            events,
            [
                r#"presence-join {"user":"alice","meta":"alice's meta"}"#,
                r#"presence-join {"user":"bob","meta":"bob's meta"}"#,
                r#"presence-leave {"user":"bob"}"#,
                r#"presence-leave {"user":"alice"}"#,
            ],
            "{server}"
        );
    }
}

/// What the hooks saw: `open <number> <user>` and `close <number> <user> <reason>`.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn config(&self) -> Config {
        let (opened, closed) = (self.clone(), self.clone());
        let user = |stream: &sse::StreamInfo| {
            stream
                .identity()
                .map_or("-".to_owned(), |who| who.user().to_owned())
        };
        Config::default()
            .subscriber_queue(2)
            .history(2, std::time::Duration::from_secs(60))
            .on_open(move |stream| {
                let user = user(stream);
                opened.push(format!("open {} {user}", stream.number()));
                // A hook that panics takes nothing down: the others still run.
                assert_ne!(user, "panicky", "a hook that panics");
            })
            .on_close(move |stream, reason| {
                let groups = stream.groups().join(",");
                closed.push(format!(
                    "close {} {} {groups} {reason}",
                    stream.number(),
                    user(stream)
                ));
            })
    }

    fn push(&self, line: String) {
        self.0.lock().unwrap().push(line);
    }

    fn has(&self, line: &str) -> bool {
        self.0.lock().unwrap().iter().any(|seen| seen == line)
    }

    async fn wait_for(&self, line: &str) {
        let what = format!(
            "the hooks saw {line:?} (they saw {:?})",
            self.0.lock().unwrap()
        );
        eventually(&what, || self.has(line)).await;
    }
}

#[tokio::test]
async fn hooks_see_every_open_and_close_with_its_reason() {
    for (server, start) in SERVERS {
        let seen = Seen::default();
        let hub = Hub::new(seen.config());
        let addr = start(presence_app(&hub)).await;
        let url = |path: &str| format!("http://{addr}/{path}");

        // 1: a client that leaves.
        let leaving = Client::open(&url("room/alice"), &[]).await;
        seen.wait_for("open 1 alice").await;
        drop(leaving);
        seen.wait_for("close 1 alice room client left").await;

        // 2: closed by the server; 3: an anonymous stream of the same group, closed with it.
        let mut closed = Client::open(&url("room/bob"), &[]).await;
        let mut anonymous = Client::open(&url("room"), &[]).await;
        seen.wait_for("open 3 -").await;
        within(hub.close_user("bob")).await.unwrap();
        assert_eq!(closed.next().await.unwrap().event, sse::STREAM_CLOSED);
        assert!(closed.next().await.is_none(), "{server}: the stream ends");
        seen.wait_for("close 2 bob room closed by the server").await;
        within(hub.close_group("room")).await.unwrap();
        assert_eq!(anonymous.next().await.unwrap().event, sse::STREAM_CLOSED);
        seen.wait_for("close 3 - room closed by the server").await;

        // 4: a hook that panics; the stream and the hooks after it go on.
        let panicky = Client::open(&url("other/panicky"), &[]).await;
        drop(panicky);
        seen.wait_for("close 4 panicky other client left").await;

        // 5: one that falls behind (its subscription is never read).
        let other = GroupName::new("other").unwrap();
        let mut slow = hub
            .subscribe(Join::group(other).user("slow"), &LastEventId::default())
            .unwrap();
        for n in 0..5 {
            hub.publish("other", None, n).unwrap();
        }
        while within(slow.next()).await.is_some() {}
        drop(slow);
        seen.wait_for("close 5 slow other fell too far behind")
            .await;

        // 6: shut down.
        let mut last = Client::open(&url("other/carol"), &[]).await;
        seen.wait_for("open 6 carol").await;
        hub.shutdown();
        while last.next().await.is_some() {}
        seen.wait_for("close 6 carol other server shutting down")
            .await;
        let _ = server;
    }
}

#[tokio::test]
async fn a_closed_stream_s_client_is_answered_204_and_others_are_not() {
    for (server, start) in SERVERS {
        let hub = Hub::new(Config::default());
        let addr = start(presence_app(&hub)).await;
        let url = |path: &str| format!("http://{addr}/{path}");
        let mut alice = Client::open(&url("room/alice"), &[]).await;
        let mut bob = Client::open(&url("room/bob"), &[]).await;
        eventually("both open", || hub.group_stats("room").subscribers == 2).await;

        assert_eq!(within(hub.close_user("alice")).await.unwrap(), 1);
        let closing = alice.next().await.unwrap();
        assert_eq!(
            (closing.event.as_str(), closing.id.as_str()),
            (sse::STREAM_CLOSED, sse::CLOSED_ID),
            "{server}"
        );
        assert!(
            alice.next().await.is_none(),
            "{server}: alice's stream ends"
        );

        // Alice's browser comes back with the closing id: 204, on which it stops.
        let back = request(&url("room/alice"), &[("last-event-id", sse::CLOSED_ID)]).await;
        assert_eq!(back.status(), 204, "{server}");
        // A tab of hers that was away and comes back with an older id: 204 too.
        let away = request(&url("room/alice"), &[("last-event-id", "12345")]).await;
        assert_eq!(away.status(), 204, "{server}");
        // A page loaded afresh (she logged in again) is served, and so are its reconnections.
        Client::open(&url("room/alice"), &[]).await;
        let again = request(&url("room/alice"), &[("last-event-id", "12345")]).await;
        assert_eq!(again.status(), 200, "{server}: she is back");
        // Bob is not affected.
        hub.publish("room", Some("yo"), "still here").unwrap();
        assert_eq!(bob.next().await.unwrap().data, "still here", "{server}");
    }
}

#[tokio::test]
async fn a_closed_group_s_clients_are_answered_204_when_they_reconnect() {
    let hub = Hub::new(Config::default());
    let addr = serve(presence_app(&hub)).await;
    let mut anonymous = Client::open(&format!("http://{addr}/room"), &[]).await;
    let started = "12345";
    let closed = within(hub.close_group("room")).await;
    assert_eq!(closed.unwrap(), 1);
    assert_eq!(anonymous.next().await.unwrap().event, sse::STREAM_CLOSED);
    let back = request(
        &format!("http://{addr}/room"),
        &[("last-event-id", started)],
    )
    .await;
    assert_eq!(back.status(), 204);
    let elsewhere = request(
        &format!("http://{addr}/hall"),
        &[("last-event-id", started)],
    )
    .await;
    assert_eq!(elsewhere.status(), 200, "another group is served");
}

/// The attribute's handlers: a fixed group with an identity, and a bare one with a `Join`.
#[sse::subscribe("lobby")]
async fn lobby(Path(user): Path<String>) -> sse::Identity {
    sse::Identity::new(user).with_meta("fixed")
}

#[sse::subscribe]
async fn rooms(Path((room, user)): Path<(GroupName, String)>) -> Result<Join, Response> {
    if user == "nobody" {
        return Err((axum::http::StatusCode::FORBIDDEN, "Please login").into_response());
    }
    Ok(Join::groups([room, GroupName::new("lobby")?]).user(user))
}

#[tokio::test]
async fn handlers_of_the_attribute_give_their_streams_an_identity() {
    let app = Router::new()
        .route("/lobby/{user}", get(lobby))
        .route("/rooms/{room}/{user}", get(rooms));
    let addr = serve(app).await;
    let _dan = Client::open(&format!("http://{addr}/lobby/dan"), &[]).await;
    let _erin = Client::open(&format!("http://{addr}/rooms/kitchen/erin"), &[]).await;
    let refused = request(&format!("http://{addr}/rooms/kitchen/nobody"), &[]).await;
    assert_eq!(refused.status(), 403);
    let hub = sse::hub();
    presence_becomes(hub, "lobby", &["dan:1:fixed", "erin:1:"]).await;
    presence_becomes(hub, "kitchen", &["erin:1:"]).await;
}
