//! Subscription tokens: a stream authorized by a JWT that an app of any language signed, naming
//! the groups its holder may stream, who they are and until when.

use std::{
    collections::HashMap,
    fmt,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    extract::FromRequestParts,
    http::{header, request::Parts, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use base64::Engine as _;
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};

use crate::{GroupName, Identity, Join};

/// The cookie a [`Token`] is read from unless [`TokenKeys::cookie`] names another: an app on the
/// same site can set it (`HttpOnly`, `Secure`, `SameSite=Strict`) rather than put the token in
/// the page.
///
/// ```
/// assert_eq!(sse::TOKEN_COOKIE, "sse_token");
/// ```
pub const TOKEN_COOKIE: &str = "sse_token";

/// A key that verifies subscription tokens. Its type fixes the one algorithm it accepts: a token
/// that claims another (`none` included) is refused, so a public key can never be taken for an
/// HMAC secret.
///
/// ```
/// let secret = sse::TokenKey::hs256("a-secret-of-at-least-32-bytes-0123456789")?;
/// assert!(sse::TokenKey::hs256("short").is_err());
/// # let _ = secret;
/// # Ok::<(), sse::TokenKeyError>(())
/// ```
#[derive(Clone)]
pub struct TokenKey {
    key: DecodingKey,
    algorithm: Algorithm,
    /// The algorithm as a token's header names it.
    alg: &'static str,
}

impl TokenKey {
    /// A secret shared with the app that signs (`HS256`): at least 32 bytes, as RFC 7518 asks of
    /// an HMAC-SHA256 key.
    ///
    /// ```
    /// let key = sse::TokenKey::hs256(b"a-secret-of-at-least-32-bytes-0123456789")?;
    /// # let _ = key;
    /// # Ok::<(), sse::TokenKeyError>(())
    /// ```
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, TokenKeyError> {
        let secret = secret.as_ref();
        if secret.len() < 32 {
            return Err(TokenKeyError::ShortSecret(secret.len()));
        }
        Ok(Self {
            key: DecodingKey::from_secret(secret),
            algorithm: Algorithm::HS256,
            alg: "HS256",
        })
    }

    /// An Ed25519 public key in PEM (`-----BEGIN PUBLIC KEY-----`): tokens signed `EdDSA` with
    /// its private key.
    ///
    /// ```
    /// let pem = "-----BEGIN PUBLIC KEY-----
    /// MCowBQYDK2VwAyEAA9v18Iz6M9ZZz6duHX5PdqK8AXQtnv5YsfUK2LfKbKU=
    /// -----END PUBLIC KEY-----";
    /// let key = sse::TokenKey::ed25519_pem(pem)?;
    /// assert!(sse::TokenKey::ed25519_pem("not a key").is_err());
    /// # let _ = key;
    /// # Ok::<(), sse::TokenKeyError>(())
    /// ```
    pub fn ed25519_pem(pem: impl AsRef<[u8]>) -> Result<Self, TokenKeyError> {
        let key = DecodingKey::from_ed_pem(pem.as_ref()).map_err(TokenKeyError::Pem)?;
        Ok(Self {
            key,
            algorithm: Algorithm::EdDSA,
            alg: "EdDSA",
        })
    }

    /// An RSA public key in PEM (`-----BEGIN PUBLIC KEY-----` or `BEGIN RSA PUBLIC KEY`):
    /// tokens signed `RS256` with its private key.
    ///
    /// ```
    /// assert!(sse::TokenKey::rs256_pem("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----").is_err());
    /// ```
    pub fn rs256_pem(pem: impl AsRef<[u8]>) -> Result<Self, TokenKeyError> {
        let key = DecodingKey::from_rsa_pem(pem.as_ref()).map_err(TokenKeyError::Pem)?;
        Ok(Self {
            key,
            algorithm: Algorithm::RS256,
            alg: "RS256",
        })
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("algorithm", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Why a [`TokenKey`] could not be made.
///
/// ```
/// let short = sse::TokenKey::hs256("0123456789").unwrap_err();
/// assert_eq!(short.to_string(), "an HS256 secret needs at least 32 bytes, this one has 10");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum TokenKeyError {
    /// An HS256 secret shorter than 32 bytes (its length).
    ShortSecret(usize),
    /// Not a public key of the kind asked for, in PEM.
    Pem(jsonwebtoken::errors::Error),
}

impl fmt::Display for TokenKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenKeyError::ShortSecret(len) => write!(
                f,
                "an HS256 secret needs at least 32 bytes, this one has {len}"
            ),
            TokenKeyError::Pem(_) => f.write_str("not a public key of this kind in PEM"),
        }
    }
}

impl std::error::Error for TokenKeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TokenKeyError::ShortSecret(_) => None,
            TokenKeyError::Pem(cause) => Some(cause),
        }
    }
}

/// The keys that verify subscription tokens, which [`Token`] reads from the request: put them
/// there with [`TokenKeys::layer`]. A token whose header names a key (`kid`) is verified with
/// the key of that id; one that names none, with the key given without an id.
///
/// ```
/// use axum::{routing::get, Router};
///
/// #[sse::subscribe]
/// async fn events(token: sse::Token) -> Result<sse::Join, sse::TokenRefused> {
///     token.join(token.named_groups())
/// }
///
/// let keys = sse::TokenKeys::new()
///     .key(sse::TokenKey::hs256(std::env::var("SSE_TOKEN_SECRET").unwrap_or("x".repeat(32)))?)
///     .key_with_id("2027-01", sse::TokenKey::hs256("a-newer-secret-of-32-bytes-or-more")?);
/// let app: Router = Router::new().route("/events", get(events)).layer(keys.layer());
/// # Ok::<(), sse::TokenKeyError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct TokenKeys(Arc<Keys>);

#[derive(Debug, Default, Clone)]
struct Keys {
    unnamed: Option<TokenKey>,
    by_id: HashMap<String, TokenKey>,
    cookie: Option<String>,
}

impl TokenKeys {
    /// No keys yet: every token is refused.
    ///
    /// ```
    /// let keys = sse::TokenKeys::new();
    /// # let _ = keys;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// With `key` for tokens whose header names no key id (replacing the one given before).
    ///
    /// ```
    /// let keys = sse::TokenKeys::new().key(sse::TokenKey::hs256([7; 32])?);
    /// # let _ = keys;
    /// # Ok::<(), sse::TokenKeyError>(())
    /// ```
    pub fn key(self, key: TokenKey) -> Self {
        self.with(|keys| keys.unnamed = Some(key))
    }

    /// With `key` for tokens whose header says `"kid": id`: keys can be rotated, and an app can
    /// sign with a secret while another uses a key pair.
    ///
    /// ```
    /// let keys = sse::TokenKeys::new().key_with_id("2027-01", sse::TokenKey::hs256([7; 32])?);
    /// # let _ = keys;
    /// # Ok::<(), sse::TokenKeyError>(())
    /// ```
    pub fn key_with_id(self, id: impl Into<String>, key: TokenKey) -> Self {
        self.with(|keys| {
            keys.by_id.insert(id.into(), key);
        })
    }

    /// Reads the token from the cookie `name` rather than [`TOKEN_COOKIE`].
    ///
    /// ```
    /// let keys = sse::TokenKeys::new().cookie("events_token");
    /// # let _ = keys;
    /// ```
    pub fn cookie(self, name: impl Into<String>) -> Self {
        self.with(|keys| keys.cookie = Some(name.into()))
    }

    fn with(mut self, change: impl FnOnce(&mut Keys)) -> Self {
        change(Arc::make_mut(&mut self.0));
        self
    }

    /// A layer that puts these keys in every request under it, where [`Token`] finds them.
    ///
    /// ```
    /// use axum::{routing::get, Router};
    ///
    /// async fn events(token: sse::Token, last: sse::LastEventId) -> axum::response::Response {
    ///     # use axum::response::IntoResponse;
    ///     match token.join(token.named_groups()) {
    ///         Ok(join) => sse::hub().subscribe(join, &last).into_response(),
    ///         Err(refused) => refused.into_response(),
    ///     }
    /// }
    ///
    /// let keys = sse::TokenKeys::new().key(sse::TokenKey::hs256([7; 32])?);
    /// let app: Router = Router::new().route("/events", get(events)).layer(keys.layer());
    /// # Ok::<(), sse::TokenKeyError>(())
    /// ```
    pub fn layer(&self) -> axum::Extension<TokenKeys> {
        axum::Extension(self.clone())
    }

    /// Verifies `token`: its signature with the key its header names, then its claims. What the
    /// [`Token`] extractor does with the token it found.
    ///
    /// ```
    /// let keys = sse::TokenKeys::new().key(sse::TokenKey::hs256([7; 32])?);
    /// let refused = keys.verify("not.a.token").unwrap_err();
    /// assert_eq!(refused.to_string(), "malformed token");
    /// assert_eq!(refused.status(), 401);
    /// # Ok::<(), sse::TokenKeyError>(())
    /// ```
    pub fn verify(&self, token: &str) -> Result<Token, TokenRefused> {
        let header = Header::read(token)?;
        let keys = &self.0;
        let key = match &header.kid {
            Some(id) => keys.by_id.get(id),
            None => keys.unnamed.as_ref(),
        }
        .ok_or(TokenRefused::UnknownKey)?;
        if header.alg != key.alg {
            return Err(TokenRefused::WrongAlgorithm);
        }
        let mut validation = Validation::new(key.algorithm);
        // The times are checked below, to the second the stream is closed at.
        validation.validate_exp = false;
        validation.validate_aud = false;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|error| match error.kind() {
                ErrorKind::InvalidSignature => TokenRefused::BadSignature,
                ErrorKind::InvalidAlgorithm => TokenRefused::WrongAlgorithm,
                _ => TokenRefused::Malformed,
            })?
            .claims;
        let now = SystemTime::now();
        let expires = unix_time(claims.exp)?;
        if expires <= now {
            return Err(TokenRefused::Expired);
        }
        if let Some(nbf) = claims.nbf {
            if unix_time(nbf)? > now {
                return Err(TokenRefused::NotYetValid);
            }
        }
        Ok(Token {
            groups: claims.groups,
            identity: claims
                .sub
                .map(|user| Identity::new(user).with_meta(claims.meta.unwrap_or_default())),
            expires,
        })
    }

    fn cookie_name(&self) -> &str {
        self.0.cookie.as_deref().unwrap_or(TOKEN_COOKIE)
    }
}

/// A time claim, in seconds since 1970; one past what the system's clock can hold is no time.
fn unix_time(seconds: u64) -> Result<SystemTime, TokenRefused> {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .ok_or(TokenRefused::Malformed)
}

/// A token's header, read before any key is chosen: `alg` as any text, so `none` is told apart
/// from a token that is not one.
#[derive(serde::Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

impl Header {
    fn read(token: &str) -> Result<Self, TokenRefused> {
        let encoded = token.split('.').next().unwrap_or_default();
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| TokenRefused::Malformed)?;
        let header: Header = serde_json::from_slice(&json).map_err(|_| TokenRefused::Malformed)?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(TokenRefused::Unsigned);
        }
        Ok(header)
    }
}

/// What a subscription token says. `exp` and `nbf` are read as numbers here, so a token that
/// gives them as anything else is malformed, not unlimited.
#[derive(serde::Deserialize)]
struct Claims {
    exp: u64,
    nbf: Option<u64>,
    sub: Option<String>,
    meta: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
}

/// A verified subscription token, as an axum extractor: taken from `Authorization: Bearer`, else
/// from `?token=` (a browser's `EventSource` cannot set headers), else from the cookie
/// [`TOKEN_COOKIE`]; verified with the [`TokenKeys`] a layer put in the request. A request
/// without a valid one is answered [`TokenRefused`] (`401`), and the handler does not run.
///
/// The token is a JWT signed `HS256`, `EdDSA` or `RS256`, whose claims are:
///
/// | Claim    | What it says |
/// |----------|--------------|
/// | `groups` | the groups it may stream: exact names, or `prefix.*` for every group under `prefix.` |
/// | `sub`    | the user (optional): the stream counts in presence as them |
/// | `meta`   | their presence metadata (optional text) |
/// | `exp`    | when it expires (seconds since 1970): required; the stream ends then |
/// | `nbf`    | not before (optional) |
///
/// [`Token::join`] opens the groups a request asks for, once each is allowed, as the token's
/// user, until its expiry: the stream then ends with a
/// [`stream-closed`](crate::STREAM_CLOSED) event whose data is `{"reason":"expired"}`, and a
/// reconnect with the same token is answered `401`, so the page fetches a fresh one.
///
/// ```
/// use axum::{extract::Path, routing::get, Router};
///
/// #[sse::subscribe]
/// async fn room_events(
///     token: sse::Token,
///     Path(room): Path<sse::GroupName>,
/// ) -> Result<sse::Join, sse::TokenRefused> {
///     token.join([room]) // 403 unless the token allows the room
/// }
///
/// let keys = sse::TokenKeys::new().key(sse::TokenKey::hs256([7; 32])?);
/// let app: Router = Router::new()
///     .route("/rooms/{room}/events", get(room_events))
///     .layer(keys.layer());
/// # Ok::<(), sse::TokenKeyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Token {
    groups: Vec<String>,
    identity: Option<Identity>,
    expires: SystemTime,
}

impl Token {
    /// Whether it allows streaming `group`: the group is named in `groups`, or is under a
    /// `prefix.*` named there.
    ///
    /// ```
    /// # let keys = sse::TokenKeys::new().key(sse::TokenKey::hs256([7; 32])?);
    /// # let key = jsonwebtoken::EncodingKey::from_secret(&[7; 32]);
    /// # let claims: serde_json::Value = serde_json::from_str(r#"{"groups":["yo","rooms.*"],"exp":4102444800}"#)?;
    /// # let token = keys.verify(&jsonwebtoken::encode(&Default::default(), &claims, &key)?)?;
    /// // a token whose claims say "groups": ["yo", "rooms.*"]
    /// assert!(token.allows(&sse::GroupName::new("rooms.7")?));
    /// assert!(!token.allows(&sse::GroupName::new("rooms")?));
    /// assert!(!token.allows(&sse::GroupName::new("yo.bob")?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn allows(&self, group: &GroupName) -> bool {
        let group = group.as_str();
        self.groups
            .iter()
            .any(|allowed| match allowed.strip_suffix('*') {
                Some(prefix) if prefix.ends_with('.') => {
                    group.len() > prefix.len() && group.starts_with(prefix)
                }
                _ => allowed == group,
            })
    }

    /// The groups it names exactly (not its `prefix.*`), for an endpoint that streams all of
    /// them.
    ///
    /// ```
    /// # let keys = sse::TokenKeys::new().key(sse::TokenKey::hs256([7; 32])?);
    /// # let key = jsonwebtoken::EncodingKey::from_secret(&[7; 32]);
    /// # let claims: serde_json::Value = serde_json::from_str(r#"{"groups":["yo","rooms.*"],"exp":4102444800}"#)?;
    /// # let token = keys.verify(&jsonwebtoken::encode(&Default::default(), &claims, &key)?)?;
    /// // "groups": ["yo", "rooms.*"]
    /// assert_eq!(token.named_groups(), [sse::GroupName::new("yo")?]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn named_groups(&self) -> Vec<GroupName> {
        self.groups
            .iter()
            .filter_map(|name| GroupName::new(name.as_str()).ok())
            .collect()
    }

    /// Who it was issued to (`sub`), with their metadata (`meta`), if it says.
    ///
    /// ```
    /// # let keys = sse::TokenKeys::new().key(sse::TokenKey::hs256([7; 32])?);
    /// # let key = jsonwebtoken::EncodingKey::from_secret(&[7; 32]);
    /// # let claims: serde_json::Value = serde_json::from_str(r#"{"sub":"alice","meta":"Alice","exp":4102444800}"#)?;
    /// # let token = keys.verify(&jsonwebtoken::encode(&Default::default(), &claims, &key)?)?;
    /// assert_eq!(token.identity().map(sse::Identity::user), Some("alice"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// When it expires (`exp`).
    ///
    /// ```
    /// # let keys = sse::TokenKeys::new().key(sse::TokenKey::hs256([7; 32])?);
    /// # let key = jsonwebtoken::EncodingKey::from_secret(&[7; 32]);
    /// # let claims: serde_json::Value = serde_json::from_str(r#"{"exp":4102444800}"#)?;
    /// # let token = keys.verify(&jsonwebtoken::encode(&Default::default(), &claims, &key)?)?;
    /// let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(4102444800);
    /// assert_eq!(token.expires(), at);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn expires(&self) -> SystemTime {
        self.expires
    }

    /// A stream of `groups` as the token's user, ending at its expiry
    /// ([`Join::expires_at`]); [`TokenRefused::GroupNotAllowed`] (`403`) for the first group it
    /// does not allow.
    ///
    /// ```
    /// # let keys = sse::TokenKeys::new().key(sse::TokenKey::hs256([7; 32])?);
    /// # let key = jsonwebtoken::EncodingKey::from_secret(&[7; 32]);
    /// # let claims: serde_json::Value = serde_json::from_str(r#"{"groups":["rooms.*"],"exp":4102444800}"#)?;
    /// # let token = keys.verify(&jsonwebtoken::encode(&Default::default(), &claims, &key)?)?;
    /// // "groups": ["rooms.*"]
    /// assert!(token.join([sse::GroupName::new("rooms.7")?]).is_ok());
    /// let refused = token.join([sse::GroupName::new("admin")?]).unwrap_err();
    /// assert_eq!(refused.to_string(), "the token does not allow group admin");
    /// assert_eq!(refused.status(), 403);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn join(&self, groups: impl IntoIterator<Item = GroupName>) -> Result<Join, TokenRefused> {
        let groups: Vec<GroupName> = groups.into_iter().collect();
        if let Some(refused) = groups.iter().find(|group| !self.allows(group)) {
            return Err(TokenRefused::GroupNotAllowed(refused.clone()));
        }
        let join = Join::groups(groups).expires_at(self.expires);
        Ok(match &self.identity {
            Some(identity) => join.identity(identity.clone()),
            None => join,
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Token {
    type Rejection = TokenRefused;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, TokenRefused> {
        let keys = parts
            .extensions
            .get::<TokenKeys>()
            .ok_or(TokenRefused::NoKeys)?;
        let token = bearer(parts)
            .or_else(|| query_token(parts))
            .or_else(|| cookie(parts, keys.cookie_name()))
            .ok_or(TokenRefused::Missing)?;
        keys.verify(&token)
    }
}

fn bearer(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn query_token(parts: &Parts) -> Option<String> {
    form_urlencoded::parse(parts.uri.query()?.as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned())
}

fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"').to_owned())
}

/// Why a request's subscription token was refused: `401 Unauthorized` (with
/// `WWW-Authenticate: Bearer`, and `error="invalid_token"` unless there was none) when there is
/// no valid token, `403
/// Forbidden` when the token does not allow a group asked for, and `500` when no [`TokenKeys`]
/// were put in the request. The body says which, in a line of text.
///
/// ```
/// use axum::response::IntoResponse;
///
/// let response = sse::TokenRefused::Expired.into_response();
/// assert_eq!(response.status(), 401);
/// assert_eq!(response.headers()["www-authenticate"], r#"Bearer error="invalid_token", error_description="token expired""#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRefused {
    /// No token in the `Authorization` header, the query or the cookie.
    Missing,
    /// Not a JWT, or its claims are not a subscription token's.
    Malformed,
    /// `alg: none`: a token must be signed.
    Unsigned,
    /// Its header names a key (`kid`) the server does not have, or names none and the server
    /// has no key without an id.
    UnknownKey,
    /// Signed with another algorithm than its key's (`HS256` with an RSA public key as its
    /// secret, say).
    WrongAlgorithm,
    /// Its signature does not match.
    BadSignature,
    /// Its `exp` is past: the page fetches a fresh one.
    Expired,
    /// Its `nbf` is still to come.
    NotYetValid,
    /// It does not allow this group.
    GroupNotAllowed(GroupName),
    /// No [`TokenKeys::layer`] above the route: the server's mistake.
    NoKeys,
}

impl TokenRefused {
    /// The HTTP status it is answered with.
    ///
    /// ```
    /// assert_eq!(sse::TokenRefused::BadSignature.status(), 401);
    /// assert_eq!(sse::TokenRefused::GroupNotAllowed(sse::GroupName::new("admin")?).status(), 403);
    /// # Ok::<(), sse::NameError>(())
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            TokenRefused::GroupNotAllowed(_) => StatusCode::FORBIDDEN,
            TokenRefused::NoKeys => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl fmt::Display for TokenRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenRefused::Missing => write!(
                f,
                "no token: send it as `Authorization: Bearer`, `?token=` or a cookie"
            ),
            TokenRefused::Malformed => f.write_str("malformed token"),
            TokenRefused::Unsigned => f.write_str("unsigned token (alg none)"),
            TokenRefused::UnknownKey => f.write_str("unknown key (kid)"),
            TokenRefused::WrongAlgorithm => f.write_str("the token's algorithm is not its key's"),
            TokenRefused::BadSignature => f.write_str("bad signature"),
            TokenRefused::Expired => f.write_str("token expired"),
            TokenRefused::NotYetValid => f.write_str("token not valid yet (nbf)"),
            TokenRefused::GroupNotAllowed(group) => {
                write!(f, "the token does not allow group {group}")
            }
            TokenRefused::NoKeys => f.write_str("no token keys: add TokenKeys::layer()"),
        }
    }
}

impl std::error::Error for TokenRefused {}

impl IntoResponse for TokenRefused {
    fn into_response(self) -> Response {
        let status = self.status();
        let why = self.to_string();
        tracing::debug!(%why, "subscription token refused");
        let mut response = (status, why.clone()).into_response();
        // RFC 6750: no error code for a request that sent no token.
        let challenge = match self {
            TokenRefused::Missing => Some("Bearer".to_owned()),
            _ if status == StatusCode::UNAUTHORIZED => Some(format!(
                r#"Bearer error="invalid_token", error_description="{why}""#
            )),
            _ => None,
        };
        if let Some(Ok(challenge)) = challenge.map(HeaderValue::try_from) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}
