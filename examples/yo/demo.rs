//! The "yo" demo, as the seed's users knew it: log in with a name, see who is online, send a yo;
//! the receiver's page shows "yo from alice to bob" at once, and a public feed shows every yo.
//!
//! - `/events/me` is one stream of two groups, opened as the user: the user's own (`yo.<name>`,
//!   event `yo`) and the public feed (`yo`, events `feed`, `presence-join`, `presence-leave`).
//!   One `EventSource` per page.
//! - `/events/yo` is the public feed alone, for visitors who are not logged in.
//! - Sending a yo stores it (a JSON file, see [`store`]) and publishes it from the same handler,
//!   as the seed's `post_save` signal did. Each yo has its own id; a page fetches the yos it has
//!   not shown when its stream opens (also after a `stream-reset`), and de-duplicates by that id,
//!   so no yo is lost or shown twice, even across a server restart.
//! - "Online" means: has a stream open, in any tab ([`sse::Hub::presence`] of the feed). A page
//!   asks once when its stream opens, then follows the `presence-join` and `presence-leave`
//!   events: no polling.
//! - "Log out" closes the user's streams in every open tab ([`sse::Hub::close_user`]); each tab
//!   gets `stream-closed` and stops, and a browser that reconnects anyway is answered `204`.
//! - `/status` shows the hub's counters; `/metrics` serves them to Prometheus.
//!
//! `cargo run --example yo` runs it; `YO_ADDR` (default `127.0.0.1:8000`) and `YO_DATA` (default
//! a file in the temp dir) change where it listens and what file it keeps. With feature
//! `postgres`, `YO_DATABASE_URL` keeps the yos in PostgreSQL instead, each stored and published
//! in one transaction ([`database`]), and runs the hub on the Postgres engine.

#[cfg(feature = "postgres")]
pub mod database;
pub mod store;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::{
    extract::{FromRef, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
    Form, Json, Router,
};
use axum_extra::extract::cookie::{Cookie, Key, SameSite, SignedCookieJar};
use serde::Deserialize;

use crate::store::{Store, Yo};

/// The public feed's group: every yo, and who comes online.
const FEED: &str = "yo";
/// How many yos a page fetches when it catches up.
const RECENT: usize = 50;
/// The session cookie: the user's name, signed with the store's key.
const SESSION: &str = "user";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    store: Arc<Store>,
    /// Where the yos are, when not in the store's file.
    #[cfg(feature = "postgres")]
    database: Option<database::Yos>,
}

impl FromRef<AppState> for Key {
    fn from_ref(state: &AppState) -> Key {
        state.store.cookie_key()
    }
}

/// The demo's routes over `store`.
pub fn app(store: Store) -> Router {
    routes(AppState {
        store: Arc::new(store),
        #[cfg(feature = "postgres")]
        database: None,
    })
}

/// The demo's routes, its users in `store` and its yos in `database`.
#[cfg(feature = "postgres")]
pub fn app_on_postgres(store: Store, database: database::Yos) -> Router {
    routes(AppState {
        store: Arc::new(store),
        database: Some(database),
    })
}

fn routes(state: AppState) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/events/me", get(my_events))
        .route("/events/yo", get(feed_events))
        .route("/api/yo", post(send_yo))
        .route("/api/yos", get(recent_yos))
        .route("/api/online", get(online))
        .route("/status", get(status))
        .route("/metrics", get(sse::metrics))
        .route("/yo.js", get(script))
        .route("/style.css", get(style))
        .with_state(state)
}

/// Where the demo listens and what it keeps, from `YO_ADDR` and `YO_DATA`.
pub struct Settings {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The JSON file of users and yos.
    pub data: PathBuf,
    /// `YO_DATABASE_URL`: the PostgreSQL database of the yos, if they are kept there.
    pub database: Option<String>,
}

impl Settings {
    /// Reads the environment; a malformed `YO_ADDR` is an error that says so.
    pub fn from_env() -> Result<Settings, String> {
        let addr = std::env::var("YO_ADDR").unwrap_or_else(|_| "127.0.0.1:8000".into());
        let addr = addr
            .parse()
            .map_err(|e| format!("YO_ADDR={addr:?} is not an address: {e}"))?;
        let data = std::env::var_os("YO_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("sse-yo-demo.json"));
        let database = std::env::var("YO_DATABASE_URL").ok();
        Ok(Settings {
            addr,
            data,
            database,
        })
    }
}

/// The hub's settings: a short retry hint, so pages come back quickly after a restart, and
/// join and leave events for the online list.
pub fn hub_config() -> sse::Config {
    sse::Config::default()
        .retry(Some(Duration::from_secs(1)))
        .presence_events(true)
}

/// Runs the demo until Ctrl-C: what `cargo run --example yo` does.
pub async fn run(settings: Settings) -> Result<(), String> {
    let store = Store::open(&settings.data).map_err(|e| e.to_string())?;
    let app = match &settings.database {
        None => {
            sse::init(hub_config()).map_err(|e| e.to_string())?;
            app(store)
        }
        #[cfg(feature = "postgres")]
        Some(url) => {
            let config = hub_config().broker(url).map_err(|e| e.to_string())?;
            sse::init(config).map_err(|e| e.to_string())?;
            let yos = database::Yos::open(url).await.map_err(|e| e.to_string())?;
            app_on_postgres(store, yos)
        }
        #[cfg(not(feature = "postgres"))]
        Some(_) => {
            return Err("YO_DATABASE_URL needs the `postgres` feature: \
                 cargo run -p sse-examples --features postgres --example yo"
                .into())
        }
    };
    let listener = sse::bind(settings.addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.addr))?;
    tracing::info!(
        "yo demo: open http://{}/ (data in {}; Ctrl-C to stop)",
        settings.addr,
        settings.data.display()
    );
    sse::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            sse::hub().shutdown();
        })
        .await
        .map_err(|e| e.to_string())
}

/// The logged-in user's name, if the session cookie is there and its signature holds.
fn session_user(jar: &SignedCookieJar) -> Option<String> {
    jar.get(SESSION)
        .map(|cookie| cookie.value().to_owned())
        .filter(|name| valid_name(name))
}

/// Names are short and safe anywhere: in a group name, in HTML, in a URL.
fn valid_name(name: &str) -> bool {
    (1..=24).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn server_error(e: impl std::fmt::Display) -> Response {
    tracing::error!("{e}");
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

/// The per-user stream: the user's own yos and the public feed, on one connection, opened as
/// the user, so that they count as online while it is open.
#[sse::subscribe]
async fn my_events(jar: SignedCookieJar) -> Result<sse::Join, Response> {
    let Some(user) = session_user(&jar) else {
        return Err((StatusCode::FORBIDDEN, "Please login").into_response());
    };
    // `user` passed `valid_name`, so both are valid group names (else `?` answers 400 and why).
    let groups = [
        sse::GroupName::new(format!("yo.{user}"))?,
        sse::GroupName::new(FEED)?,
    ];
    Ok(sse::Join::groups(groups).user(user))
}

/// The public feed alone, for visitors.
#[sse::subscribe("yo")]
async fn feed_events() {}

async fn home(jar: SignedCookieJar) -> Html<String> {
    match session_user(&jar) {
        // `user` passed `valid_name`: nothing in it needs escaping.
        Some(user) => Html(include_str!("page.html").replace("{{user}}", &user)),
        None => Html(login_page("")),
    }
}

fn login_page(error: &str) -> String {
    include_str!("login.html").replace("{{error}}", error)
}

#[derive(Deserialize)]
struct Login {
    name: String,
}

async fn login(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    Form(login): Form<Login>,
) -> Response {
    let name = login.name.trim();
    if !valid_name(name) {
        let error = "A name is 1 to 24 letters, digits, - or _.";
        return (StatusCode::BAD_REQUEST, Html(login_page(error))).into_response();
    }
    if let Err(e) = state.store.add_user(name) {
        return server_error(e);
    }
    let cookie = Cookie::build((SESSION, name.to_owned()))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax);
    (jar.add(cookie), Redirect::to("/")).into_response()
}

/// Logs out, and closes the user's streams in every tab they have open.
async fn logout(jar: SignedCookieJar) -> impl IntoResponse {
    if let Some(user) = session_user(&jar) {
        if let Err(e) = sse::hub().close_user(&user).await {
            tracing::warn!("{user}'s streams may not all be closed: {e}");
        }
    }
    (
        jar.remove(Cookie::build(SESSION).path("/")),
        Redirect::to("/"),
    )
}

#[derive(Deserialize)]
struct SendYo {
    to: String,
}

/// Stores the yo, then publishes it: to the receiver's own group and to the public feed.
async fn send_yo(
    State(state): State<AppState>,
    jar: SignedCookieJar,
    Form(send): Form<SendYo>,
) -> Response {
    let Some(from) = session_user(&jar) else {
        return (StatusCode::FORBIDDEN, "Please login").into_response();
    };
    let to = send.to.trim();
    if !state.store.knows(to) {
        return (StatusCode::NOT_FOUND, format!("nobody called {to:?} here")).into_response();
    }
    #[cfg(feature = "postgres")]
    if let Some(database) = &state.database {
        // Stored and published in one transaction: nothing to catch up on if it fails.
        return match database.send(&from, to).await {
            Ok(yo) => (StatusCode::CREATED, Json(yo)).into_response(),
            Err(e) => server_error(e),
        };
    }
    let yo = match state.store.add_yo(&from, to) {
        Ok(yo) => yo,
        Err(e) => return server_error(e),
    };
    // The yo is stored: a page that misses these events fetches it when it catches up.
    let sent = sse::publish_json!(format!("yo.{to}"), "yo", &yo)
        .and_then(|_| sse::publish_json!(FEED, "feed", &yo));
    if let Err(e) = sent {
        tracing::warn!(id = yo.id, "yo stored but not published: {e}");
    }
    (StatusCode::CREATED, Json(yo)).into_response()
}

#[derive(serde::Serialize)]
struct Recent {
    /// Yos for the logged-in user; empty for visitors.
    inbox: Vec<Yo>,
    feed: Vec<Yo>,
}

/// What a page shows when it opens or catches up.
async fn recent_yos(State(state): State<AppState>, jar: SignedCookieJar) -> Response {
    #[cfg(feature = "postgres")]
    if let Some(database) = &state.database {
        let user = session_user(&jar);
        let inbox = match &user {
            Some(user) => database.recent(RECENT, Some(user)).await,
            None => Ok(Vec::new()),
        };
        let feed = database.recent(RECENT, None).await;
        return match inbox.and_then(|inbox| Ok(Recent { inbox, feed: feed? })) {
            Ok(recent) => Json(recent).into_response(),
            Err(e) => server_error(e),
        };
    }
    let inbox = match session_user(&jar) {
        Some(user) => state.store.recent_yos(RECENT, |yo| yo.to == user),
        None => Vec::new(),
    };
    let feed = state.store.recent_yos(RECENT, |_| true);
    Json(Recent { inbox, feed }).into_response()
}

/// Who has a stream open now (`[{"user":"bob","streams":1,"meta":""}]`): what a page shows
/// when its stream opens, before the join and leave events keep it up to date.
async fn online() -> Response {
    match sse::hub().presence(FEED).await {
        Ok(present) => Json(present).into_response(),
        Err(e) => server_error(e),
    }
}

/// The hub's counters, on a page that refreshes itself.
async fn status() -> Html<String> {
    let stats = sse::hub().stats();
    let rows = [
        ("groups", stats.groups as u64),
        ("open streams", stats.open_streams as u64),
        ("events published", stats.published),
        ("events delivered", stats.delivered),
        ("events replayed", stats.replayed),
        ("streams dropped (too slow)", stats.dropped),
    ]
    .map(|(name, value)| format!("<tr><th>{name}</th><td>{value}</td></tr>"))
    .concat();
    Html(include_str!("status.html").replace("{{rows}}", &rows))
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("yo.js"),
    )
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("style.css"),
    )
}
