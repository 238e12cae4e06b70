//! The seed's demo: log in, see who is online, send a yo, watch it arrive live. Run it with
//! `cargo run --example yo` and open the URL it prints. The demo itself is in `demo.rs`.

use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};

#[tokio::main]
async fn main() {
    // `RUST_LOG=warn` or `RUST_LOG=info,sse=trace` changes what is logged.
    let filter: tracing_subscriber::filter::Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse().ok())
        .unwrap_or_else(|| "info,sse=debug".parse().expect("a valid filter"));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer())
        .with(filter)
        .init();
    let result = match yo_demo::Settings::from_env() {
        Ok(settings) => yo_demo::run(settings).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        eprintln!("yo demo: {e}");
        std::process::exit(1);
    }
}
