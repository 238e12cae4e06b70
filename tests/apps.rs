//! A hub per app: twenty apps in one process, in parallel, each with its own hub put in its
//! requests by `Hub::layer`, with the same group names; half served by `sse::serve`, half by
//! `axum::serve`. Each app's streams, fixed and bare, get its own events and no other app's,
//! published by its handlers or its publish endpoint, and the process-wide hub sees none of it.

use axum::{
    extract::Path,
    routing::{get, post},
    Extension, Router,
};
use sse_tests::{eventually, http_client, within, Client};

const TOKEN: &str = "apps-token-0123456789";

#[sse::subscribe("yo")]
async fn yo_events() {}

#[sse::subscribe]
async fn room_events(Path(room): Path<String>) -> Result<sse::GroupName, String> {
    sse::GroupName::new(room).map_err(|e| e.to_string())
}

async fn send(
    Extension(hub): Extension<sse::Hub>,
    Path((group, data)): Path<(String, String)>,
) -> String {
    hub.publish(&group, None, data).unwrap().to_string()
}

/// App `n`, on a hub of its own: its address and its hub.
async fn app(n: usize) -> (String, sse::Hub) {
    let hub = sse::Hub::new(sse::Config::default().retry(None));
    // No hub of its own: it publishes on the layer's.
    let endpoint = sse::PublishEndpoint::new(TOKEN).unwrap();
    let app = Router::new()
        .route("/events/yo", get(yo_events))
        .route("/rooms/{room}", get(room_events))
        .route("/publish/{group}/{data}", post(send))
        .route("/sse/publish", endpoint.into_method_router())
        .layer(hub.layer());
    let addr = match n % 2 {
        0 => sse_tests::serve(app).await,
        _ => sse_tests::serve_with_axum(app).await,
    };
    (format!("http://{addr}"), hub)
}

async fn run(n: usize) {
    let (base, hub) = app(n).await;
    let mut yo = Client::open(&format!("{base}/events/yo"), &[]).await;
    let mut room = Client::open(&format!("{base}/rooms/room.1"), &[]).await;
    eventually("both streams are on the app's hub", || {
        hub.group_stats("yo").subscribers == 1 && hub.group_stats("room.1").subscribers == 1
    })
    .await;
    for (group, stream) in [("yo", &mut yo), ("room.1", &mut room)] {
        for i in 0..5 {
            let data = format!("app{n}-{group}-{i}");
            let url = format!("{base}/publish/{group}/{data}");
            let answer = within(http_client().post(url).send()).await.unwrap();
            let id = within(answer.text()).await.unwrap();
            let event = stream.next().await.expect("the stream goes on");
            assert_eq!((event.data, event.id), (data, id), "app {n}");
        }
    }
    let body = format!(r#"{{"group": "yo", "data": "app{n}-endpoint"}}"#);
    let request = http_client()
        .post(format!("{base}/sse/publish"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body);
    let answer = within(request.send()).await.unwrap();
    assert_eq!(answer.status(), 200, "app {n}");
    assert_eq!(yo.next().await.unwrap().data, format!("app{n}-endpoint"));
    assert_eq!(hub.stats().published, 11, "app {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_apps_in_one_process_each_get_only_their_own_events() {
    let apps: Vec<_> = (0..20).map(|n| tokio::spawn(run(n))).collect();
    for app in apps {
        app.await.unwrap();
    }
    let global = sse::hub().stats();
    assert_eq!((global.published, global.open_streams), (0, 0));
}
