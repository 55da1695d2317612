//! The drone's fit to its arch's run (I/O around `fingerprint`): it takes its fingerprint
//! (`probe`: from Portage, or from the config) every `fingerprint.refresh_ms`, reads the run's
//! target every second, and tells the main loop its fingerprint and why it takes no work of the
//! run, if it does not fit (`Fit`, through a watch channel).

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream::kv;
use schemas::{Fingerprint, RunTarget, decode};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{FingerprintSource, Settings};
use crate::fingerprint::{self, FingerprintError};

/// How often the run's target is read.
const TARGET_POLL: Duration = Duration::from_secs(1);
/// How long one `portageq` may take.
const PORTAGEQ_TIMEOUT: Duration = Duration::from_secs(120);

/// What the main loop learns: the drone's fingerprint, and why it is excluded from its arch's
/// run when it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fit {
    pub fingerprint: Option<Fingerprint>,
    pub excluded: Option<String>,
}

/// Why the fingerprint could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot run portageq {args}: {reason}")]
    Run { args: String, reason: String },
    #[error(transparent)]
    Portage(#[from] FingerprintError),
    #[error("cannot read the profile link {}: {source}", path.display())]
    Profile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs `portageq ARGS` and returns its standard output. Exit status 1 is Portage's "a variable
/// is unset", which still answers the others.
async fn portageq(args: &[&str]) -> Result<String, ProbeError> {
    let failed = |reason: String| ProbeError::Run {
        args: args.join(" "),
        reason,
    };
    let run = tokio::process::Command::new("portageq")
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PORTAGEQ_TIMEOUT, run)
        .await
        .map_err(|_| failed(format!("no answer within {PORTAGEQ_TIMEOUT:?}")))?
        .map_err(|e| failed(e.to_string()))?;
    match output.status.code() {
        Some(0 | 1) => Ok(String::from_utf8_lossy(&output.stdout).into_owned()),
        _ => Err(failed(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))),
    }
}

/// A tree timestamp file (`metadata/timestamp.chk`) read; `None` when absent or unreadable.
fn tree_timestamp(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let parsed = runtime::dates::parse_rfc2822(text.trim());
    if parsed.is_none() {
        warn!(path = %path.display(), "the ebuild tree's timestamp is not a date; its age is unknown");
    }
    parsed
}

/// The drone's fingerprint now.
pub async fn probe(settings: &Settings) -> Result<Fingerprint, ProbeError> {
    let fp = &settings.fingerprint;
    match settings.fingerprint_source() {
        FingerprintSource::Config => {
            let tree = fp.tree_timestamp_file.as_deref().and_then(tree_timestamp);
            // Make.conf names, whatever case the config's loader left them in.
            let values = fp
                .settings
                .iter()
                .map(|(key, value)| (key.to_ascii_uppercase(), value.clone()))
                .collect();
            Ok(fingerprint::compute(
                &settings.arch,
                &fp.chost,
                &fp.profile,
                &values,
                tree,
            ))
        }
        FingerprintSource::Portage => {
            let mut args = vec!["envvar", "-v", "CHOST"];
            args.extend(fingerprint::SETTINGS);
            let values = fingerprint::parse_envvar(&portageq(&args).await?)?;
            let chost = values
                .get("CHOST")
                .filter(|c| !c.is_empty())
                .ok_or(FingerprintError::Missing("CHOST"))?
                .clone();
            let config_root = std::env::var("PORTAGE_CONFIGROOT").unwrap_or_else(|_| "/".into());
            let link = Path::new(&config_root).join("etc/portage/make.profile");
            let target = std::fs::read_link(&link).map_err(|source| ProbeError::Profile {
                path: link.clone(),
                source,
            })?;
            // The tree's age only decides which runs the drone may take; not knowing it is
            // said (and excludes the drone from runs that know theirs), not fatal.
            let eroot = std::env::var("EROOT").unwrap_or_else(|_| "/".into());
            let tree = match portageq(&["get_repo_path", &eroot, "gentoo"]).await {
                Ok(repo) if !repo.trim().is_empty() => {
                    tree_timestamp(&Path::new(repo.trim()).join("metadata/timestamp.chk"))
                }
                Ok(_) => None,
                Err(err) => {
                    warn!(error = %err, "the gentoo repository is not found; the tree's age is unknown");
                    None
                }
            };
            Ok(fingerprint::compute(
                &settings.arch,
                &chost,
                &fingerprint::profile_name(&target),
                &values,
                tree,
            ))
        }
    }
}

/// The arch's run target; `None` when no run targets a fingerprint, or it cannot be read.
async fn read_target(targets: &kv::Store, settings: &Settings) -> Option<RunTarget> {
    match targets.get(settings.arch.as_str()).await {
        Ok(Some(bytes)) => match decode::<RunTarget>(&bytes) {
            Ok(target) => Some(target),
            Err(err) => {
                warn!(error = %err, "undecodable run target ignored");
                None
            }
        },
        _ => None,
    }
}

/// Where the drone stands, from its last probe and the run's target.
fn judge(probed: &Result<Fingerprint, ProbeError>, target: Option<&RunTarget>) -> Fit {
    match probed {
        Ok(mine) => Fit {
            fingerprint: Some(mine.clone()),
            excluded: fingerprint::excluded(target, mine),
        },
        Err(reason) => Fit {
            fingerprint: None,
            excluded: Some(format!("its fingerprint cannot be taken: {reason}")),
        },
    }
}

/// Takes the fingerprint and reads the target once (before the drone takes any job), then
/// keeps both current in a tracked task until `cancel`.
pub async fn follow(
    tracker: &TaskTracker,
    settings: Settings,
    targets: kv::Store,
    cancel: CancellationToken,
) -> watch::Receiver<Fit> {
    let mut probed = probe(&settings).await;
    let mut target = read_target(&targets, &settings).await;
    let first = judge(&probed, target.as_ref());
    if let Some(fp) = &first.fingerprint {
        info!(fingerprint = %fp.id, chost = %fp.chost, profile = %fp.profile, tree = ?fp.tree_timestamp, "fingerprint taken");
    }
    let (tx, rx) = watch::channel(first);
    tracker.spawn(async move {
        let refresh = Duration::from_millis(settings.fingerprint.refresh_ms);
        let mut probe_tick = tokio::time::interval_at(tokio::time::Instant::now() + refresh, refresh);
        let mut target_tick = tokio::time::interval(TARGET_POLL);
        loop {
            // A probe or a read under way does not hold up the drone's stop.
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = probe_tick.tick() => {
                    let taken = tokio::select! {
                        _ = cancel.cancelled() => return,
                        taken = probe(&settings) => taken,
                    };
                    match taken {
                        Ok(fp) => probed = Ok(fp),
                        // A probe that fails once keeps the fingerprint it had.
                        Err(err) if probed.is_ok() => warn!(error = %err, "fingerprint not taken again; keeping the last one"),
                        Err(err) => probed = Err(err),
                    }
                }
                _ = target_tick.tick() => {
                    target = tokio::select! {
                        _ = cancel.cancelled() => return,
                        read = read_target(&targets, &settings) => read,
                    };
                }
            }
            let fit = judge(&probed, target.as_ref());
            tx.send_if_modified(|current| {
                let changed = *current != fit;
                *current = fit;
                changed
            });
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_config_fingerprint_reads_its_tree_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("timestamp.chk");
        std::fs::write(&file, "Sun, 06 Nov 1994 08:49:37 +0000\n").expect("write");
        let mut settings = Settings {
            builder: crate::config::BuilderKind::Simulate,
            ..Settings::default()
        };
        settings.fingerprint.tree_timestamp_file = Some(file.clone());
        let fp = probe(&settings).await.expect("config fingerprint");
        assert_eq!(fp.tree_timestamp, Some(784_111_777));
        assert_eq!(fp.chost, "x86_64-pc-linux-gnu");
        std::fs::write(&file, "not a date").expect("write");
        assert_eq!(probe(&settings).await.expect("still").tree_timestamp, None);
        // Drones with the same settings share one fingerprint (the demo's do).
        let other = Settings {
            name: "other".into(),
            cores: 64,
            ..settings.clone()
        };
        assert_eq!(probe(&other).await.expect("other").id, fp.id);
    }

    #[test]
    fn a_drone_whose_fingerprint_cannot_be_taken_takes_nothing() {
        let missing = ProbeError::Run {
            args: "envvar CHOST".into(),
            reason: "No such file or directory (os error 2)".into(),
        };
        let fit = judge(&Err(missing), None);
        assert_eq!(fit.fingerprint, None);
        assert_eq!(
            fit.excluded.as_deref(),
            Some(
                "its fingerprint cannot be taken: cannot run portageq envvar CHOST: No such file or directory (os error 2)"
            )
        );
    }
}
