//! `sse-hub`: a Server-Sent-Events hub to run beside an app in any language, as Mercure or
//! Centrifugo run. Pages stream the groups a token signed by the app allows; the app publishes
//! over HTTP. Configured by the environment:
//!
//! | Variable | What |
//! |---|---|
//! | `SSE_HUB_ADDR` | where it listens (`127.0.0.1:8001`) |
//! | `SSE_TOKEN_SECRET` | the HS256 secret page tokens are signed with, or: |
//! | `SSE_TOKEN_PUBLIC_KEY` | a PEM file with the Ed25519 or RSA public key they are signed for |
//! | `SSE_PUBLISH_TOKEN` | the bearer token of `POST /publish` (required) |
//! | `SSE_BROKER_URL` | `redis://…` or `redis+cluster://…` to share groups with other hubs (feature `redis`) |
//! | `SSE_CORS_ORIGINS` | the origins whose pages may open streams, comma-separated |
//! | `SSE_MAX_STREAMS` | the most streams open at once |
//!
//! Routes: `GET /events?group=a&group=b` (without `group`: the groups the token names) and
//! `GET /events/{group}`, with the token as `?token=`, `Authorization: Bearer` or the
//! `sse_token` cookie; `POST /publish`; `GET /metrics`; `GET /health`. On SIGTERM or Ctrl-C it
//! stops accepting, ends its streams with a short retry hint and exits.

mod app;
mod settings;

use std::process::ExitCode;

fn main() -> ExitCode {
    tracing_subscriber::fmt::init();
    let settings = match settings::Settings::from_env() {
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
    Ok(())
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
