//! The binary-package formats against Portage's own code (the `portage` package from PyPI): what
//! Portage writes, we read; what we write, Portage reads and verifies.

use std::collections::BTreeMap;

use swarm_binpkg::{Metadata, checksums, gpkg, index, read_metadata, xpak};
use testkit::portage::oracle;

fn metadata() -> Metadata {
    [
        ("CATEGORY", "app-misc"),
        ("PF", "hello-1.0-r1"),
        ("SLOT", "0"),
        ("EAPI", "8"),
        ("BUILD_ID", "3"),
        ("BUILD_TIME", "1796212345"),
        ("KEYWORDS", "amd64 ~arm64"),
        ("LICENSE", "GPL-2+"),
        ("USE", "abi_x86_64 amd64 nls"),
        ("IUSE", "+nls test"),
        ("RDEPEND", "sys-libs/zlib:= nls? ( sys-devel/gettext )"),
        ("DEPEND", "sys-libs/zlib:="),
        ("BDEPEND", "virtual/pkgconfig"),
        ("repository", "gentoo"),
        ("DEFINED_PHASES", "compile install"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn as_metadata(value: &serde_json::Value) -> Metadata {
    value
        .as_object()
        .expect("an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect()
}

#[test]
fn we_read_the_metadata_of_gpkgs_portage_writes_with_every_common_compression() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = serde_json::to_string(&metadata()).expect("json");
    for compression in ["zstd", "gzip", "xz", "bzip2"] {
        let path = dir.path().join(format!(
            "app-misc/hello/hello-1.0-r1-3-{compression}.gpkg.tar"
        ));
        let path_text = path.display().to_string();
        oracle(&[
            "gpkg-write",
            &path_text,
            "hello-1.0-r1-3",
            &meta,
            compression,
        ])
        .expect("Portage writes a gpkg");
        let (format, read) = read_metadata(&path).expect("we read it");
        assert_eq!(format, swarm_binpkg::Format::Gpkg);
        assert_eq!(read, metadata(), "{compression}");
    }
}

#[test]
fn portage_reads_and_verifies_the_gpkgs_we_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app-misc/hello/hello-1.0-r1-3.gpkg.tar");
    let image = [
        gpkg::ImageFile {
            path: "/usr/bin/hello",
            contents: b"#!/bin/sh\necho hello\n",
            mode: 0o755,
        },
        gpkg::ImageFile {
            path: "usr/share/doc/hello/README",
            contents: b"hello\n",
            mode: 0o644,
        },
    ];
    gpkg::write(&path, "hello-1.0-r1-3", &metadata(), &image, 1_796_212_345).expect("write");
    let answer = oracle(&["gpkg-read", &path.display().to_string(), "hello-1.0-r1-3"])
        .expect("Portage reads and verifies it");
    assert_eq!(as_metadata(&answer["metadata"]), metadata());
    assert_eq!(
        answer["files"],
        serde_json::json!(["usr/bin/hello", "usr/share/doc/hello/README"])
    );
    // And we read back what we wrote; the same inputs give the same bytes.
    assert_eq!(read_metadata(&path).expect("read").1, metadata());
    let again = dir.path().join("again.gpkg.tar");
    gpkg::write(&again, "hello-1.0-r1-3", &metadata(), &image, 1_796_212_345).expect("write");
    assert_eq!(
        checksums::of_file(&path).expect("sum"),
        checksums::of_file(&again).expect("sum")
    );
}

#[test]
fn xpak_blocks_agree_with_portage_both_ways() {
    let meta = serde_json::to_string(&metadata()).expect("json");
    let theirs = oracle(&["xpak-encode", &meta]).expect("Portage encodes");
    let hex = theirs["hex"].as_str().expect("hex");
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
        .collect();
    assert_eq!(xpak::parse_block(&bytes), Some(metadata()));
    let ours: String = xpak::encode_block(&metadata())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let decoded = oracle(&["xpak-decode", &ours]).expect("Portage decodes");
    assert_eq!(as_metadata(&decoded["metadata"]), metadata());
}

#[test]
fn portage_reads_our_index_as_we_wrote_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let header: Metadata = [("TIMESTAMP", "1796212399"), ("ARCH", "amd64")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut packages = Vec::new();
    for (cpv, slot) in [
        ("sys-libs/zlib-1.3.1", "0/1"),
        ("app-misc/hello-1.0-r1", "0"),
    ] {
        let mut package: Metadata = BTreeMap::new();
        package.insert("CPV".into(), cpv.into());
        package.insert("SLOT".into(), slot.into());
        package.insert("SIZE".into(), "1234".into());
        package.insert("RDEPEND".into(), "sys-libs/glibc\n  dev-libs/libx".into());
        packages.push(package);
    }
    let path = dir.path().join("Packages");
    std::fs::write(&path, index::render(&header, &packages)).expect("write");
    let read = oracle(&["index-read", &path.display().to_string()]).expect("Portage reads");
    assert_eq!(read["header"]["VERSION"], "0");
    assert_eq!(read["header"]["PACKAGES"], "2");
    assert_eq!(read["header"]["TIMESTAMP"], "1796212399");
    let cpvs: Vec<&str> = read["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| p["CPV"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(cpvs, ["app-misc/hello-1.0-r1", "sys-libs/zlib-1.3.1"]);
    assert_eq!(read["packages"][1]["SLOT"], "0/1");
    assert_eq!(
        read["packages"][0]["RDEPEND"],
        "sys-libs/glibc dev-libs/libx"
    );
}
