//! What engines tell other processes besides events: who this process is, and closes, as one
//! line of text: `<process> user <id>` or `<process> group <name>`.

use std::{collections::hash_map::RandomState, hash::BuildHasher};

use crate::{identity::Closing, GroupName};

/// A name for this process in the engine, unlikely to be another's.
pub(crate) fn process_name() -> String {
    format!("p{:016x}", RandomState::new().hash_one(std::process::id()))
}

/// The message telling the other processes that `process` closes these streams.
pub(crate) fn close_message(process: &str, closing: &Closing) -> String {
    match closing {
        Closing::User(user) => format!("{process} user {user}"),
        Closing::Group(group) => format!("{process} group {group}"),
    }
}

/// A close message as a close, unless this process sent it (and closed its streams already)
/// or it is malformed.
pub(crate) fn closing(message: &[u8], this_process: &str) -> Option<Closing> {
    let text = std::str::from_utf8(message).ok()?;
    let mut parts = text.splitn(3, ' ');
    let (process, kind, name) = (parts.next()?, parts.next()?, parts.next()?);
    if process == this_process {
        return None;
    }
    match kind {
        "user" => Some(Closing::User(name.to_owned())),
        "group" => GroupName::new(name).ok().map(Closing::Group),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_are_read_from_other_processes_only() {
        let alice = Closing::User("alice smith".into());
        assert_eq!(close_message("p1", &alice), "p1 user alice smith");
        assert_eq!(closing(b"p1 user alice smith", "p2"), Some(alice));
        let room = GroupName::new("room.7").unwrap();
        assert_eq!(
            closing(b"p1 group room.7", "p2"),
            Some(Closing::Group(room))
        );
        assert_eq!(closing(b"p1 user alice", "p1"), None, "its own");
        assert_eq!(closing(b"p1 group not a group", "p2"), None);
        assert_eq!(closing(b"p1 nothing", "p2"), None);
    }
}
