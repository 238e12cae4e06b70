//! What the hub runs with: a TOML file (`--config hub.toml` or `SSE_HUB_CONFIG`), and the
//! environment, which overrides it. Read once at startup; every mistake is named there, with
//! the variable or the key that holds it, before anything listens.

use std::{fmt, time::Duration};

use axum::http::HeaderValue;
use serde::Deserialize;

/// The file to read, when `--config` names none.
pub(crate) const CONFIG_ENV: &str = "SSE_HUB_CONFIG";

/// Each setting the environment can give, with its key in the file.
const ENV: [(&str, &str); 9] = [
    ("SSE_HUB_ADDR", "addr"),
    ("SSE_PUBLISH_TOKEN", "publish_token"),
    ("SSE_BROKER_URL", "broker_url"),
    ("SSE_CORS_ORIGINS", "cors_origins"),
    ("SSE_MAX_STREAMS", "max_streams"),
    ("SSE_TOKEN_SECRET", "token_keys"),
    ("SSE_TOKEN_PUBLIC_KEY", "token_keys"),
    ("SSE_WEBHOOK_URL", "webhooks.url"),
    ("SSE_WEBHOOK_SECRET", "webhooks.secret"),
];

/// The hub's settings.
pub(crate) struct Settings {
    pub(crate) addr: String,
    pub(crate) keys: sse::TokenKeys,
    pub(crate) publish: sse::PublishEndpoint,
    pub(crate) cors: Vec<HeaderValue>,
    pub(crate) config: sse::Config,
}

/// The file, as written: every key may be left out (the environment may give it).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    addr: Option<String>,
    publish_token: Option<String>,
    broker_url: Option<String>,
    cors_origins: Option<Vec<String>>,
    max_streams: Option<usize>,
    #[serde(default)]
    token_keys: Vec<KeyEntry>,
    token_cookie: Option<String>,
    webhooks: Option<WebhookEntry>,
}

/// `[[token_keys]]`: a key that verifies page tokens, for those whose header names its `kid`
/// (or, without `kid`, for those naming none).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    kid: Option<String>,
    secret: Option<String>,
    public_key: Option<String>,
}

/// `[webhooks]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookEntry {
    url: Option<String>,
    secret: Option<String>,
    batch_events: Option<usize>,
    batch_wait_ms: Option<u64>,
    queue: Option<usize>,
    attempts: Option<u32>,
    first_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    timeout_ms: Option<u64>,
}

/// Where the settings come from, to name the place of a mistake.
struct Places {
    /// The file, if any.
    file: Option<String>,
    /// The variables set in the environment.
    set: Vec<&'static str>,
}

impl Places {
    /// Where a missing `key` may be given.
    fn missing(&self, key: &str) -> String {
        let env = ENV.iter().filter(|(_, k)| *k == key).map(|(env, _)| *env);
        let mut places: Vec<String> = env.map(str::to_owned).collect();
        places.push(match &self.file {
            Some(file) => format!("`{key}` in {file}"),
            None => format!("`{key}` in a --config file"),
        });
        places.join(" or ")
    }

    /// The variable that gave `key`, or else its place in the file.
    fn of(&self, key: &str) -> String {
        let from_env = ENV
            .iter()
            .find(|(env, k)| *k == key && self.set.contains(env));
        match (from_env, &self.file) {
            (Some((env, _)), _) => (*env).to_owned(),
            (None, Some(file)) => format!("{file}: {key}"),
            (None, None) => key.to_owned(),
        }
    }
}

impl Settings {
    /// The settings of the file `config` (if any: else of `SSE_HUB_CONFIG`'s), with those of
    /// the environment over them.
    pub(crate) fn load(config: Option<String>) -> Result<Self, SettingsError> {
        let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let path = config.or_else(|| var(CONFIG_ENV));
        let mut file = match &path {
            Some(path) => read(path)?,
            None => File::default(),
        };
        let set = ENV
            .iter()
            .map(|(env, _)| *env)
            .filter(|env| var(env).is_some());
        let places = Places {
            file: path,
            set: set.collect(),
        };
        file.override_with(var)?;
        file.settings(&places)
    }
}

fn read(path: &str) -> Result<File, SettingsError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| SettingsError::new(path, "cannot read it").because(error))?;
    toml::from_str(&text)
        .map_err(|error| SettingsError::new(path, "not a hub configuration").because(error))
}

impl File {
    /// Puts the environment's settings in place of the file's.
    fn override_with(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), SettingsError> {
        self.addr = var("SSE_HUB_ADDR").or(self.addr.take());
        self.publish_token = var("SSE_PUBLISH_TOKEN").or(self.publish_token.take());
        self.broker_url = var("SSE_BROKER_URL").or(self.broker_url.take());
        if let Some(origins) = var("SSE_CORS_ORIGINS") {
            let origins = origins.split(',').map(str::trim).filter(|o| !o.is_empty());
            self.cors_origins = Some(origins.map(str::to_owned).collect());
        }
        if let Some(max) = var("SSE_MAX_STREAMS") {
            let parsed = max.parse().map_err(|_| {
                SettingsError::new("SSE_MAX_STREAMS", format!("{max:?} is not a number"))
            })?;
            self.max_streams = Some(parsed);
        }
        let (secret, public_key) = (var("SSE_TOKEN_SECRET"), var("SSE_TOKEN_PUBLIC_KEY"));
        if secret.is_some() || public_key.is_some() {
            let key = KeyEntry {
                kid: None,
                secret,
                public_key,
            };
            self.token_keys = vec![key];
        }
        let (url, secret) = (var("SSE_WEBHOOK_URL"), var("SSE_WEBHOOK_SECRET"));
        if url.is_some() || secret.is_some() {
            let webhooks = self.webhooks.get_or_insert_with(WebhookEntry::default);
            webhooks.url = url.or(webhooks.url.take());
            webhooks.secret = secret.or(webhooks.secret.take());
        }
        Ok(())
    }

    fn settings(self, places: &Places) -> Result<Settings, SettingsError> {
        let publish_token = self.publish_token.ok_or_else(|| {
            let why = format!("no publish token: set {}", places.missing("publish_token"));
            SettingsError::new("publish_token", why)
        })?;
        let publish = sse::PublishEndpoint::new(publish_token)
            .map_err(|error| SettingsError::new(places.of("publish_token"), "").because(error))?;
        let keys = token_keys(self.token_keys, self.token_cookie, places)?;
        let cors = self.cors_origins.unwrap_or_default().into_iter();
        let cors = cors
            .map(|origin| {
                HeaderValue::from_str(&origin).map_err(|_| {
                    let why = format!("{origin:?} is not an origin");
                    SettingsError::new(places.of("cors_origins"), why)
                })
            })
            .collect::<Result<_, _>>()?;
        let mut config = sse::Config::default();
        if let Some(url) = &self.broker_url {
            config = config
                .broker(url)
                .map_err(|error| SettingsError::new(places.of("broker_url"), "").because(error))?;
        }
        if let Some(max) = self.max_streams {
            config = config.max_streams(max);
        }
        if let Some(entry) = self.webhooks {
            config = config.webhooks(webhooks(entry, places)?);
        }
        Ok(Settings {
            addr: self.addr.unwrap_or_else(|| "127.0.0.1:8001".into()),
            keys,
            publish,
            cors,
            config,
        })
    }
}

/// The keys of `[[token_keys]]` (or of the environment): at most one without `kid`.
fn token_keys(
    entries: Vec<KeyEntry>,
    cookie: Option<String>,
    places: &Places,
) -> Result<sse::TokenKeys, SettingsError> {
    if entries.is_empty() {
        let why = format!(
            "no key verifies page tokens: set {} ([[token_keys]] with a secret or a public_key)",
            places.missing("token_keys")
        );
        return Err(SettingsError::new("token_keys", why));
    }
    let mut keys = sse::TokenKeys::new();
    let mut unnamed = false;
    // The environment replaces the file's keys with one.
    let from_env = places.set.iter().any(|env| env.starts_with("SSE_TOKEN_"));
    for (n, entry) in entries.into_iter().enumerate() {
        let place = |field: &str| match (from_env, field) {
            (true, "public_key") => "SSE_TOKEN_PUBLIC_KEY".to_owned(),
            (true, "secret") => "SSE_TOKEN_SECRET".to_owned(),
            (true, _) => "SSE_TOKEN_SECRET, SSE_TOKEN_PUBLIC_KEY".to_owned(),
            (false, "") => places.of(&format!("token_keys[{n}]")),
            (false, field) => places.of(&format!("token_keys[{n}].{field}")),
        };
        let key = match (entry.secret, entry.public_key) {
            (Some(secret), None) => sse::TokenKey::hs256(secret)
                .map_err(|error| SettingsError::new(place("secret"), "").because(error))?,
            (None, Some(path)) => public_key(&path, place("public_key"))?,
            (Some(_), Some(_)) => {
                let why = "give a secret or a public_key, not both";
                return Err(SettingsError::new(place(""), why));
            }
            (None, None) => {
                return Err(SettingsError::new(
                    place(""),
                    "give a secret or a public_key",
                ))
            }
        };
        keys = match entry.kid {
            Some(kid) => keys.key_with_id(kid, key),
            None if unnamed => {
                let why = "a second key without kid: tokens naming no key can have only one";
                return Err(SettingsError::new(place("kid"), why));
            }
            None => {
                unnamed = true;
                keys.key(key)
            }
        };
    }
    Ok(match cookie {
        Some(cookie) => keys.cookie(cookie),
        None => keys,
    })
}

/// The public key in the PEM file at `path` (given at `place`): Ed25519, else RSA.
fn public_key(path: &str, place: String) -> Result<sse::TokenKey, SettingsError> {
    let pem = std::fs::read(path).map_err(|error| {
        SettingsError::new(&place, format!("cannot read {path}")).because(error)
    })?;
    sse::TokenKey::ed25519_pem(&pem)
        .or_else(|_| sse::TokenKey::rs256_pem(&pem))
        .map_err(|_| {
            let why = format!("{path} holds no Ed25519 or RSA public key in PEM");
            SettingsError::new(place, why)
        })
}

fn webhooks(entry: WebhookEntry, places: &Places) -> Result<sse::Webhooks, SettingsError> {
    let (Some(url), Some(secret)) = (entry.url, entry.secret) else {
        let why = format!(
            "webhooks need a url and a secret: set {} and {}",
            places.missing("webhooks.url"),
            places.missing("webhooks.secret")
        );
        return Err(SettingsError::new("webhooks", why));
    };
    let webhooks = sse::Webhooks::new(&url, secret).map_err(|error| {
        let place = match error {
            sse::WebhookError::ShortSecret(_) => places.of("webhooks.secret"),
            _ => places.of("webhooks.url"),
        };
        SettingsError::new(place, "").because(error)
    })?;
    let ms = Duration::from_millis;
    let mut webhooks = webhooks;
    if let Some(events) = entry.batch_events {
        webhooks = webhooks.batch_events(events);
    }
    if let Some(wait) = entry.batch_wait_ms {
        webhooks = webhooks.batch_wait(ms(wait));
    }
    if let Some(events) = entry.queue {
        webhooks = webhooks.queue(events);
    }
    if let Some(attempts) = entry.attempts {
        webhooks = webhooks.attempts(attempts);
    }
    if let Some(first) = entry.first_backoff_ms {
        webhooks = webhooks.backoff(ms(first));
    }
    if let Some(max) = entry.max_backoff_ms {
        webhooks = webhooks.max_backoff(ms(max));
    }
    if let Some(timeout) = entry.timeout_ms {
        webhooks = webhooks.timeout(ms(timeout));
    }
    Ok(webhooks)
}

/// A setting the hub cannot start with: where it is, what is wrong, and the error beneath, if
/// any.
#[derive(Debug)]
pub(crate) struct SettingsError {
    place: String,
    problem: String,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl SettingsError {
    fn new(place: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            place: place.into(),
            problem: problem.into(),
            cause: None,
        }
    }

    fn because(self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        let cause = Some(Box::new(cause) as Box<_>);
        Self { cause, ..self }
    }
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problem.is_empty() {
            true => f.write_str(&self.place),
            false => write!(f, "{}: {}", self.place, self.problem),
        }
    }
}

impl std::error::Error for SettingsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let cause = self.cause.as_deref()?;
        Some(cause as &(dyn std::error::Error + 'static))
    }
}
