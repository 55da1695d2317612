//! `/logs/{package-key}/{attempt}`: one attempt's complete build log, as the drone stored it in
//! the logs object store (gzip), served as plain text; the page's list of failures links to it.
//! The submission is the package's current one, or an earlier one that had that attempt.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemas::{PackageKey, PackageRecord, names};

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
        match runtime::logs::read_stored(&js, &name).await {
            Ok(Some(log)) => {
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
            Ok(None) => {}
            Err(err @ runtime::logs::StoredLogError::Read { .. }) => {
                return refuse(StatusCode::SERVICE_UNAVAILABLE, err.to_string());
            }
            Err(err) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
        }
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
