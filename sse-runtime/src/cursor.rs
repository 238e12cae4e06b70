//! Where a stream stands in one of its groups: what its ids say, and what it gave already.

/// A stream's position in one of its groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// The id of the last event the client was given (or the one it starts after): what the
    /// stream's ids say of this group.
    id: u64,
    /// Events with this id or a lower one were given already (from an engine's history) or came
    /// before the client's id: the live stream skips them.
    skip_through: u64,
}

impl Cursor {
    /// At `id`, with nothing of the live stream given already.
    pub(crate) fn at(id: u64) -> Self {
        Self {
            id,
            skip_through: 0,
        }
    }

    /// At `id`, every event up to it given already (from an engine's history).
    pub(crate) fn through(id: u64) -> Self {
        Self {
            id,
            skip_through: id,
        }
    }

    /// The id of the last event the client was given.
    pub(crate) fn id(self) -> u64 {
        self.id
    }

    /// Whether the event `id` was given already, so the live stream skips it.
    pub(crate) fn was_given(self, id: u64) -> bool {
        id <= self.skip_through
    }

    /// The client was given the event `id`.
    pub(crate) fn advance_to(&mut self, id: u64) {
        self.id = id;
    }
}
