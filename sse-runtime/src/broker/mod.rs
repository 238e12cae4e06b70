//! Brokers: who gives events their ids, keeps the shared history, and carries events to every
//! process. The in-memory broker (the default) keeps everything in this process; the Redis broker
//! (feature `redis`) shares it between processes. Either way the local [`Registry`] fans the
//! events out to this process's streams.

use std::{future::Future, pin::Pin, sync::Weak};

use bytes::Bytes;

use crate::{event::Draft, registry::Registry, Config, EventId, GroupName, PublishError};

pub(crate) use crate::error::BrokerError;

mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

pub(crate) use memory::Memory;

/// What a client that came back with a `Last-Event-ID` the local history does not cover gets
/// from the shared history.
pub(crate) struct CaughtUp {
    /// The missed events in id order, or a `stream-reset` when they are no longer all kept.
    pub(crate) replay: Bytes,
    /// How many events `replay` holds.
    pub(crate) events: u64,
    /// Events with this id or a lower one are in `replay` or were published before the client
    /// arrived: the live stream skips them.
    pub(crate) through: u64,
}

pub(crate) type CatchUp = Pin<Box<dyn Future<Output = Result<CaughtUp, BrokerError>> + Send>>;

pub(crate) trait Broker: Send + Sync {
    /// Gives `draft` its id, stores it in `group`'s history and delivers it to the group's
    /// subscribers in every process.
    fn publish(
        &self,
        registry: &Registry,
        group: &str,
        draft: Draft,
    ) -> Result<EventId, PublishError>;

    /// Whether the broker can be used now (what [`sse::init`](crate::init) checks).
    fn check(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Whether the history lives outside this process, so a `Last-Event-ID` the local rings do
    /// not cover is caught up with [`Broker::catch_up`] instead of being reset.
    fn shares_history(&self) -> bool {
        false
    }

    /// `group` got its first local subscriber: start receiving its events.
    fn group_opened(&self, _group: &GroupName) {}

    /// `group` is freed locally: stop receiving its events.
    fn group_freed(&self, _group: &GroupName) {}

    /// The events of `groups` published after id `after`, from the shared history.
    fn catch_up(&self, _groups: Vec<GroupName>, _after: u64) -> CatchUp {
        Box::pin(std::future::ready(Err(BrokerError::new(
            "this broker keeps no shared history",
        ))))
    }
}

/// The broker `config` names; the broker hands events to `registry`.
pub(crate) fn choose(config: &Config, registry: Weak<Registry>) -> Box<dyn Broker> {
    #[cfg(feature = "redis")]
    if let Some(target) = &config.redis {
        return Box::new(redis::RedisBroker::new(target.clone(), config, registry));
    }
    let _ = (config, registry);
    Box::new(Memory)
}

/// The broker of a process-wide hub whose `SSE_BROKER_URL` is wrong: every publish says so,
/// rather than keeping events in a process that was meant to share them.
pub(crate) struct Unusable(pub(crate) BrokerError);

impl Broker for Unusable {
    fn publish(&self, _: &Registry, _: &str, _: Draft) -> Result<EventId, PublishError> {
        Err(PublishError::Broker(self.0.clone()))
    }

    fn check(&self) -> Result<(), BrokerError> {
        Err(self.0.clone())
    }
}

/// `url` with its password hidden, fit for messages and logs.
pub(crate) fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}***{}", &url[..scheme_end + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redacted("redis://:secret@127.0.0.1:6379/0"),
            "redis://***@127.0.0.1:6379/0"
        );
        assert_eq!(
            redacted("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
    }
}
