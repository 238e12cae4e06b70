//! The chat example (`examples/chat`) in the browser: an answer streamed token by token, shown
//! whole and once after a reload, in two tabs, and, on Redis, finished by a second process
//! after the one writing it was killed.

use std::{future::Future, net::SocketAddr, time::Duration};

use axum::Router;
use fantoccini::{Client, Locator};

#[cfg(feature = "redis")]
use super::{free_port, Process, CHAT_FLAG};
use super::{in_browsers, recorded, scratch_dir, text, wait_for};
use crate::chat;

/// Slow enough that a reload lands mid-answer: 40 tokens take 6 s.
const PACE: Duration = Duration::from_millis(150);
const PROMPT: &str = "why is the sky blue";

/// The answer the page must end with: every token of [`PROMPT`]'s answer, in order, once.
fn whole_answer() -> Vec<String> {
    chat::tokens(PROMPT).expect("a prompt with words")
}

/// The example in this process, on a hub of its own, under `serve`.
async fn chat_server<F>(serve: impl FnOnce(Router) -> F) -> SocketAddr
where
    F: Future<Output = SocketAddr>,
{
    let hub = sse::Hub::new(chat::hub_config());
    serve(chat::app(&hub, chat::Chat::new(PACE))).await
}

/// Starts an answer to [`PROMPT`] at `base`; returns its id.
async fn ask(base: &str) -> String {
    let response = sse_tests::http_client()
        .post(format!("{base}/api/answers"))
        .form(&[("prompt", PROMPT)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let answer: serde_json::Value =
        serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    answer["id"].as_str().unwrap().to_owned()
}

/// Waits for the page's answer to end, and checks it is the whole answer, once.
async fn shows_the_whole_answer(page: &Client, server: &str) {
    wait_for("the answer to end", || async {
        text(page, "#status").await == "done"
    })
    .await;
    assert_eq!(
        recorded(page, "tokens").await,
        whole_answer(),
        "under {server}"
    );
    assert_eq!(
        text(page, "#answer").await.trim_end(),
        whole_answer().concat().trim_end(),
        "under {server}"
    );
    assert_eq!(text(page, "#prompt").await, PROMPT, "under {server}");
}

/// Waits until the page shows at least `n` tokens.
async fn shows_tokens(page: &Client, n: usize) {
    wait_for("tokens on the page", || async {
        recorded(page, "tokens").await.len() >= n
    })
    .await;
}

pub(crate) async fn reloaded_mid_answer() {
    let work = scratch_dir("chat-reload");
    in_browsers([work.join("page")], |[page]| async move {
        reloaded_under(&page, "sse::serve", sse_tests::serve).await;
        reloaded_under(&page, "axum::serve", sse_tests::serve_with_axum).await;
    })
    .await;
    let _ = std::fs::remove_dir_all(&work);
}

/// Asks with the page's form, reloads the answer's page mid-answer, and gets it whole, once.
async fn reloaded_under<F>(page: &Client, server: &str, serve: impl FnOnce(Router) -> F)
where
    F: Future<Output = SocketAddr>,
{
    let addr = chat_server(serve).await;
    page.goto(&format!("http://{addr}/")).await.unwrap();
    page.find(Locator::Css(r#"textarea[name="prompt"]"#))
        .await
        .unwrap()
        .send_keys(PROMPT)
        .await
        .unwrap();
    page.find(Locator::Css("#ask button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    shows_tokens(page, 5).await;
    let before = recorded(page, "tokens").await.len();
    assert_ne!(text(page, "#status").await, "done", "under {server}");
    page.refresh().await.unwrap();
    shows_the_whole_answer(page, server).await;
    println!("reloaded after {before} of {} tokens", whole_answer().len());
}

pub(crate) async fn two_tabs_on_one_answer() {
    let work = scratch_dir("chat-tabs");
    in_browsers([work.join("page")], |[page]| async move {
        two_tabs_under(&page, "sse::serve", sse_tests::serve).await;
        two_tabs_under(&page, "axum::serve", sse_tests::serve_with_axum).await;
    })
    .await;
    let _ = std::fs::remove_dir_all(&work);
}

/// One answer open in two tabs, the second opened mid-answer: both show it whole, once.
async fn two_tabs_under<F>(page: &Client, server: &str, serve: impl FnOnce(Router) -> F)
where
    F: Future<Output = SocketAddr>,
{
    let base = format!("http://{}", chat_server(serve).await);
    let answer = format!("{base}/answers/{}", ask(&base).await);
    page.goto(&answer).await.unwrap();
    shows_tokens(page, 3).await;
    let first = page.window().await.unwrap();
    let second = page.new_window(true).await.unwrap().handle;
    page.switch_to_window(second.clone()).await.unwrap();
    page.goto(&answer).await.unwrap();
    shows_the_whole_answer(page, server).await;
    page.close_window().await.unwrap();
    page.switch_to_window(first).await.unwrap();
    shows_the_whole_answer(page, server).await;
}

#[cfg(feature = "redis")]
pub(crate) async fn finished_by_another_process() {
    let work = scratch_dir("chat-redis");
    let redis = sse_tests::redis_servers::RedisServer::start().await;
    let url = redis.url();
    in_browsers([work.join("page")], |[page]| async move {
        finished_elsewhere_under(&page, &url, "sse::serve", sse_tests::serve).await;
        finished_elsewhere_under(&page, &url, "axum::serve", sse_tests::serve_with_axum).await;
    })
    .await;
    drop(redis);
    let _ = std::fs::remove_dir_all(&work);
}

/// Process A (a child) writes an answer; the page streams it from process B (this one), both on
/// `redis`. A is killed mid-answer; the page's Resume button asks B to continue; the page ends
/// with the whole answer, once, and so does a reload of it.
#[cfg(feature = "redis")]
async fn finished_elsewhere_under<F>(
    page: &Client,
    redis: &str,
    server: &str,
    serve: impl FnOnce(Router) -> F,
) where
    F: Future<Output = SocketAddr>,
{
    let hub = sse::Hub::connect(chat::hub_config().broker(redis).unwrap()).unwrap();
    let b = serve(chat::app(&hub, chat::Chat::new(PACE))).await;
    let a_port = free_port();
    let mut a = Process::chat(a_port, redis);
    a.wait_listening(a_port);

    let id = ask(&format!("http://127.0.0.1:{a_port}")).await;
    page.goto(&format!("http://{b}/answers/{id}"))
        .await
        .unwrap();
    shows_tokens(page, 5).await;
    a.kill();
    // What A published before it died reaches the page; then nothing more comes.
    tokio::time::sleep(PACE * 4).await;
    let shown = recorded(page, "tokens").await.len();
    assert!(
        shown < whole_answer().len(),
        "A finished before it was killed"
    );
    assert_ne!(text(page, "#status").await, "done", "under {server}");

    page.find(Locator::Css("#resume"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    shows_the_whole_answer(page, server).await;
    page.refresh().await.unwrap();
    shows_the_whole_answer(page, server).await;
    println!("A was killed after {shown} tokens; B wrote the rest (under {server})");
}

#[cfg(feature = "redis")]
impl Process {
    /// The chat example on `port`, on the Redis at `redis`, a token every [`PACE`].
    fn chat(port: u16, redis: &str) -> Process {
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .arg(CHAT_FLAG)
            .env("CHAT_ADDR", format!("127.0.0.1:{port}"))
            .env("CHAT_TOKEN_MS", PACE.as_millis().to_string())
            .env(sse::BROKER_URL_ENV, redis)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the chat example starts");
        Process { child, port }
    }
}

/// The child process: the chat example, configured by `CHAT_ADDR`, `CHAT_TOKEN_MS` and
/// `SSE_BROKER_URL`.
pub(crate) fn serve_chat() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let result = runtime.block_on(async { chat::run(chat::Settings::from_env()?).await });
    if let Err(e) = result {
        eprintln!("chat: {e}");
        std::process::exit(1);
    }
}
