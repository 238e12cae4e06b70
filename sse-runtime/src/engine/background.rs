//! The thread an engine's connections live on.

use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;

use crate::BrokerError;

/// A thread of an engine's own (`sse-redis`, `sse-postgres`) running a small runtime, on which
/// every connection of the engine lives: the engine works the same under any runtime of the caller's, or none, and
/// never parks the caller's runtime. It stops, and with it everything spawned on it, when told
/// to or dropped; what is spawned on it afterwards is dropped at once.
pub(crate) struct Background {
    pub(crate) runtime: tokio::runtime::Handle,
    /// Taken (dropped) to end the thread.
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl Background {
    pub(crate) fn start(engine: &str) -> Result<Self, BrokerError> {
        let (started, handle) = std::sync::mpsc::sync_channel(1);
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("sse-{}", engine.to_lowercase()))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => {
                        let _ = started.send(Ok(runtime.handle().clone()));
                        let _ = runtime.block_on(stopped);
                    }
                    Err(error) => {
                        let _ = started.send(Err(error));
                    }
                }
            });
        let cannot = |why: &dyn std::fmt::Display| {
            BrokerError::new(format!("cannot start the {engine} thread: {why}"))
        };
        thread.map_err(|error| cannot(&error))?;
        let runtime = match handle.recv() {
            Ok(Ok(runtime)) => runtime,
            Ok(Err(error)) => return Err(cannot(&error)),
            Err(error) => return Err(cannot(&error)),
        };
        Ok(Self {
            runtime,
            stop: Mutex::new(Some(stop)),
        })
    }

    pub(crate) fn stop(&self) {
        self.stop
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}
