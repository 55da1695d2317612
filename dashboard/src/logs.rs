//! `/logs/{package-key}/{attempt}`: one attempt's complete build log, as the drone stored it in
//! the logs object store (gzip), served as plain text; the page's list of failures links to it.
//! The submission is the package's current one, or an earlier one that had that attempt.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemas::{PackageKey, PackageRecord, names};
use std::io::Read;
use tokio::io::AsyncReadExt;

use crate::http::AppState;

/// Earlier submissions looked at for an attempt the current one does not have.
const SUBMISSIONS_BACK: u64 = 20;

pub async fn build_log(
    State(state): State<AppState>,
    Path((key, attempt)): Path<(String, u32)>,
) -> Response {
    let Some(atom) = PackageKey::decode(&key) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("{key:?} is not a package key"),
        );
    };
    let js = async_nats::jetstream::new(state.client.clone());
    let Ok(store) = js.get_object_store(names::LOGS_BUCKET).await else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the swarm's build logs cannot be read now".to_owned(),
        );
    };
    let key = atom.key();
    let current = match js.get_key_value(names::PACKAGES_BUCKET).await {
        Ok(bucket) => match bucket.get(key.as_str()).await {
            Ok(Some(bytes)) => schemas::decode::<PackageRecord>(&bytes)
                .map(|r| r.submission)
                .unwrap_or(1),
            _ => 1,
        },
        Err(_) => 1,
    };
    for submission in (current.saturating_sub(SUBMISSIONS_BACK).max(1)..=current).rev() {
        let name = names::log_object(&key, submission, attempt);
        let Ok(mut object) = store.get(name.as_str()).await else {
            continue;
        };
        let mut compressed = Vec::new();
        if let Err(err) = object.read_to_end(&mut compressed).await {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the log of {atom} attempt {attempt} cannot be read now: {err}"),
            );
        }
        let mut log = Vec::new();
        if let Err(err) = flate2::read::GzDecoder::new(compressed.as_slice()).read_to_end(&mut log)
        {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the stored log of {atom} attempt {attempt} is not gzip: {err}"),
            );
        }
        return (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            log,
        )
            .into_response();
    }
    refuse(
        StatusCode::NOT_FOUND,
        format!(
            "no stored log of {atom} attempt {attempt} (a build that printed nothing has none; logs are kept for coordinator.log_retention_secs)"
        ),
    )
}

fn refuse(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}
