//! What the hub runs with, read from the environment once at startup: every mistake is named
//! there, before anything listens.

use std::fmt;

use axum::http::HeaderValue;

/// The hub's address (default `127.0.0.1:8001`).
pub(crate) const ADDR_ENV: &str = "SSE_HUB_ADDR";
/// The HS256 secret that verifies page tokens.
pub(crate) const SECRET_ENV: &str = "SSE_TOKEN_SECRET";
/// A file with the Ed25519 or RSA public key (PEM) that verifies page tokens.
pub(crate) const PUBLIC_KEY_ENV: &str = "SSE_TOKEN_PUBLIC_KEY";
/// The origins whose pages may open streams, comma-separated (none: same origin only).
pub(crate) const CORS_ENV: &str = "SSE_CORS_ORIGINS";
/// The most streams open at once.
pub(crate) const MAX_STREAMS_ENV: &str = "SSE_MAX_STREAMS";

/// The hub's settings.
pub(crate) struct Settings {
    pub(crate) addr: String,
    pub(crate) keys: sse::TokenKeys,
    pub(crate) publish: sse::PublishEndpoint,
    pub(crate) cors: Vec<HeaderValue>,
    pub(crate) config: sse::Config,
}

impl Settings {
    /// The settings the environment gives.
    pub(crate) fn from_env() -> Result<Self, SettingsError> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let key = match (var(SECRET_ENV), var(PUBLIC_KEY_ENV)) {
            (Some(secret), None) => sse::TokenKey::hs256(secret).map_err(SettingsError::Key)?,
            (None, Some(path)) => public_key(&path)?,
            (Some(_), Some(_)) => return Err(SettingsError::TwoKeys),
            (None, None) => return Err(SettingsError::NoKey),
        };
        let publish = sse::PublishEndpoint::from_env().map_err(SettingsError::PublishToken)?;
        let cors = var(CORS_ENV)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|origin| !origin.is_empty())
            .map(|origin| {
                HeaderValue::from_str(origin).map_err(|_| SettingsError::Origin(origin.into()))
            })
            .collect::<Result<_, _>>()?;
        let mut config = sse::Config::from_env().map_err(SettingsError::Broker)?;
        if let Some(max) = var(MAX_STREAMS_ENV) {
            let max = max.parse().map_err(|_| SettingsError::MaxStreams(max))?;
            config = config.max_streams(max);
        }
        Ok(Self {
            addr: var(ADDR_ENV).unwrap_or_else(|| "127.0.0.1:8001".into()),
            keys: sse::TokenKeys::new().key(key),
            publish,
            cors,
            config,
        })
    }
}

/// The public key in the PEM file at `path`: Ed25519, else RSA.
fn public_key(path: &str) -> Result<sse::TokenKey, SettingsError> {
    let pem = std::fs::read(path).map_err(|error| SettingsError::Read(path.into(), error))?;
    sse::TokenKey::ed25519_pem(&pem)
        .or_else(|_| sse::TokenKey::rs256_pem(&pem))
        .map_err(|_| SettingsError::NotAPublicKey(path.into()))
}

/// A setting the hub cannot start with.
#[derive(Debug)]
pub(crate) enum SettingsError {
    NoKey,
    TwoKeys,
    Key(sse::TokenKeyError),
    Read(String, std::io::Error),
    NotAPublicKey(String),
    PublishToken(sse::TokenError),
    Origin(String),
    Broker(sse::BrokerError),
    MaxStreams(String),
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::NoKey => write!(
                f,
                "no token key: set {SECRET_ENV} (HS256) or {PUBLIC_KEY_ENV} (a PEM file)"
            ),
            SettingsError::TwoKeys => write!(f, "set {SECRET_ENV} or {PUBLIC_KEY_ENV}, not both"),
            SettingsError::Key(_) => write!(f, "{SECRET_ENV}"),
            SettingsError::Read(path, _) => write!(f, "{PUBLIC_KEY_ENV}: cannot read {path}"),
            SettingsError::NotAPublicKey(path) => write!(
                f,
                "{PUBLIC_KEY_ENV}: {path} holds no Ed25519 or RSA public key in PEM"
            ),
            SettingsError::PublishToken(_) => f.write_str("the publish endpoint's token"),
            SettingsError::Origin(origin) => write!(f, "{CORS_ENV}: {origin:?} is not an origin"),
            SettingsError::Broker(_) => f.write_str("the broker"),
            SettingsError::MaxStreams(value) => {
                write!(f, "{MAX_STREAMS_ENV}: {value:?} is not a number")
            }
        }
    }
}

impl std::error::Error for SettingsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SettingsError::Key(cause) => Some(cause),
            SettingsError::Read(_, cause) => Some(cause),
            SettingsError::PublishToken(cause) => Some(cause),
            SettingsError::Broker(cause) => Some(cause),
            _ => None,
        }
    }
}
