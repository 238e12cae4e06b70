//! Who opened a stream, and what a handler asks for: groups, with an identity or without.

use std::time::SystemTime;

use crate::GroupName;

/// Who opened a stream: a user id and a little metadata of yours (a display name, a colour, a
/// device: a few bytes of text, JSON if you like). A stream that carries one counts in
/// [`Hub::presence`](crate::Hub::presence), can be closed with
/// [`Hub::close_user`](crate::Hub::close_user), and is named to the stream hooks
/// ([`Config::on_open`](crate::Config::on_open)).
///
/// Both are yours and are not checked; keep them small, since with Redis they travel to
/// Redis whenever the user's count of streams changes.
///
/// ```
/// let alice = sse::Identity::new("alice").with_meta(r#"{"name":"Alice"}"#);
/// assert_eq!(alice.user(), "alice");
/// assert_eq!(alice.meta(), r#"{"name":"Alice"}"#);
/// assert_eq!(sse::Identity::new("bob").meta(), "");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub(crate) user: String,
    pub(crate) meta: String,
}

impl Identity {
    /// The identity of user `user`, without metadata.
    ///
    /// ```
    /// assert_eq!(sse::Identity::new(String::from("alice")).user(), "alice");
    /// ```
    pub fn new(user: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            meta: String::new(),
        }
    }

    /// The same identity, with `meta` as its metadata.
    ///
    /// ```
    /// let alice = sse::Identity::new("alice").with_meta("on her phone");
    /// assert_eq!(alice.meta(), "on her phone");
    /// ```
    pub fn with_meta(mut self, meta: impl Into<String>) -> Self {
        self.meta = meta.into();
        self
    }

    /// The user id.
    ///
    /// ```
    /// assert_eq!(sse::Identity::new("alice").user(), "alice");
    /// ```
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The metadata (empty unless given).
    ///
    /// ```
    /// assert_eq!(sse::Identity::new("alice").with_meta("m").meta(), "m");
    /// ```
    pub fn meta(&self) -> &str {
        &self.meta
    }
}

/// What a bare [`#[sse::subscribe]`](crate::subscribe) handler returns to open a stream of
/// groups it chose, as a user or anonymously; what [`Hub::subscribe`](crate::Hub::subscribe) opens.
///
/// ```
/// use axum::{http::HeaderMap, http::StatusCode, response::{IntoResponse, Response}};
///
/// #[sse::subscribe]
/// async fn my_events(headers: HeaderMap) -> Result<sse::Join, Response> {
///     let Some(user) = headers.get("x-user").and_then(|v| v.to_str().ok()) else {
///         return Err((StatusCode::FORBIDDEN, "Please login").into_response());
///     };
///     let mine = sse::GroupName::new(format!("yo.{user}"))?;
///     Ok(sse::Join::groups([mine, sse::GroupName::new("yo")?]).user(user))
/// }
/// # let _: axum::Router = axum::Router::new().route("/events/me", axum::routing::get(my_events));
/// ```
///
/// A handler may keep returning groups alone (`Result<sse::GroupName, _>`, an array or a
/// `Vec` of them): each is a `Join` without identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub(crate) groups: Vec<GroupName>,
    pub(crate) identity: Option<Identity>,
    /// How many of each group's last events a client without `Last-Event-ID` gets first.
    pub(crate) rewind: Option<usize>,
    /// When the stream ends, closed with its reason.
    pub(crate) expires: Option<SystemTime>,
}

impl Join {
    /// A stream of one group, anonymous until [`Join::user`] or [`Join::identity`].
    ///
    /// ```
    /// let yo = sse::GroupName::new("yo")?;
    /// assert_eq!(sse::Join::group(yo.clone()), sse::Join::groups([yo.clone()]));
    /// assert_eq!(sse::Join::group(yo.clone()), yo.into()); // what a handler returning a group means
    /// # Ok::<(), sse::NameError>(())
    /// ```
    pub fn group(group: GroupName) -> Self {
        Self::groups([group])
    }

    /// A stream of several groups (a group named twice is streamed once).
    ///
    /// ```
    /// let (bob, yo) = (sse::GroupName::new("yo.bob")?, sse::GroupName::new("yo")?);
    /// assert_eq!(sse::Join::groups(vec![bob.clone(), yo.clone()]), [bob, yo].into());
    /// # Ok::<(), sse::NameError>(())
    /// ```
    pub fn groups(groups: impl IntoIterator<Item = GroupName>) -> Self {
        Self {
            groups: groups.into_iter().collect(),
            identity: None,
            rewind: None,
            expires: None,
        }
    }

    /// Opened by user `user`, without metadata: `.identity(Identity::new(user))`.
    ///
    /// ```
    /// let yo = sse::GroupName::new("yo")?;
    /// let alice = sse::Identity::new("alice");
    /// assert_eq!(sse::Join::group(yo.clone()).user("alice"), sse::Join::group(yo).identity(alice));
    /// # Ok::<(), sse::NameError>(())
    /// ```
    pub fn user(self, user: impl Into<String>) -> Self {
        self.identity(Identity::new(user))
    }

    /// A client that comes without `Last-Event-ID` first gets the last `events` events of each
    /// group (as many as its history still holds), then the live stream: the current price of
    /// a ticker, the last message of a room. A client with `Last-Event-ID` resumes as always.
    /// What `#[sse::subscribe("ticker", rewind = 1)]` sets.
    ///
    /// ```
    /// use futures_util::StreamExt;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = sse::Hub::new(sse::Config::default().retry(None));
    /// let ticker = sse::GroupName::new("ticker")?;
    /// let _watching = hub.subscribe(ticker.clone(), &Default::default())?; // the group is held
    /// hub.publish("ticker", Some("price"), "41")?;
    /// let id = hub.publish("ticker", Some("price"), "42")?;
    /// let mut late = hub.subscribe(sse::Join::group(ticker).rewind(1), &Default::default())?;
    /// late.next().await; // its start
    /// assert_eq!(late.next().await.unwrap(), format!("event: price\ndata: 42\nid: {id}\n\n"));
    /// # Ok(()) }
    /// ```
    pub fn rewind(mut self, events: usize) -> Self {
        self.rewind = Some(events);
        self
    }

    /// This join, rewound by `events` unless it says how far itself.
    pub(crate) fn rewind_unless_set(mut self, events: usize) -> Self {
        self.rewind.get_or_insert(events);
        self
    }

    /// The stream ends at `at`, with a [`stream-closed`](crate::STREAM_CLOSED) event whose data
    /// is `{"reason":"expired"}` and whose id is the stream's position, so a client that comes
    /// back with a fresh authorization resumes where it was. What `sse::Token::join` sets, to the
    /// token's expiry; a handler may set it to a session's.
    ///
    /// ```
    /// use futures_util::StreamExt;
    /// use std::time::{Duration, SystemTime};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let hub = sse::Hub::new(sse::Config::default().retry(None).keep_alive(None));
    /// let yo = sse::GroupName::new("yo")?;
    /// let until = SystemTime::now() + Duration::from_secs(60);
    /// let mut stream = hub.subscribe(sse::Join::group(yo).expires_at(until), &Default::default())?;
    /// stream.next().await; // its start
    /// let closed = stream.next().await.unwrap(); // a minute later
    /// assert!(closed.starts_with(b"event: stream-closed\ndata: {\"reason\":\"expired\"}\nid: "));
    /// assert_eq!(stream.next().await, None);
    /// # Ok(()) }
    /// ```
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires = Some(at);
        self
    }

    /// Opened by `identity`.
    ///
    /// ```
    /// let alice = sse::Identity::new("alice").with_meta(r#"{"name":"Alice"}"#);
    /// let join = sse::Join::group(sse::GroupName::new("yo")?).identity(alice);
    /// # let _ = join;
    /// # Ok::<(), sse::NameError>(())
    /// ```
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }
}

impl From<GroupName> for Join {
    fn from(group: GroupName) -> Self {
        Join::group(group)
    }
}

impl From<Vec<GroupName>> for Join {
    fn from(groups: Vec<GroupName>) -> Self {
        Join::groups(groups)
    }
}

impl<const N: usize> From<[GroupName; N]> for Join {
    fn from(groups: [GroupName; N]) -> Self {
        Join::groups(groups)
    }
}

/// Whose streams the server closes: a user's ([`Hub::close_user`](crate::Hub::close_user)) or a
/// group's ([`Hub::close_group`](crate::Hub::close_group)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Closing {
    User(String),
    Group(GroupName),
}
