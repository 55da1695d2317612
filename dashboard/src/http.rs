//! The dashboard's HTTP interface, read-only: the page and its assets (served from the binary, no
//! CDN), `/api/state`, `/ws`, `/metrics`, `/healthz` and the stored build logs (`logs.rs`). Only `GET` is routed; nothing here can
//! change the swarm.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::metrics;
use crate::view::{Delta, Push, Snapshot};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

/// The page may load only its own script, style and WebSocket: even a string that escaped the
/// page's escaping could not load or run anything.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[derive(Clone)]
pub struct AppState {
    pub hub: Hub,
    /// Reads the stored build logs (`/logs/...`).
    pub client: async_nats::Client,
    /// Cancelled at shutdown: open WebSockets are closed with a close frame.
    pub shutdown: CancellationToken,
}

/// The router, separate from the listener so handlers can be tested without a socket.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/style.css", get(style_css))
        .route("/api/state", get(api_state))
        .route("/ws", get(ws))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/logs/{key}/{attempt}", get(crate::logs::build_log))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

async fn api_state(State(state): State<AppState>) -> Response {
    let snapshot = state.hub.snapshot().await;
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(snapshot.as_ref()),
    )
        .into_response()
}

async fn metrics_text(State(state): State<AppState>) -> Response {
    let snapshot = state.hub.snapshot().await;
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(&snapshot),
    )
        .into_response()
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    nats_connected: bool,
    /// The buckets were read and the event stream replayed.
    ready: bool,
    caught_up: bool,
    lag_events: u64,
}

/// 200 when connected to NATS with the fold caught up, 503 otherwise; the body says which.
async fn healthz(State(state): State<AppState>) -> Response {
    let snapshot = state.hub.snapshot().await;
    let fold = &snapshot.fold;
    let healthy = fold.nats_connected && snapshot.ready && fold.caught_up;
    let health = Health {
        status: if healthy { "ok" } else { "unavailable" },
        nats_connected: fold.nats_connected,
        ready: snapshot.ready,
        caught_up: fold.caught_up,
        lag_events: fold.lag_events,
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, [(header::CACHE_CONTROL, "no-store")], Json(health)).into_response()
}

/// A browser sends `Origin` with every WebSocket handshake; one from another site is refused so
/// that a page elsewhere cannot read the swarm through the operator's browser. Clients that send
/// no `Origin` (scripts, `websocat`) are not browsers and are let in.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    matches!((origin_host, host), (Some(a), Some(b)) if a.eq_ignore_ascii_case(b))
}

async fn ws(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !same_origin(&headers) {
        let origin = headers
            .get(header::ORIGIN)
            .cloned()
            .unwrap_or(HeaderValue::from_static(""));
        tracing::warn!(origin = ?origin, "cross-origin WebSocket refused");
        return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused\n").into_response();
    }
    upgrade.on_upgrade(move |socket| push(socket, state))
}

fn text(push: &Push) -> Option<Message> {
    serde_json::to_string(push)
        .ok()
        .map(|json| Message::Text(Utf8Bytes::from(json)))
}

/// One WebSocket: the whole picture first, then a delta whenever a tick published a changed
/// picture. Sending and receiving run as two tasks; when either ends, the other is aborted.
async fn push(socket: WebSocket, state: AppState) {
    let (mut sender, mut receiver) = socket.split();
    let mut updates = state.hub.subscribe();
    updates.mark_unchanged();
    let first: Arc<Snapshot> = state.hub.snapshot().await;
    let shutdown = state.shutdown.clone();
    let mut send_task = tokio::spawn(async move {
        let mut last = first;
        let hello = Push::Snapshot {
            state: Box::new(last.as_ref().clone()),
        };
        if let Some(message) = text(&hello)
            && sender.send(message).await.is_err()
        {
            return;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = sender.send(Message::Close(None)).await;
                    return;
                }
                changed = updates.changed() => {
                    if changed.is_err() {
                        let _ = sender.send(Message::Close(None)).await;
                        return;
                    }
                    let next = updates.borrow_and_update().clone();
                    if let Some(delta) = Delta::between(&last, &next)
                        && let Some(message) = text(&Push::Delta(Box::new(delta)))
                        && sender.send(message).await.is_err()
                    {
                        return;
                    }
                    last = next;
                }
            }
        }
    });
    // The page sends nothing; reading is only for pings (answered by axum) and the close.
    let mut recv_task = tokio::spawn(async move {
        while let Some(Ok(message)) = receiver.next().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    });
    tokio::select! {
        _ = &mut send_task => recv_task.abort(),
        _ = &mut recv_task => send_task.abort(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn websocket_origin_must_be_the_dashboard_itself() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "null")
        ])));
    }
}
