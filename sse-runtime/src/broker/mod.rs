//! Brokers: who gives events their ids, keeps the shared history, and carries events to every
//! process. The in-memory broker (the default) keeps everything in this process; the Redis broker
//! (feature `redis`) shares it between processes. Either way the local [`Registry`] fans the
//! events out to this process's streams.

use std::{future::Future, pin::Pin};

use crate::{
    event::Draft,
    registry::{Held, Registry},
    EventId, GroupName, PublishError,
};

pub(crate) use crate::error::BrokerError;
#[cfg(feature = "redis")]
use crate::resume::CatchUp;

mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

pub(crate) use memory::Memory;

/// The channel on which processes tell each other to close streams
/// ([`Hub::close_user`](crate::Hub::close_user)): the broker's listener hands its messages to a
/// [`ControlSink`].
#[cfg(feature = "redis")]
pub(crate) const CONTROL_CHANNEL: &str = "sse:control";

/// What a broker hands the messages of [`CONTROL_CHANNEL`] to.
#[cfg(feature = "redis")]
pub(crate) type ControlSink = std::sync::Arc<dyn Fn(&[u8]) + Send + Sync>;

/// A broker's answer to a publish, on its way.
pub(crate) type Publishing = Pin<Box<dyn Future<Output = Result<EventId, PublishError>> + Send>>;

pub(crate) trait Broker: Send + Sync {
    /// Gives `draft` its id, stores it in `group`'s history and delivers it to the group's
    /// subscribers in every process.
    fn publish(
        &self,
        registry: &Registry,
        group: &str,
        draft: Draft,
    ) -> Result<EventId, PublishError>;

    /// [`Broker::publish`] for async callers: what it says once the broker answered, waited
    /// for without blocking the caller's thread. The in-memory broker has nothing to wait for.
    fn publish_async(&self, registry: &Registry, group: &str, draft: Draft) -> Publishing {
        Box::pin(std::future::ready(self.publish(registry, group, draft)))
    }

    /// Whether the broker can be used now (what [`sse::init`](crate::init) checks).
    fn check(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    /// Whether ids and history live outside this process, so a `Last-Event-ID` the local rings
    /// do not cover is caught up with [`Broker::catch_up`] instead of being reset.
    fn shares_history(&self) -> bool {
        false
    }

    /// `group` started or stopped being held here: start or stop receiving its events.
    fn watch(&self, _group: &GroupName, _held: Held) {}

    /// Hands the messages of [`CONTROL_CHANNEL`] to `sink`, from when this process listens.
    #[cfg(feature = "redis")]
    fn on_control(&self, _sink: ControlSink) {}

    /// From the shared history, the events of each of `groups` published after the id `from`
    /// gives for it (none for `None`), and where each group stands.
    #[cfg(feature = "redis")]
    fn catch_up(&self, _groups: Vec<GroupName>, _from: Vec<Option<u64>>) -> CatchUp {
        Box::pin(std::future::ready(Err(BrokerError::new(
            "this broker keeps no shared history",
        ))))
    }
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
