//! The yo demo on PostgreSQL (`YO_DATABASE_URL`), over real TCP, on a real PostgreSQL the test
//! starts: a yo is stored and published in one transaction, reaches its receiver's stream with
//! the id the database gave it, and is what a page fetches to catch up, also from a demo
//! started again on the same database.

use std::time::Duration;

use common::{data_file, log_in, send_yo};
use sse_tests::{postgres_server::PostgresServer, Client};
use yo_demo::{database::Yos, store::Store};

mod common;

#[tokio::test(flavor = "multi_thread")]
async fn a_yo_is_stored_and_published_in_one_transaction() {
    let postgres = PostgresServer::start().await;
    let config = yo_demo::hub_config().broker(&postgres.url()).unwrap();
    sse::init(config).unwrap();
    let data = data_file("postgres");
    let yos = Yos::open(&postgres.url()).await.unwrap();
    let app = yo_demo::app_on_postgres(Store::open(&data).unwrap(), yos);
    let addr = sse_tests::serve(app).await;
    let alice = log_in(addr, "alice").await;
    let bob = log_in(addr, "bob").await;
    let url = format!("http://{addr}/events/me");
    let mut bobs_stream = Client::open(&url, &[("cookie", &bob)]).await;
    // The stream starts where its groups stand in Postgres: what is sent after its
    // `stream-start` reaches it.
    while bobs_stream.started_at.is_none() {
        let _ = tokio::time::timeout(Duration::from_millis(100), bobs_stream.next()).await;
    }

    let response = send_yo(addr, Some(&alice), "bob").await;
    assert_eq!(response.status(), 201);
    let sent: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = bobs_stream.next().await.expect("bob's stream goes on");
        if !event.event.starts_with("presence-") {
            let yo: serde_json::Value = serde_json::from_str(&event.data).unwrap();
            seen.push((event.event, yo));
        }
    }
    assert_eq!(
        seen,
        [
            ("yo".to_owned(), sent.clone()),
            ("feed".to_owned(), sent.clone())
        ]
    );

    // In the table, and what a page fetches: from this demo and from one started again.
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM yos")
        .fetch_one(&postgres.pool().await)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    let again = Yos::open(&postgres.url()).await.unwrap();
    let restarted =
        sse_tests::serve(yo_demo::app_on_postgres(Store::open(&data).unwrap(), again)).await;
    for addr in [addr, restarted] {
        let recent =
            sse_tests::request(&format!("http://{addr}/api/yos"), &[("cookie", &bob)]).await;
        let recent: serde_json::Value =
            serde_json::from_slice(&recent.bytes().await.unwrap()).unwrap();
        assert_eq!(recent["inbox"], serde_json::json!([sent]));
        assert_eq!(recent["feed"], serde_json::json!([sent]));
    }
}
