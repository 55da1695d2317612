//! `swarmctl submit`: collect and validate the atoms, then one request to the coordinator.

use std::fmt;
use std::io::Read;
use std::path::Path;

use schemas::names::SUBMIT_SUBJECT;
use schemas::{RunName, SCHEMA_VERSION, SubmitReply, SubmitRequest, SubmitResult};

use crate::input::Collected;
use crate::rpc;
use crate::{CliError, SubmitArgs};

/// What the coordinator did with an accepted submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// Packages that were new (or finished and queued again).
    pub queued: u32,
    /// Packages that were still queued or building and were left as they were.
    pub already_queued: u32,
    /// The run they belong to (`None` from a coordinator of the previous release).
    pub run: Option<RunName>,
    /// What the coordinator noticed (a build dependency that looks like a typo).
    pub notes: Vec<String>,
}

impl fmt::Display for Submitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "queued {} {} ({} already queued)",
            self.queued,
            if self.queued == 1 {
                "package"
            } else {
                "packages"
            },
            self.already_queued
        )?;
        if let Some(run) = &self.run {
            write!(f, " in run {run}")?;
        }
        for note in &self.notes {
            write!(f, "\nnote: {note}")?;
        }
        Ok(())
    }
}

/// Reads every source the arguments name and validates every atom; the request, or every invalid
/// atom. Touches no network.
pub fn prepare_submission(args: &SubmitArgs) -> Result<SubmitRequest, CliError> {
    let mut collected = Collected::default();
    collected.add_arguments(&args.atoms);
    for path in &args.file {
        collected.add_atom_list(path, &read_input(path)?);
    }
    for path in &args.pretend {
        collected.add_pretend_output(path, &read_input(path)?);
    }
    if !collected.invalid.is_empty() {
        return Err(CliError::InvalidAtoms(collected.invalid));
    }
    if let Some(path) = &args.estimates {
        let history = crate::emerge_log::parse(&read_input(path)?);
        for item in &mut collected.items {
            if item.estimate_secs.is_none()
                && let Ok(atom) = schemas::Atom::parse(&item.atom)
            {
                item.estimate_secs = history.estimate(&atom);
            }
        }
    }
    if collected.items.is_empty() {
        let what = args
            .file
            .iter()
            .chain(&args.pretend)
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(CliError::NothingToSubmit {
            what: if what.is_empty() {
                "the arguments".to_owned()
            } else {
                what
            },
        });
    }
    Ok(SubmitRequest {
        v: SCHEMA_VERSION,
        items: collected.items,
        arch: args.arch.clone(),
        fingerprint: args.fingerprint.clone(),
        run: args.run.as_ref().map(ToString::to_string),
        priority: args.priority.map(Into::into),
    })
}

/// A file's text, `-` being standard input. Bytes that are not UTF-8 become U+FFFD, so the line
/// holding them is reported as an invalid atom instead of the whole file being refused.
fn read_input(path: &Path) -> Result<String, CliError> {
    let mut bytes = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().lock().read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|mut file| file.read_to_end(&mut bytes))
    };
    read.map_err(|err| CliError::ReadInput {
        path: path.to_owned(),
        reason: err.to_string(),
    })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Sends a prepared submission to the coordinator and waits for its verdict.
pub async fn submit(
    client: &async_nats::Client,
    request: &SubmitRequest,
) -> Result<Submitted, CliError> {
    let payload = schemas::encode(request)?;
    let reply: SubmitReply = rpc::call(client, SUBMIT_SUBJECT, payload).await?;
    match reply.result {
        SubmitResult::Accepted {
            queued,
            already_queued,
            run,
            notes,
        } => Ok(Submitted {
            queued,
            already_queued,
            run,
            notes,
        }),
        SubmitResult::Rejected { rejections } => Err(CliError::Rejected(rejections)),
        SubmitResult::Error { message } => Err(CliError::Coordinator { message }),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn args(atoms: &[&str], file: Option<PathBuf>, pretend: Option<PathBuf>) -> SubmitArgs {
        SubmitArgs {
            atoms: atoms.iter().map(|a| a.to_string()).collect(),
            file: file.into_iter().collect(),
            pretend: pretend.into_iter().collect(),
            ..SubmitArgs::default()
        }
    }

    #[test]
    fn invalid_atoms_from_every_source_are_reported_together() {
        let dir = tempfile::tempdir().expect("temp dir");
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "sys-libs/zlib\nsys-libs/glibc; rm -rf /\n").expect("write");
        let pretend = dir.path().join("pretend.txt");
        std::fs::write(&pretend, "[ebuild  N    ] dev-libs/$(reboot)-1::gentoo\n").expect("write");
        let err = prepare_submission(&args(&["../etc/passwd"], Some(list.clone()), Some(pretend)))
            .expect_err("invalid");
        let CliError::InvalidAtoms(invalid) = &err else {
            panic!("expected invalid atoms, got {err:?}");
        };
        assert_eq!(invalid.len(), 3, "{invalid:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("3 invalid atoms; nothing was submitted\n"),
            "{text}"
        );
        assert!(text.contains("argument 1: "), "{text}");
        assert!(text.contains("list.txt:2: "), "{text}");
        assert!(text.contains("pretend.txt:1: "), "{text}");

        let request = prepare_submission(&args(&["dev-libs/b"], Some(list.clone()), None));
        assert!(request.is_err());
        std::fs::write(&list, "# only comments\n\n").expect("write");
        let err = prepare_submission(&args(&[], Some(list.clone()), None)).expect_err("empty");
        assert!(matches!(err, CliError::NothingToSubmit { .. }), "{err:?}");
        std::fs::write(&list, "sys-libs/zlib\t20\n").expect("write");
        let request = prepare_submission(&args(&["dev-libs/b"], Some(list), None)).expect("valid");
        assert_eq!(request.items.len(), 2);
        assert_eq!(request.items[1].estimate_secs, Some(20.0));
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = prepare_submission(&args(&[], Some("/nonexistent/atoms.txt".into()), None))
            .expect_err("missing");
        match err {
            CliError::ReadInput { path, .. } => {
                assert_eq!(path, PathBuf::from("/nonexistent/atoms.txt"))
            }
            other => panic!("expected a read error, got {other:?}"),
        }
    }

    #[test]
    fn the_summary_line_reads_naturally() {
        let line = |queued, already_queued| {
            Submitted {
                queued,
                already_queued,
                run: None,
                notes: Vec::new(),
            }
            .to_string()
        };
        assert_eq!(line(152, 0), "queued 152 packages (0 already queued)");
        assert_eq!(line(1, 2), "queued 1 package (2 already queued)");
        let noted = Submitted {
            queued: 2,
            already_queued: 0,
            run: RunName::parse("nightly").ok(),
            notes: vec!["look at this".into()],
        };
        assert_eq!(
            noted.to_string(),
            "queued 2 packages (0 already queued) in run nightly\nnote: look at this"
        );
    }
}
