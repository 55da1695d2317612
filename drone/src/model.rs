//! The workload model of the `simulate` builder: modelled build times by atom, read from a TSV
//! file such as `world-152.tsv`. Config validation and the builder both read it, so it lives
//! apart from both.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why a workload model cannot be used; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} line {line}: expected `atom<TAB>seconds` with seconds a number >= 0", path.display())]
    Line { path: PathBuf, line: usize },
}

/// Reads a workload model: `atom<TAB>seconds` per line, `#` comments and blank lines skipped,
/// further columns ignored.
pub fn load(path: &Path) -> Result<HashMap<String, f64>, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut model = HashMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split('\t');
        let atom = fields.next().unwrap_or_default().trim();
        let secs = fields
            .next()
            .and_then(|f| f.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .ok_or_else(|| ModelError::Line {
                path: path.to_owned(),
                line: number + 1,
            })?;
        model.insert(atom.to_owned(), secs);
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_model_is_read_by_atom_and_its_errors_name_file_and_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        let good = dir.path().join("model.tsv");
        std::fs::write(
            &good,
            "# atom\test_seconds_8_cores\tkind\nsys-libs/zlib\t20\tsmall\n\nwww-client/chromium\t21600\tgiant\n",
        )
        .expect("write model");
        let model = load(&good).expect("a valid model");
        assert_eq!(model.len(), 2);
        assert_eq!(model.get("www-client/chromium"), Some(&21_600.0));
        for (text, line) in [
            ("sys-libs/zlib\tfast\n", 1),
            ("# header\nsys-libs/zlib\t-1\n", 2),
            ("sys-libs/zlib\n", 1),
        ] {
            let bad = dir.path().join("bad.tsv");
            std::fs::write(&bad, text).expect("write model");
            match load(&bad) {
                Err(ModelError::Line { path, line: got }) => {
                    assert_eq!(path, bad);
                    assert_eq!(got, line, "{text:?}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
            let message = load(&bad).expect_err(text).to_string();
            assert!(message.contains("bad.tsv"), "{message}");
        }
        let absent = dir.path().join("absent.tsv");
        match load(&absent) {
            Err(ModelError::Read { path, .. }) => assert_eq!(path, absent),
            other => panic!("{other:?}"),
        }
    }
}
