//! The binhost's HTTP interface, read-only: `/published/<arch>@<fingerprint>/` (the revision the
//! coordinator published of an arch's packages built for one fingerprint, for the fleet; plain
//! `/published/<arch>/` when no run targeted one) and `/staging/<arch>/` (everything the arch's
//! run built so far, for the drones),
//! each a Portage binhost (`Packages` and the files its `PATH`s name), plus `/healthz`. Files are
//! streamed from the object store with their `Content-Length` and `Last-Modified`; the published
//! index answers `If-Modified-Since` with 304, files `If-None-Match` (their content hash) and
//! `If-Modified-Since`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use schemas::{Arch, BinhostName};
use tokio::sync::OnceCell;
use tokio_util::io::ReaderStream;

use crate::source::{Sources, Stored, View};
use runtime::dates;

/// The two binhosts of an arch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Published,
    Staging,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Published => "published",
            Which::Staging => "staging",
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub client: async_nats::Client,
    /// Opened on the first request that finds the coordinator's buckets.
    pub sources: Arc<OnceCell<Sources>>,
}

impl AppState {
    pub fn new(client: async_nats::Client) -> AppState {
        AppState {
            client,
            sources: Arc::new(OnceCell::new()),
        }
    }

    async fn sources(&self) -> Result<&Sources, Response> {
        let js = async_nats::jetstream::new(self.client.clone());
        self.sources
            .get_or_try_init(|| Sources::open(&js))
            .await
            .map_err(|err| {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("the swarm's stores are not readable yet: {err}\n"),
                )
            })
    }
}

/// The router, separate from the listener so tests can bind port 0.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/healthz", get(healthz))
        .route("/published/{binhost}/{*path}", get(published))
        .route("/staging/{arch}/{*path}", get(staging))
        .with_state(state)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn root() -> Response {
    text(
        StatusCode::OK,
        "swarm-binhost: the build swarm's binary packages.\n\
         A Gentoo machine's /etc/portage/binrepos.conf names the published binhost of its arch\n\
         and fingerprint (`swarmctl binhost status` says which):\n  \
         [swarm]\n  sync-uri = http://<this host>/published/<arch>@<fingerprint>\n\
         Drones install what the current run built from /staging/<arch>.\n"
            .to_owned(),
    )
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.client.connection_state() {
        async_nats::connection::State::Connected => text(StatusCode::OK, "ok\n".to_owned()),
        other => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("NATS connection {other}\n"),
        ),
    }
}

async fn published(
    State(state): State<AppState>,
    Path((binhost, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    serve(&state, Which::Published, &binhost, &path, &headers)
        .await
        .unwrap_or_else(|response| response)
}

async fn staging(
    State(state): State<AppState>,
    Path((arch, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    serve(&state, Which::Staging, &arch, &path, &headers)
        .await
        .unwrap_or_else(|response| response)
}

/// One request of a binhost (`name`: `<arch>@<fingerprint>` or `<arch>` for the published
/// ones, `<arch>` for staging); every refusal is a response naming what was asked and why.
async fn serve(
    state: &AppState,
    which: Which,
    name: &str,
    path: &str,
    headers: &HeaderMap,
) -> Result<Response, Response> {
    let binhost = match which {
        Which::Published => BinhostName::parse(name)
            .map_err(|err| text(StatusCode::NOT_FOUND, format!("{err}\n")))?,
        Which::Staging => BinhostName::new(
            Arch::parse(name).map_err(|err| {
                text(
                    StatusCode::NOT_FOUND,
                    format!("{name:?} is not an arch: {err}\n"),
                )
            })?,
            None,
        ),
    };
    let arch = binhost.arch.clone();
    let sources = state.sources().await?;
    let unavailable = |err: crate::source::SourceError| {
        tracing::warn!(%binhost, view = which.name(), error = %err, "binhost view not read");
        text(StatusCode::SERVICE_UNAVAILABLE, format!("{err}\n"))
    };
    let not_found = || {
        text(
            StatusCode::NOT_FOUND,
            format!(
                "{path:?} is not in the {} binhost {binhost}\n",
                which.name()
            ),
        )
    };
    let view: Arc<View> = match which {
        Which::Published => sources
            .published(&binhost)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                let fingerprint = binhost
                    .fingerprint
                    .as_ref()
                    .map(|id| format!(" --fingerprint {id}"))
                    .unwrap_or_default();
                text(
                    StatusCode::NOT_FOUND,
                    format!(
                        "nothing of {binhost} is published yet: `swarmctl binhost publish --arch {arch}{fingerprint}`\n"
                    ),
                )
            })?,
        Which::Staging => sources.staging(&arch).await.map_err(unavailable)?,
    };
    if path == "Packages" {
        return Ok(index(&view, which, headers));
    }
    let stored = match which {
        Which::Published => match view.files.get(path) {
            Some(stored) => stored.clone(),
            None => sources
                .published_file(&binhost, path)
                .await
                .map_err(unavailable)?
                .ok_or_else(not_found)?,
        },
        Which::Staging => view.files.get(path).cloned().ok_or_else(not_found)?,
    };
    file(sources, &stored, headers).await
}

/// How often a stored binary package is opened before its request fails, and the pause between
/// tries: a read of the object store can fail under load (a chunk consumer that never
/// delivered), and a client that got headers but no bytes would see a cut-off download.
const OPEN_TRIES: u32 = 3;
const OPEN_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Opens `stored` and reads its first chunk, before any header is sent, trying again when the
/// object store fails: the object (its info checked against the index) and that chunk.
async fn open_object(
    sources: &Sources,
    stored: &Stored,
) -> Result<(async_nats::jetstream::object_store::Object, bytes::Bytes), Response> {
    let mut last = String::new();
    for attempt in 1..=OPEN_TRIES {
        if attempt > 1 {
            tokio::time::sleep(OPEN_PAUSE * attempt).await;
        }
        let mut object = match sources.artifacts.get(&stored.object).await {
            Ok(object) => object,
            Err(err) => {
                last = format!("stored object {} is not readable: {err}", stored.object);
                tracing::warn!(object = %stored.object, attempt, error = %err, "listed binary package not readable");
                continue;
            }
        };
        if object.info().size as u64 != stored.size {
            return Err(text(
                StatusCode::BAD_GATEWAY,
                format!(
                    "stored object {} holds {} bytes, the index says {}\n",
                    stored.object,
                    object.info().size,
                    stored.size
                ),
            ));
        }
        let mut first = vec![0; FIRST_CHUNK.min(stored.size as usize)];
        match tokio::io::AsyncReadExt::read(&mut object, &mut first).await {
            Ok(n) if n > 0 || stored.size == 0 => {
                first.truncate(n);
                return Ok((object, first.into()));
            }
            Ok(_) => last = format!("stored object {} read as empty", stored.object),
            Err(err) => last = format!("stored object {} is not readable: {err}", stored.object),
        }
        tracing::warn!(object = %stored.object, attempt, reason = %last, "binary package not read; trying again");
    }
    Err(text(StatusCode::BAD_GATEWAY, format!("{last}\n")))
}

/// The first read of a binary package, before the response starts.
const FIRST_CHUNK: usize = 64 * 1024;

/// The index, or, for the published binhost, 304 when the client's copy is as new (its
/// `If-Modified-Since`; revisions' `TIMESTAMP`s are far enough apart for Portage's 5 s slack).
/// Staging's index changes by the second while a run goes, closer than Portage's slack: it is
/// always sent, and the client compares its `TIMESTAMP` itself.
fn index(view: &View, which: Which, headers: &HeaderMap) -> Response {
    let last_modified = dates::format_http(view.timestamp);
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(dates::parse_http);
    let common = [
        (header::LAST_MODIFIED, last_modified),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
    ];
    if which == Which::Published && since.is_some_and(|since| since >= view.timestamp) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        StatusCode::OK,
        common,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        view.index.clone(),
    )
        .into_response()
}

/// A package file streamed from the object store, or 304 for the client's copy of it.
async fn file(
    sources: &Sources,
    stored: &Stored,
    headers: &HeaderMap,
) -> Result<Response, Response> {
    let etag = format!("\"{}\"", stored.object);
    let cached = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let etag_value = HeaderValue::from_str(&etag).map_err(|_| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("object name {:?} is not a header value\n", stored.object),
        )
    })?;
    if cached {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response());
    }
    let (object, first) = open_object(sources, stored).await?;
    let modified = object
        .info()
        .modified
        .and_then(|m| u64::try_from(m.unix_timestamp()).ok());
    let since = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(dates::parse_http);
    let last_modified = modified.and_then(|m| HeaderValue::from_str(&dates::format_http(m)).ok());
    if headers.get(header::IF_NONE_MATCH).is_none()
        && let (Some(m), Some(since), Some(last_modified)) = (modified, since, &last_modified)
        && since >= m
    {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag_value),
                (header::LAST_MODIFIED, last_modified.clone()),
            ],
        )
            .into_response());
    }
    let rest = ReaderStream::new(object).inspect(|chunk| {
        if let Err(err) = chunk {
            tracing::warn!(error = %err, "binary package cut off while being sent");
        }
    });
    let body = futures::stream::once(async move { Ok::<_, std::io::Error>(first) }).chain(rest);
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    if let Some(last_modified) = last_modified {
        h.insert(header::LAST_MODIFIED, last_modified);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(stored.size));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ETAG, etag_value);
    Ok(response)
}
