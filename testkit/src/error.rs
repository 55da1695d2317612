//! Errors from finding, starting and stopping a test nats-server.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a test nats-server could not be found, started or stopped.
///
/// Tests should match on [`TestkitError::kind`] (or the variant), never on the message text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestkitError {
    /// No nats-server binary at the explicit path, in `NATS_SERVER_BIN`, in
    /// `.tools/nats-server-path`, or on `PATH`.
    #[error(
        "no nats-server binary found ({searched}); run scripts/install-deps.sh or set NATS_SERVER_BIN"
    )]
    BinaryNotFound {
        /// Where the binary was looked for, for the message.
        searched: String,
    },
    /// The binary reports a version below the minimum the swarm needs (or one that cannot be parsed).
    #[error(
        "{binary}: nats-server version {found:?} is older than {minimum} or unrecognised; run scripts/install-deps.sh",
        binary = binary.display(),
        minimum = crate::binary::MIN_VERSION_TEXT
    )]
    TooOld {
        /// The binary that was asked for its version.
        binary: PathBuf,
        /// What `--version` printed, trimmed.
        found: String,
    },
    /// The binary could not be executed at all.
    #[error("cannot run {binary}", binary = binary.display())]
    Spawn {
        /// The binary that failed to start.
        binary: PathBuf,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// The server started but exited before it was ready, usually because of a bad config or a port
    /// already in use.
    #[error("nats-server exited during startup ({status}); log tail:\n{log_tail}")]
    Exited {
        /// The exit status of the server process.
        status: ExitStatus,
        /// The last lines of the server's log, which say why.
        log_tail: String,
    },
    /// The server did not reach a readiness milestone in time.
    #[error("nats-server did not {waiting_for} within {timeout:?}; log tail:\n{log_tail}")]
    Timeout {
        /// The milestone that was not reached.
        waiting_for: &'static str,
        /// How long we waited.
        timeout: Duration,
        /// The last lines of the server's log.
        log_tail: String,
    },
    /// A filesystem or process operation around the server failed.
    #[error("{context}")]
    Io {
        /// What was being done, naming the path or process involved.
        context: String,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
}

/// The kind of a [`TestkitError`], for assertions that should not depend on the error's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TestkitErrorKind {
    /// See [`TestkitError::BinaryNotFound`].
    BinaryNotFound,
    /// See [`TestkitError::TooOld`].
    TooOld,
    /// See [`TestkitError::Spawn`].
    Spawn,
    /// See [`TestkitError::Exited`].
    Exited,
    /// See [`TestkitError::Timeout`].
    Timeout,
    /// See [`TestkitError::Io`].
    Io,
}

impl TestkitError {
    /// The kind of this error.
    pub fn kind(&self) -> TestkitErrorKind {
        match self {
            Self::BinaryNotFound { .. } => TestkitErrorKind::BinaryNotFound,
            Self::TooOld { .. } => TestkitErrorKind::TooOld,
            Self::Spawn { .. } => TestkitErrorKind::Spawn,
            Self::Exited { .. } => TestkitErrorKind::Exited,
            Self::Timeout { .. } => TestkitErrorKind::Timeout,
            Self::Io { .. } => TestkitErrorKind::Io,
        }
    }

    /// Wraps an I/O error with a description of what was being attempted.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}
