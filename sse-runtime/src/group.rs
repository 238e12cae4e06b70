//! Group names: who receives an event.

use std::{fmt, sync::Arc};

use crate::NameError;

/// The name of a group of subscribers, checked against the group-name rule.
///
/// The rule is Django Channels': 1 to 99 ASCII letters, digits, `-`, `_` or `.`.
/// Cloning is cheap (the name is shared).
///
/// ```
/// let alice = sse::GroupName::new("yo.alice")?;
/// assert_eq!(alice.as_str(), "yo.alice");
///
/// let err = sse::GroupName::new("yo alice").unwrap_err();
/// assert!(err.to_string().contains("character ' ' at byte 2 is not allowed"));
/// # Ok::<(), sse::NameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupName(Arc<str>);

/// What became of a group in this process: what its engine is told, so it receives the events
/// of the groups held here, and only those.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// It got its first subscriber.
    Opened,
    /// It had no subscriber for as long as its history lasts, and is gone.
    Freed,
}

impl GroupName {
    /// Checks `name` and makes it a group name.
    ///
    /// ```
    /// let name = format!("yo.{}", "bob");
    /// assert!(sse::GroupName::new(name).is_ok());
    /// assert!(sse::GroupName::new("").is_err());
    /// ```
    pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
        let name = name.into();
        sse_names::check_group(&name)?;
        Ok(Self(name.into()))
    }

    /// The name as a string.
    ///
    /// ```
    /// assert_eq!(sse::GroupName::new("yo")?.as_str(), "yo");
    /// # Ok::<(), sse::NameError>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A literal the macros already checked at compile time.
    pub(crate) fn from_checked_literal(name: &'static str) -> Self {
        debug_assert!(sse_names::check_group(name).is_ok());
        Self(name.into())
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for GroupName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for GroupName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<&str> for GroupName {
    type Error = NameError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl TryFrom<String> for GroupName {
    type Error = NameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

/// Reads a string and checks it, so a group name can come straight from a request:
/// `Path<sse::GroupName>`, or a field of a `Query` or `Json` body. A name that breaks the rule is
/// refused with the [`NameError`]'s message; axum answers `400 Bad Request` with it.
///
/// ```
/// use axum::extract::Path;
/// use serde::de::{value::Error, Deserialize, IntoDeserializer};
///
/// // `GET /events/{group}`: axum answers 400 itself when the group is invalid.
/// #[sse::subscribe]
/// async fn events(Path(group): Path<sse::GroupName>) -> Result<sse::GroupName, sse::NameError> {
///     Ok(group)
/// }
/// # let _app: axum::Router = axum::Router::new().route("/events/{group}", axum::routing::get(events));
///
/// // What `Path` does with the segment, in short:
/// let group: Result<sse::GroupName, Error> = Deserialize::deserialize("yo.alice".into_deserializer());
/// assert_eq!(group?.as_str(), "yo.alice");
/// let refused: Result<sse::GroupName, Error> = Deserialize::deserialize("yo alice".into_deserializer());
/// assert!(refused.unwrap_err().to_string().contains("character ' ' at byte 2 is not allowed"));
/// # Ok::<(), Error>(())
/// ```
impl<'de> serde::Deserialize<'de> for GroupName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::new(name).map_err(serde::de::Error::custom)
    }
}

/// Lets a registry keyed by group name be searched with a `&str` (hashes agree: both hash the str).
impl std::borrow::Borrow<str> for GroupName {
    fn borrow(&self) -> &str {
        &self.0
    }
}
