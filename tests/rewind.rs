//! Rewind, as routes ask for it: `#[sse::subscribe("ticker", rewind = 1)]` and the bare form
//! give a client without `Last-Event-ID` the last events of its groups first, over real TCP,
//! under `sse::serve` and `axum::serve`; a client with an id resumes as always.

use axum::{extract::Path, routing::get, Router};
use sse_tests::{eventually, Client};

#[sse::subscribe("ticker", rewind = 1)]
async fn ticker() {}

#[sse::subscribe(rewind = 2)]
async fn room(Path(room): Path<String>) -> Result<sse::GroupName, String> {
    sse::GroupName::new(room).map_err(|e| e.to_string())
}

/// A handler's own `Join::rewind` wins over the attribute's.
#[sse::subscribe(rewind = 2)]
async fn latest(Path(room): Path<String>) -> Result<sse::Join, String> {
    let room = sse::GroupName::new(room).map_err(|e| e.to_string())?;
    Ok(sse::Join::group(room).rewind(1))
}

async fn routes_rewind_as_they_say(with_axum: bool) {
    let hub = sse::Hub::new(sse::Config::default());
    let app = Router::new()
        .route("/ticker", get(ticker))
        .route("/rooms/{room}", get(room))
        .route("/latest/{room}", get(latest))
        .layer(hub.layer());
    let addr = match with_axum {
        true => sse_tests::serve_with_axum(app).await,
        false => sse_tests::serve(app).await,
    };
    let base = format!("http://{addr}");
    // Someone holds the groups, so they keep their history.
    let _watching = hub.subscribe(
        sse::Join::groups(["ticker", "room.1"].map(|g| sse::GroupName::new(g).unwrap())),
        &sse::LastEventId::default(),
    );
    for price in ["41", "42"] {
        hub.publish("ticker", Some("price"), price).unwrap();
    }
    let said: Vec<String> = (1..=3)
        .map(|i| hub.publish("room.1", Some("say"), i).unwrap().to_string())
        .collect();

    let mut late = Client::open(&format!("{base}/ticker"), &[]).await;
    assert_eq!(
        late.next().await.unwrap().data,
        "42",
        "the current price, at once"
    );
    let mut room = Client::open(&format!("{base}/rooms/room.1"), &[]).await;
    let last_two: Vec<String> = room.take(2).await.into_iter().map(|e| e.data).collect();
    assert_eq!(last_two, ["2", "3"]);
    let mut latest = Client::open(&format!("{base}/latest/room.1"), &[]).await;
    assert_eq!(latest.next().await.unwrap().data, "3");

    // A client with an id gets what it missed after it, not a rewind.
    let mut back = Client::open(
        &format!("{base}/rooms/room.1"),
        &[("last-event-id", &said[0])],
    )
    .await;
    let missed: Vec<String> = back.take(2).await.into_iter().map(|e| e.id).collect();
    assert_eq!(missed, said[1..]);
    eventually("every stream is open", || {
        hub.group_stats("room.1").subscribers == 4
    })
    .await;
    hub.publish("room.1", Some("say"), 4).unwrap();
    for stream in [&mut room, &mut latest, &mut back] {
        assert_eq!(stream.next().await.unwrap().data, "4", "then live");
    }
}

#[tokio::test]
async fn routes_rewind_as_they_say_under_sse_serve() {
    routes_rewind_as_they_say(false).await;
}

#[tokio::test]
async fn routes_rewind_as_they_say_under_axum_serve() {
    routes_rewind_as_they_say(true).await;
}
