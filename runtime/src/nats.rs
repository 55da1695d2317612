//! NATS connection settings shared by every binary, and `connect`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated for a cluster: `nats://host:4222,nats://other:4222`.
    pub url: String,
    /// User name, with `password`.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Token authentication.
    pub token: Option<String>,
    /// An nkey seed (`SU...`) for nkey authentication.
    pub nkey_seed: Option<String>,
    /// A `.creds` file (JWT and seed) for decentralised authentication.
    pub creds_file: Option<PathBuf>,
    /// CA certificate (PEM) to verify the server; setting it requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// How long one connection attempt may take, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Prefix of this client's reply subjects. Unset: `_INBOX.<user>` when `user` is set (so a
    /// server can let each user subscribe to its own replies only), else `_INBOX`.
    pub inbox_prefix: Option<String>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: default_url(),
            user: None,
            password: None,
            token: None,
            nkey_seed: None,
            creds_file: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            connect_timeout_ms: 5_000,
            inbox_prefix: None,
        }
    }
}

/// A NATS server on this machine, the usual single-host setup.
fn default_url() -> String {
    "nats://127.0.0.1:4222".to_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot read NATS credentials file {path}: {reason}")]
    Credentials { path: PathBuf, reason: String },
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
}

impl NatsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.servers()?;
        let methods = [
            self.user.is_some(),
            self.token.is_some(),
            self.nkey_seed.is_some(),
            self.creds_file.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count();
        if methods > 1 {
            return Err(ConfigError::invalid(
                "nats",
                "set only one of user/password, token, nkey_seed and creds_file",
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(ConfigError::invalid(
                "nats.password",
                "user and password must be set together",
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::invalid(
                "nats.tls_key",
                "tls_cert and tls_key must be set together",
            ));
        }
        if self.connect_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "nats.connect_timeout_ms",
                "must be greater than 0",
            ));
        }
        if let Some(prefix) = &self.inbox_prefix
            && !is_subject(prefix)
        {
            return Err(ConfigError::invalid(
                "nats.inbox_prefix",
                format!(
                    "{:?} is not a subject: dot-separated tokens of printable characters without '*', '>' or spaces",
                    schemas::shorten(prefix, 100)
                ),
            ));
        }
        Ok(())
    }

    /// The prefix of this client's reply subjects: `inbox_prefix`, else `_INBOX.<user>` when the
    /// user name is one subject token, else `_INBOX`.
    pub fn effective_inbox_prefix(&self) -> String {
        if let Some(prefix) = &self.inbox_prefix {
            return prefix.clone();
        }
        match &self.user {
            Some(user) if is_subject(user) && !user.contains('.') => format!("_INBOX.{user}"),
            _ => "_INBOX".to_owned(),
        }
    }

    /// The server addresses of `url`: one URL, or several separated by commas (a cluster).
    /// The error names the URL that does not parse.
    pub fn servers(&self) -> Result<Vec<async_nats::ServerAddr>, ConfigError> {
        if self.url.trim().is_empty() {
            return Err(ConfigError::invalid("nats.url", "must not be empty"));
        }
        self.url
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| {
                url.parse::<async_nats::ServerAddr>().map_err(|err| {
                    ConfigError::invalid(
                        "nats.url",
                        format!("{:?} is not a NATS URL: {err}", schemas::shorten(url, 200)),
                    )
                })
            })
            .collect()
    }

    /// Connects for a long-running service: if the server is not up yet the client keeps trying
    /// in the background, and it reconnects by itself for ever after.
    pub async fn connect(&self, client_name: &str) -> Result<async_nats::Client, ConnectError> {
        self.connect_with(client_name, true).await
    }

    /// Connects for a one-shot command: an unreachable server is an error at once.
    pub async fn connect_once(
        &self,
        client_name: &str,
    ) -> Result<async_nats::Client, ConnectError> {
        self.connect_with(client_name, false).await
    }

    /// Secrets never appear in the error: it names the URL and the reason only.
    async fn connect_with(
        &self,
        client_name: &str,
        retry_initial: bool,
    ) -> Result<async_nats::Client, ConnectError> {
        let mut options = self.base_options(
            async_nats::ConnectOptions::new(),
            client_name,
            retry_initial,
        );
        if let (Some(user), Some(password)) = (&self.user, &self.password) {
            options = options.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &self.token {
            options = options.token(token.clone());
        }
        if let Some(seed) = &self.nkey_seed {
            options = options.nkey(seed.clone());
        }
        if let Some(path) = &self.creds_file {
            options = async_nats::ConnectOptions::with_credentials_file(path.clone())
                .await
                .map_err(|err| ConnectError::Credentials {
                    path: path.clone(),
                    reason: err.kind().to_string(),
                })?;
            options = self.base_options(options, client_name, retry_initial);
        }
        if let Some(ca) = &self.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        let servers = self.servers().map_err(|err| ConnectError::Connect {
            url: self.url.clone(),
            reason: err.to_string(),
        })?;
        let client = options
            .connect(servers)
            .await
            .map_err(|err| ConnectError::Connect {
                url: self.url.clone(),
                reason: err.to_string(),
            })?;
        Ok(client)
    }

    fn base_options(
        &self,
        options: async_nats::ConnectOptions,
        client_name: &str,
        retry_initial: bool,
    ) -> async_nats::ConnectOptions {
        let options = options
            .name(client_name)
            .custom_inbox_prefix(self.effective_inbox_prefix())
            .connection_timeout(Duration::from_millis(self.connect_timeout_ms))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::debug!("connected to NATS"),
                    async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS"),
                    other => tracing::debug!(event = %other, "NATS connection event"),
                }
            });
        if retry_initial {
            options.retry_on_initial_connect().max_reconnects(None)
        } else {
            options.max_reconnects(None)
        }
    }
}

/// Whether `text` is a literal subject: dot-separated, non-empty tokens of printable ASCII
/// without wildcards.
fn is_subject(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|token| {
            !token.is_empty()
                && token
                    .chars()
                    .all(|c| c.is_ascii_graphic() && c != '*' && c != '>')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_urls_make_a_cluster_and_a_bad_one_is_named() {
        let config = NatsConfig {
            url: "nats://a.example:4222, nats://b.example:4223,tls://c.example:4224".into(),
            ..Default::default()
        };
        let servers = config.servers().expect("three URLs");
        assert_eq!(servers.len(), 3);
        assert_eq!(servers[1].port(), 4223);
        let bad = NatsConfig {
            url: "nats://a.example:4222,nats://b.example:notaport".into(),
            ..Default::default()
        };
        let err = bad.validate().expect_err("a bad port");
        assert!(
            err.to_string().contains("nats://b.example:notaport"),
            "{err}"
        );
        let empty = NatsConfig {
            url: " ".into(),
            ..Default::default()
        };
        assert!(empty.validate().is_err());
    }

    #[test]
    fn inbox_prefix_follows_the_user_unless_set() {
        let mut config = NatsConfig::default();
        assert_eq!(config.effective_inbox_prefix(), "_INBOX");
        config.user = Some("drone-Izar".into());
        config.password = Some("x".into());
        assert_eq!(config.effective_inbox_prefix(), "_INBOX.drone-Izar");
        config.user = Some("odd user".into());
        assert_eq!(config.effective_inbox_prefix(), "_INBOX");
        config.inbox_prefix = Some("_R.izar".into());
        assert_eq!(config.effective_inbox_prefix(), "_R.izar");
        assert!(config.validate().is_ok());
        for bad in ["", "a..b", "a.*", "a b", "x.>"] {
            config.inbox_prefix = Some(bad.into());
            let err = config.validate().expect_err(bad);
            assert!(
                matches!(err, ConfigError::Invalid { ref key, .. } if key == "nats.inbox_prefix"),
                "{bad}: {err}"
            );
        }
    }
}
