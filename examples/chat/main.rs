//! An AI-style chat: each answer is streamed token by token by a fake, deterministic generator,
//! survives a reload, and with Redis (`SSE_BROKER_URL`) can be finished by another process.
//! Run it with `cargo run --example chat` and open the URL it prints. The example is in `app.rs`.

mod app;

use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};

#[tokio::main]
async fn main() {
    let filter: tracing_subscriber::filter::Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse().ok())
        .unwrap_or_else(|| "info".parse().expect("a valid filter"));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer())
        .with(filter)
        .init();
    let result = match app::Settings::from_env() {
        Ok(settings) => app::run(settings).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!("chat: {e}");
        std::process::exit(1);
    }
}
