//! What the demo's tests share: a fresh data file, and a visitor who logs in and sends yos.

#![allow(dead_code)] // each test binary uses its part

use std::{net::SocketAddr, path::PathBuf};

/// A data file of the test's own, not there yet.
pub(crate) fn data_file(test: &str) -> PathBuf {
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("yo-demo-{test}.json"));
    let _ = std::fs::remove_file(&file);
    file
}

/// A client that shows redirects instead of following them, so the login's cookie is seen.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

pub(crate) async fn post_login(addr: SocketAddr, name: &str) -> reqwest::Response {
    client()
        .post(format!("http://{addr}/login"))
        .form(&[("name", name)])
        .send()
        .await
        .unwrap()
}

/// Logs `name` in; returns the `Cookie` header value of the session.
pub(crate) async fn log_in(addr: SocketAddr, name: &str) -> String {
    let response = post_login(addr, name).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/");
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    set_cookie.split(';').next().unwrap().to_owned()
}

pub(crate) async fn send_yo(addr: SocketAddr, cookie: Option<&str>, to: &str) -> reqwest::Response {
    let mut request = client()
        .post(format!("http://{addr}/api/yo"))
        .form(&[("to", to)]);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap()
}
