//! A `Packages` index from the swarm's artifacts, pure: one stanza per binary package with the
//! keys Portage's client reads (`lib/portage/dbapi/bintree.py`), its checksums (`SIZE` turns
//! the client's verification on) and its `PATH` below the binhost's root.

use binpkg::Metadata;
use schemas::Artifact;

/// Metadata keys a package stanza carries as they are.
const CARRIED: &[&str] = &[
    "BDEPEND",
    "BUILD_ID",
    "BUILD_TIME",
    "CHOST",
    "DEFINED_PHASES",
    "DEPEND",
    "EAPI",
    "IDEPEND",
    "IUSE",
    "KEYWORDS",
    "LICENSE",
    "PDEPEND",
    "PROPERTIES",
    "PROVIDES",
    "RDEPEND",
    "REQUIRES",
    "RESTRICT",
    "SLOT",
    "USE",
];

/// The stanza of one artifact; `None` when its metadata does not say what package it is.
pub fn stanza(artifact: &Artifact) -> Option<Metadata> {
    let cpv = artifact.cpv()?;
    let mut entry = Metadata::new();
    for key in CARRIED {
        if let Some(value) = artifact.metadata.get(*key) {
            entry.insert((*key).to_owned(), value.clone());
        }
    }
    // Portage's index names two keys differently from the package's metadata.
    if let Some(repo) = artifact.metadata.get("repository") {
        entry.insert("REPO".to_owned(), repo.clone());
    }
    if let Some(description) = artifact.metadata.get("DESCRIPTION") {
        entry.insert("DESC".to_owned(), description.clone());
    }
    entry.insert("CPV".to_owned(), cpv);
    entry.insert("PATH".to_owned(), artifact.path.clone());
    entry.insert("SIZE".to_owned(), artifact.size.to_string());
    entry.insert("MD5".to_owned(), artifact.md5.clone());
    entry.insert("SHA1".to_owned(), artifact.sha1.clone());
    Some(entry)
}

/// The whole index of `packages` for `arch`, dated `timestamp` (seconds).
pub fn render(arch: &str, timestamp: u64, packages: &[Artifact]) -> String {
    let mut header = Metadata::new();
    header.insert("ARCH".to_owned(), arch.to_owned());
    header.insert("TIMESTAMP".to_owned(), timestamp.to_string());
    header.insert("VERSION".to_owned(), "0".to_owned());
    let stanzas: Vec<Metadata> = packages.iter().filter_map(stanza).collect();
    binpkg::index::render(&header, &stanzas)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stanza_names_the_package_its_file_and_checksums() {
        let metadata: Metadata = [
            ("CATEGORY", "app-misc"),
            ("PF", "hello-1.0"),
            ("SLOT", "0"),
            ("repository", "gentoo"),
            ("DESCRIPTION", "says hello"),
            ("CONTENTS", "not an index key"),
            ("RDEPEND", "sys-libs/zlib"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let artifact = Artifact {
            object: "sha256-x".into(),
            path: "app-misc/hello/hello-1.0-1.gpkg.tar".into(),
            size: 10,
            md5: "m".into(),
            sha1: "s".into(),
            metadata,
        };
        let entry = stanza(&artifact).expect("a package");
        let keys: Vec<&str> = entry.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "CPV", "DESC", "MD5", "PATH", "RDEPEND", "REPO", "SHA1", "SIZE", "SLOT"
            ]
        );
        assert_eq!(entry["CPV"], "app-misc/hello-1.0");
        let no_name = Artifact {
            metadata: Metadata::new(),
            ..artifact
        };
        assert_eq!(stanza(&no_name), None);
        assert!(
            render("amd64", 7, &[no_name])
                .starts_with("ARCH: amd64\nPACKAGES: 0\nTIMESTAMP: 7\nVERSION: 0\n\n")
        );
    }
}
