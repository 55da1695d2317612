//! Layered configuration: a binary's defaults, then a TOML file, then environment variables with
//! the `SWARM_` prefix where `__` separates nesting levels (`SWARM_NATS__URL`,
//! `SWARM_DRONE__CORES`). Unknown keys are refused by each config type's
//! `#[serde(deny_unknown_fields)]`, and the error names the key.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Serialize, de::DeserializeOwned};

pub const ENV_PREFIX: &str = "SWARM_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} does not exist")]
    FileMissing { path: PathBuf },
    #[error("invalid configuration: {0}")]
    Load(Box<figment::Error>),
    #[error("invalid configuration: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    pub fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The figment for a config type: defaults < file < environment. Exposed so tests (and
/// `--check-config`) can inspect the layers.
///
/// Only environment variables whose first segment is one of this binary's tables are read:
/// every binary shares the `SWARM_` prefix (a drone's `SWARM_DRONE__NAME` must not break the
/// `swarmctl` run from the same shell), while a typo inside a table is still refused.
pub fn figment<T: Serialize + Default>(file: Option<&Path>) -> Figment {
    let defaults = Figment::from(Serialized::defaults(T::default()));
    let tables: Vec<String> = defaults
        .extract::<figment::value::Dict>()
        .map(|dict| dict.into_keys().collect())
        .unwrap_or_default();
    let mut figment = defaults;
    if let Some(path) = file {
        figment = figment.merge(Toml::file_exact(path));
    }
    let env = Env::prefixed(ENV_PREFIX).split("__").filter(move |key| {
        let first = key.as_str().split('.').next().unwrap_or_default();
        tables.iter().any(|table| table.eq_ignore_ascii_case(first))
    });
    figment.merge(env)
}

/// Loads a config type from its layers. A named file that does not exist is an error: a typo in
/// `--config` must not silently fall back to defaults.
pub fn load<T: Serialize + DeserializeOwned + Default>(
    file: Option<&Path>,
) -> Result<T, ConfigError> {
    if let Some(path) = file
        && !path.exists()
    {
        return Err(ConfigError::FileMissing {
            path: path.to_owned(),
        });
    }
    figment::<T>(file)
        .extract()
        .map_err(|err| ConfigError::Load(Box::new(err)))
}

/// Every key of a config type, dotted (`drone.simulate.time_scale`): the leaves of its
/// defaults, tables recursed. Keys whose default is unset are included.
pub fn config_keys<T: Serialize + Default>() -> std::collections::BTreeSet<String> {
    fn walk(
        prefix: &str,
        dict: &figment::value::Dict,
        out: &mut std::collections::BTreeSet<String>,
    ) {
        for (key, value) in dict {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                // A map-valued key that is empty by default is a key of its own.
                figment::value::Value::Dict(_, inner) if inner.is_empty() => {
                    out.insert(path);
                }
                figment::value::Value::Dict(_, inner) => walk(&path, inner, out),
                _ => {
                    out.insert(path);
                }
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    if let Ok(dict) =
        Figment::from(Serialized::defaults(T::default())).extract::<figment::value::Dict>()
    {
        walk("", &dict, &mut out);
    }
    out
}

/// The keys a sample config file documents, dotted: every `key = ...` line, set or commented
/// out (`# key = ...`), under the `[table]` header above it. With [`config_keys`] a test checks
/// that a sample names every key and nothing else.
pub fn documented_keys(text: &str) -> std::collections::BTreeSet<String> {
    let mut table = String::new();
    let mut out = std::collections::BTreeSet::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = header.trim().to_owned();
            continue;
        }
        let line = line.strip_prefix('#').map_or(line, str::trim_start);
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(if table.is_empty() {
                key.to_owned()
            } else {
                format!("{table}.{key}")
            });
        }
    }
    out
}

/// Why a sample config file fails its test.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("cannot read sample config {path}: {source}", path = path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The sample does not name every key of the type, or names keys the type does not have.
    #[error(
        "sample config {path}: undocumented keys {missing:?}, unknown keys {unknown:?}",
        path = path.display()
    )]
    Keys {
        path: PathBuf,
        missing: Vec<String>,
        unknown: Vec<String>,
    },
    /// The sample does not load, or (see `runtime::daemon::check_sample`) a value is invalid.
    #[error("sample config {path}: {source}", path = path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
}

/// For a test of a sample config file: it must name every key of `T` (set, or commented out at
/// its default) and nothing else, and load on its own (over the defaults, without the environment).
/// Returns the loaded configuration for the caller to
/// validate; the error says which keys are missing or unknown, or why it does not load.
pub fn load_sample<T: Serialize + DeserializeOwned + Default>(
    path: &Path,
) -> Result<T, SampleError> {
    let text = std::fs::read_to_string(path).map_err(|source| SampleError::Read {
        path: path.to_owned(),
        source,
    })?;
    let documented = documented_keys(&text);
    let keys = config_keys::<T>();
    let missing: Vec<String> = keys.difference(&documented).cloned().collect();
    let unknown: Vec<String> = documented.difference(&keys).cloned().collect();
    if !missing.is_empty() || !unknown.is_empty() {
        return Err(SampleError::Keys {
            path: path.to_owned(),
            missing,
            unknown,
        });
    }
    // The file alone, over the defaults: what the sample says must not depend on the
    // environment of whoever checks it (nor race with tests that set `SWARM_` variables).
    Figment::from(Serialized::defaults(T::default()))
        .merge(Toml::file_exact(path))
        .extract()
        .map_err(|err| SampleError::Load {
            path: path.to_owned(),
            source: ConfigError::Load(Box::new(err)),
        })
}

#[cfg(test)]
// figment's `Jail` closures return its large error type; that is fine in tests.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        nats: Table,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Table {
        url: String,
    }

    #[test]
    fn other_binaries_variables_are_ignored_but_typos_in_our_tables_are_not() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SWARM_DRONE__NAME", "x");
            jail.set_env("SWARM_CONFIG", "/nowhere");
            jail.set_env("SWARM_NATS__URL", "nats://a:1");
            let sample: Sample = load(None).map_err(|e| e.to_string())?;
            assert_eq!(sample.nats.url, "nats://a:1");
            jail.set_env("SWARM_NATS__URLL", "nats://a:1");
            let err = load::<Sample>(None).expect_err("typo refused");
            assert!(err.to_string().contains("urll"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn keys_of_a_type_and_of_a_sample_file() {
        let keys = config_keys::<Sample>();
        assert_eq!(keys.into_iter().collect::<Vec<_>>(), ["nats.url"]);
        let text = "# comment = not a key\n[nats]\n# url = \"x\"\nother = 1\n[a.b]\nc = 2\n";
        let documented: Vec<String> = documented_keys(text).into_iter().collect();
        assert_eq!(documented, ["a.b.c", "comment", "nats.other", "nats.url"]);
    }

    #[test]
    fn a_named_file_must_exist() {
        let err = load::<Sample>(Some(Path::new("/nonexistent/swarm.toml"))).expect_err("missing");
        assert!(matches!(err, ConfigError::FileMissing { .. }));
    }

    #[test]
    fn a_sample_must_document_every_key_and_nothing_else() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("good.toml", "[nats]\n# url = \"nats://a:1\"\n")?;
            jail.create_file("missing.toml", "[nats]\n")?;
            jail.create_file("unknown.toml", "[nats]\nurl = \"x\"\nport = 1\n")?;
            jail.create_file("bad.toml", "[nats]\nurl = 5\n")?;
            let sample: Sample = load_sample(Path::new("good.toml")).map_err(|e| e.to_string())?;
            assert_eq!(sample.nats.url, "");
            let err = load_sample::<Sample>(Path::new("missing.toml")).expect_err("missing");
            assert!(
                matches!(&err, SampleError::Keys { missing, unknown, .. }
                    if missing == &["nats.url"] && unknown.is_empty()),
                "{err}"
            );
            let err = load_sample::<Sample>(Path::new("unknown.toml")).expect_err("unknown");
            assert!(
                matches!(&err, SampleError::Keys { missing, unknown, .. }
                    if missing.is_empty() && unknown == &["nats.port"]),
                "{err}"
            );
            let err = load_sample::<Sample>(Path::new("bad.toml")).expect_err("bad value");
            assert!(matches!(err, SampleError::Load { .. }), "{err}");
            let err = load_sample::<Sample>(Path::new("absent.toml")).expect_err("absent");
            assert!(matches!(err, SampleError::Read { .. }), "{err}");
            Ok(())
        });
    }
}
