//! The naming rules of `sse`, in one place.
//!
//! The runtime checks names given at run time and the macros check string literals at compile
//! time; both call these functions so the two can never disagree.
//!
//! ```
//! assert!(sse_names::check_group("yo.alice").is_ok());
//! assert_eq!(
//!     sse_names::check_group("yo alice").unwrap_err().to_string(),
//!     "invalid group name \"yo alice\": character ' ' at byte 2 is not allowed \
//!      (allowed: ASCII letters, digits, '-', '_', '.')"
//! );
//! assert!(sse_names::check_event("yo\n").is_err());
//! ```

use std::fmt;

/// The longest group name allowed, in bytes (Django Channels: "fewer than 100 characters").
pub const MAX_GROUP_LEN: usize = 99;

/// The longest event name allowed, in bytes.
pub const MAX_EVENT_LEN: usize = 256;

/// Why a name was refused.
///
/// ```
/// let err = sse_names::check_group("").unwrap_err();
/// assert_eq!(err, sse_names::NameError::Empty { what: "group name" });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty {
        /// What kind of name it was (`"group name"`, `"event name"`).
        what: &'static str,
    },
    /// The name is longer than allowed.
    TooLong {
        /// What kind of name it was.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The name contains a character that is not allowed.
    BadChar {
        /// What kind of name it was.
        what: &'static str,
        /// The whole name, for the message.
        name: String,
        /// The offending character.
        found: char,
        /// Its byte offset in the name.
        at: usize,
        /// What is allowed instead.
        allowed: &'static str,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty { what } => write!(f, "invalid {what}: it is empty"),
            NameError::TooLong { what, len, max } => {
                write!(f, "invalid {what}: {len} bytes long, at most {max} allowed")
            }
            NameError::BadChar {
                what,
                name,
                found,
                at,
                allowed,
            } => write!(
                f,
                "invalid {what} {name:?}: character {found:?} at byte {at} is not allowed (allowed: {allowed})"
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// With feature `axum` (the `sse` crate turns it on): a name taken from a request and refused is
/// the client's mistake, so the answer is `400 Bad Request` with the message as plain text.
///
/// ```
/// use axum::{http::StatusCode, response::IntoResponse};
///
/// let response = sse_names::check_group("yo alice").unwrap_err().into_response();
/// assert_eq!(response.status(), StatusCode::BAD_REQUEST);
/// ```
#[cfg(feature = "axum")]
impl axum::response::IntoResponse for NameError {
    fn into_response(self) -> axum::response::Response {
        (axum::http::StatusCode::BAD_REQUEST, self.to_string()).into_response()
    }
}

/// With feature `axum`: `?` on a name in a handler that answers `Result<_, Response>` gives the
/// same `400` as [`IntoResponse`](axum::response::IntoResponse).
///
/// ```
/// use axum::response::Response;
///
/// fn group_of(user: &str) -> Result<(), Response> {
///     sse_names::check_group(&format!("yo.{user}"))?;
///     Ok(())
/// }
/// assert_eq!(group_of("al ice").unwrap_err().status(), 400);
/// ```
#[cfg(feature = "axum")]
impl From<NameError> for axum::response::Response {
    fn from(error: NameError) -> Self {
        axum::response::IntoResponse::into_response(error)
    }
}

/// Checks a group name: 1 to 99 ASCII letters, digits, `-`, `_` or `.` (Django Channels' rule).
///
/// ```
/// assert!(sse_names::check_group("chat-42_room.a").is_ok());
/// assert!(sse_names::check_group("héhé").is_err());
/// assert!(sse_names::check_group(&"a".repeat(100)).is_err());
/// ```
pub fn check_group(name: &str) -> Result<(), NameError> {
    const WHAT: &str = "group name";
    check_len(WHAT, name, MAX_GROUP_LEN)?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    check_chars(WHAT, name, allowed, "ASCII letters, digits, '-', '_', '.'")
}

/// Checks an event name: 1 to 256 bytes with no CR, LF or NUL, which would break the stream.
///
/// ```
/// assert!(sse_names::check_event("yo").is_ok());
/// assert!(sse_names::check_event("user joined").is_ok());
/// assert!(sse_names::check_event("yo\r\ndata: injected").is_err());
/// ```
pub fn check_event(name: &str) -> Result<(), NameError> {
    const WHAT: &str = "event name";
    check_len(WHAT, name, MAX_EVENT_LEN)?;
    check_chars(
        WHAT,
        name,
        is_field_safe,
        "any character but CR, LF and NUL",
    )
}

/// Whether `c` may appear in a single-line SSE field (`event:`, `id:`): not CR, LF or NUL.
///
/// ```
/// assert!(sse_names::is_field_safe('a'));
/// assert!(!sse_names::is_field_safe('\0'));
/// ```
pub fn is_field_safe(c: char) -> bool {
    !matches!(c, '\r' | '\n' | '\0')
}

fn check_len(what: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    match name.len() {
        0 => Err(NameError::Empty { what }),
        len if len > max => Err(NameError::TooLong { what, len, max }),
        _ => Ok(()),
    }
}

fn check_chars(
    what: &'static str,
    name: &str,
    allowed: impl Fn(char) -> bool,
    described: &'static str,
) -> Result<(), NameError> {
    match name.char_indices().find(|&(_, c)| !allowed(c)) {
        None => Ok(()),
        Some((at, found)) => Err(NameError::BadChar {
            what,
            name: name.to_owned(),
            found,
            at,
            allowed: described,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_rule_matches_django_channels() {
        assert!(check_group("a").is_ok());
        assert!(check_group(&"a".repeat(99)).is_ok());
        assert_eq!(
            check_group(&"a".repeat(100)),
            Err(NameError::TooLong {
                what: "group name",
                len: 100,
                max: 99
            })
        );
        for bad in ["", "a b", "a/b", "a:b", "ünï", "a\nb", "a\0"] {
            assert!(check_group(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn event_rule_refuses_line_breaks_and_nul() {
        for bad in ["", "a\nb", "a\rb", "a\0b"] {
            assert!(check_event(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_event("ünïcode event").is_ok());
    }
}
