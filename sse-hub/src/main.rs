//! `sse-hub`: a Server-Sent-Events hub to run beside an app in any language, as Mercure or
//! Centrifugo run. Pages stream the groups a token signed by the app allows; the app publishes
//! over HTTP, and hears of streams and presence through webhooks if it likes. Configured by a
//! TOML file (`sse-hub --config hub.toml`, or `SSE_HUB_CONFIG=hub.toml`) and by the
//! environment, which overrides the file:
//!
//! | Variable | Key in the file | What |
//! |---|---|---|
//! | `SSE_HUB_ADDR` | `addr` | where it listens (`127.0.0.1:8001`) |
//! | `SSE_PUBLISH_TOKEN` | `publish_token` | the bearer token of `POST /publish` (required) |
//! | `SSE_TOKEN_SECRET` | `[[token_keys]]` `secret` | the HS256 secret page tokens are signed with, or: |
//! | `SSE_TOKEN_PUBLIC_KEY` | `[[token_keys]]` `public_key` | a PEM file with the Ed25519 or RSA public key they are signed for |
//! | | `[[token_keys]]` `kid` | the key id a token's header names to be verified with this key |
//! | | `token_cookie` | the cookie a token is read from (`sse_token`) |
//! | `SSE_BROKER_URL` | `broker_url` | `redis://…` or `redis+cluster://…` (feature `redis`), `postgres://…` (feature `postgres`) to share groups with other hubs |
//! | `SSE_CORS_ORIGINS` | `cors_origins` | the origins whose pages may open streams (comma-separated; a list in the file) |
//! | `SSE_MAX_STREAMS` | `max_streams` | the most streams open at once |
//! | `SSE_WEBHOOK_URL` | `[webhooks]` `url` | where streams opened and closed, joins and leaves are POSTed |
//! | `SSE_WEBHOOK_SECRET` | `[webhooks]` `secret` | the HMAC-SHA256 key that signs them |
//! | | `[webhooks]` `batch_events`, `batch_wait_ms`, `queue`, `attempts`, `first_backoff_ms`, `max_backoff_ms`, `timeout_ms` | how they are batched, queued and retried |
//!
//! Routes: `GET /events?group=a&group=b` (without `group`: the groups the token names) and
//! `GET /events/{group}`, with the token as `?token=`, `Authorization: Bearer` or the
//! `sse_token` cookie; `POST /publish`; `GET /metrics`; `GET /health`. On SIGTERM or Ctrl-C it
//! stops accepting, ends its streams with a short retry hint, sends the webhooks queued (for up
//! to 5 s) and exits.

mod app;
mod settings;

use std::{process::ExitCode, time::Duration};

const USAGE: &str = "usage: sse-hub [--config hub.toml]
Settings come from the file (or SSE_HUB_CONFIG's) and the environment, which overrides it;
see the README, \"sse-hub: a hub beside any app\", for every key.";

fn main() -> ExitCode {
    tracing_subscriber::fmt::init();
    let config = match config_path(std::env::args().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(wrong) => {
            eprintln!("sse-hub: {wrong}\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let settings = match settings::Settings::load(config) {
        Ok(settings) => settings,
        Err(error) => return fail(&error),
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&*error),
    }
}

async fn run(settings: settings::Settings) -> Result<(), Box<dyn std::error::Error>> {
    sse::init(settings.config.clone())?;
    let listener = sse::bind(&settings.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "sse-hub listening");
    sse::serve(listener, app::router(settings))
        .with_graceful_shutdown(async {
            stopped().await;
            tracing::info!("stopping: streams end, clients go to the next hub");
            sse::hub().shutdown();
        })
        .await?;
    webhooks_sent(Duration::from_secs(5)).await;
    Ok(())
}

/// Until the webhooks queued (the streams' closes, at the end) are sent, for at most `patience`.
async fn webhooks_sent(patience: Duration) {
    let deadline = tokio::time::Instant::now() + patience;
    while let Some(webhooks) = sse::hub().stats().webhooks {
        if webhooks.queued + webhooks.sending == 0 {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            let unsent = webhooks.queued + webhooks.sending;
            return tracing::warn!(unsent, "stopping with webhooks unsent");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The file `--config` names (`Ok(Some(None))` without it), `Ok(None)` for `--help`.
fn config_path(mut args: impl Iterator<Item = String>) -> Result<Option<Option<String>>, String> {
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--config" => match args.next() {
                Some(path) => config = Some(path),
                None => return Err("--config needs a file".into()),
            },
            _ => match arg.strip_prefix("--config=") {
                Some(path) => config = Some(path.to_owned()),
                None => return Err(format!("unknown argument {arg:?}")),
            },
        }
    }
    Ok(Some(config))
}

/// SIGTERM (what a service manager sends) or Ctrl-C.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Says why it cannot run, with every cause, and fails.
fn fail(error: &dyn std::error::Error) -> ExitCode {
    let mut message = format!("sse-hub: {error}");
    let mut cause = error.source();
    while let Some(inner) = cause {
        message.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    eprintln!("{message}");
    ExitCode::FAILURE
}
