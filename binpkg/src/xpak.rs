//! The XPAK metadata Portage appends to an older-format binary package (`.tbz2`, or `.xpak`
//! with `binpkg-multi-instance`): at the very end, the block's length (4 bytes, big-endian) and
//! `STOP`; the block is `XPAKPACK`, the index length and the data length (4 bytes each), the
//! index (per key: name length, name, data offset, data length), the data, and `XPAKSTOP`
//! (`lib/portage/xpak.py`).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::{BinpkgError, Metadata};

/// A block larger than this is not metadata (the index and values of a package are kilobytes).
const MAX_BLOCK: u64 = 16 * 1024 * 1024;

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// Reads the XPAK metadata of the binary package at `path`.
pub fn read_metadata(path: &Path) -> Result<Metadata, BinpkgError> {
    let not = |reason| BinpkgError::NotXpak {
        path: path.to_owned(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(BinpkgError::io(path))?;
    let len = file.metadata().map_err(BinpkgError::io(path))?.len();
    if len < 8 {
        return Err(not("shorter than its trailer"));
    }
    let mut trailer = [0u8; 8];
    file.seek(SeekFrom::End(-8))
        .map_err(BinpkgError::io(path))?;
    file.read_exact(&mut trailer)
        .map_err(BinpkgError::io(path))?;
    if &trailer[4..] != b"STOP" {
        return Err(not("no STOP trailer"));
    }
    let block_len = u64::from(be32(&trailer[..4]));
    if block_len > MAX_BLOCK || block_len + 8 > len {
        return Err(not("the trailer's length does not fit the file"));
    }
    let mut block = vec![0u8; block_len as usize];
    file.seek(SeekFrom::Start(len - 8 - block_len))
        .map_err(BinpkgError::io(path))?;
    file.read_exact(&mut block).map_err(BinpkgError::io(path))?;
    parse_block(&block).ok_or_else(|| not("a malformed XPAK block"))
}

/// Parses an XPAK block (`XPAKPACK` ... `XPAKSTOP`); `None` when it is malformed.
pub fn parse_block(block: &[u8]) -> Option<Metadata> {
    if block.len() < 24 || &block[..8] != b"XPAKPACK" || !block.ends_with(b"XPAKSTOP") {
        return None;
    }
    let index_len = be32(&block[8..12]) as usize;
    let data_len = be32(&block[12..16]) as usize;
    let index = block.get(16..16usize.checked_add(index_len)?)?;
    let data_start = 16 + index_len;
    let data = block.get(data_start..data_start.checked_add(data_len)?)?;
    let mut metadata = Metadata::new();
    let mut at = 0;
    while at < index.len() {
        let name_len = be32(index.get(at..at + 4)?) as usize;
        at += 4;
        let name = std::str::from_utf8(index.get(at..at + name_len)?).ok()?;
        at += name_len;
        let offset = be32(index.get(at..at + 4)?) as usize;
        let value_len = be32(index.get(at + 4..at + 8)?) as usize;
        at += 8;
        let value = data.get(offset..offset.checked_add(value_len)?)?;
        let value = String::from_utf8_lossy(value);
        metadata.insert(name.to_owned(), value.trim_end_matches('\n').to_owned());
    }
    Some(metadata)
}

/// Encodes metadata as an XPAK block, as Portage's `xpak.xpak_mem` does: for the tests, and for
/// anything that must write the older format.
pub fn encode_block(metadata: &Metadata) -> Vec<u8> {
    let mut index: Vec<u8> = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    for (key, value) in metadata {
        let value = format!("{value}\n");
        index.extend((key.len() as u32).to_be_bytes());
        index.extend(key.as_bytes());
        index.extend((data.len() as u32).to_be_bytes());
        index.extend((value.len() as u32).to_be_bytes());
        data.extend(value.as_bytes());
    }
    let mut block = b"XPAKPACK".to_vec();
    block.extend((index.len() as u32).to_be_bytes());
    block.extend((data.len() as u32).to_be_bytes());
    block.extend(index);
    block.extend(data);
    block.extend(b"XPAKSTOP");
    block
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_reads_back_and_junk_is_refused() {
        let mut metadata = Metadata::new();
        metadata.insert("CATEGORY".into(), "app-misc".into());
        metadata.insert("PF".into(), "hello-1.0".into());
        let block = encode_block(&metadata);
        assert_eq!(parse_block(&block), Some(metadata.clone()));
        // As appended to a package: the block, its length and STOP.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hello-1.0.tbz2");
        let mut file = b"compressed image bytes".to_vec();
        file.extend(&block);
        file.extend((block.len() as u32).to_be_bytes());
        file.extend(b"STOP");
        std::fs::write(&path, &file).expect("write");
        assert_eq!(read_metadata(&path).expect("reads"), metadata);
        for junk in [&b"XPAKPACK"[..], &block[..block.len() - 1], b""] {
            assert_eq!(parse_block(junk), None);
        }
        std::fs::write(&path, b"no trailer at all").expect("write");
        assert!(matches!(
            read_metadata(&path),
            Err(BinpkgError::NotXpak { .. })
        ));
    }
}
