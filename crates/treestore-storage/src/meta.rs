//! The two meta pages (ids 0 and 1) that name the current checkpoint.
//!
//! Each checkpoint writes its meta page into slot `seq % 2` (`seq` counts
//! checkpoints), so the previous one stays intact until the new one is durable.
//! On open the valid meta with the highest sequence number wins; a torn meta write
//! falls back to the other slot, whose log is still on disk.
//!
//! Layout after the common 16-byte page header (all little endian):
//!
//! | offset | size | field                                           |
//! |--------|------|-------------------------------------------------|
//! | 16     | 8    | magic `TREESTOR`                                |
//! | 24     | 4    | format version                                  |
//! | 28     | 4    | page size                                       |
//! | 32     | 8    | checkpoint sequence number                      |
//! | 40     | 8    | root page id of the B+tree (0 = empty tree)     |
//! | 48     | 4    | tree depth (0 = empty, 1 = root is a leaf)      |
//! | 52     | 4    | reserved (0)                                    |
//! | 56     | 8    | first free-list page (0 = none)                 |
//! | 64     | 8    | page count (file length / page size)            |
//! | 72     | 8    | number of key/value entries                     |
//! | 80     | 8    | number of free pages recorded                   |
//! | 88     | 8    | log position (LSN) this checkpoint covers up to |
//! | 96     | 8    | sequence number of the last commit it includes  |

use std::path::Path;

use crate::error::{Error, Result};
use crate::page::{self, PageId, PageType};

/// The file's magic number, at byte 16 of page 0 and page 1.
pub const MAGIC: [u8; 8] = *b"TREESTOR";
/// On-disk format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Deepest tree accepted (far beyond any real tree: 64 levels of at least two
/// children); bounds recursion on a damaged file.
pub const MAX_DEPTH: u32 = 64;
/// How many bytes of page 0 are enough to identify the file and its page size.
pub const PROBE_LEN: usize = 32;

/// Decoded contents of a meta page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meta {
    pub page_size: u32,
    pub seq: u64,
    pub root: PageId,
    pub depth: u32,
    pub freelist_head: PageId,
    pub page_count: u64,
    pub entry_count: u64,
    pub free_count: u64,
    pub checkpoint_lsn: u64,
    pub commit_seq: u64,
}

impl Meta {
    /// Which of the two meta slots this meta is written to.
    pub fn slot(&self) -> PageId {
        self.seq % 2
    }

    /// Encodes into a full page image sealed for its slot.
    pub fn encode(&self, buf: &mut [u8]) {
        buf.fill(0);
        buf[16..24].copy_from_slice(&MAGIC);
        page::write_u32(buf, 24, FORMAT_VERSION);
        page::write_u32(buf, 28, self.page_size);
        page::write_u64(buf, 32, self.seq);
        page::write_u64(buf, 40, self.root);
        page::write_u32(buf, 48, self.depth);
        page::write_u64(buf, 56, self.freelist_head);
        page::write_u64(buf, 64, self.page_count);
        page::write_u64(buf, 72, self.entry_count);
        page::write_u64(buf, 80, self.free_count);
        page::write_u64(buf, 88, self.checkpoint_lsn);
        page::write_u64(buf, 96, self.commit_seq);
        page::seal(buf, self.slot(), PageType::Meta, 0, 0);
    }

    /// Decodes and verifies the meta page read from slot `id`.
    pub fn decode(buf: &[u8], id: PageId) -> Result<Meta> {
        page::verify_type(buf, id, PageType::Meta)?;
        if buf[16..24] != MAGIC {
            return Err(Error::corrupt(id, "meta page without magic number"));
        }
        let meta = Meta {
            page_size: page::read_u32(buf, 28),
            seq: page::read_u64(buf, 32),
            root: page::read_u64(buf, 40),
            depth: page::read_u32(buf, 48),
            freelist_head: page::read_u64(buf, 56),
            page_count: page::read_u64(buf, 64),
            entry_count: page::read_u64(buf, 72),
            free_count: page::read_u64(buf, 80),
            checkpoint_lsn: page::read_u64(buf, 88),
            commit_seq: page::read_u64(buf, 96),
        };
        if meta.page_size as usize != buf.len() {
            return Err(Error::corrupt(
                id,
                "meta page records a different page size",
            ));
        }
        if meta.slot() != id {
            return Err(Error::corrupt(
                id,
                format!("meta with sequence {} found in slot {id}", meta.seq),
            ));
        }
        if meta.page_count < 2
            || meta.root >= meta.page_count
            || meta.freelist_head >= meta.page_count
            || (meta.root == 0) != (meta.depth == 0)
            || meta.depth > MAX_DEPTH
        {
            return Err(Error::corrupt(id, "meta page fields out of range"));
        }
        Ok(meta)
    }
}

/// Reads magic, format version and page size from the first bytes of a file.
/// Distinguishes "not our file" and "newer format" from plain corruption.
pub fn probe(head: &[u8], path: &Path) -> Result<usize> {
    if head.len() < PROBE_LEN || head[16..24] != MAGIC {
        return Err(Error::NotATreeStoreFile {
            path: path.to_path_buf(),
        });
    }
    let version = page::read_u32(head, 24);
    if version != FORMAT_VERSION {
        return Err(Error::UnsupportedFormatVersion {
            path: path.to_path_buf(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let page_size = page::read_u32(head, 28) as usize;
    if !page::valid_page_size(page_size) {
        return Err(Error::CorruptFile {
            path: path.to_path_buf(),
            reason: format!("header records an invalid page size {page_size}"),
        });
    }
    Ok(page_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(seq: u64) -> Meta {
        Meta {
            page_size: 4096,
            seq,
            root: 7,
            depth: 2,
            freelist_head: 9,
            page_count: 12,
            entry_count: 100,
            free_count: 3,
            checkpoint_lsn: 77,
            commit_seq: 1234,
        }
    }

    #[test]
    fn roundtrip_in_its_slot() {
        for seq in [1u64, 2] {
            let m = sample(seq);
            let mut buf = vec![0u8; 4096];
            m.encode(&mut buf);
            assert_eq!(Meta::decode(&buf, m.slot()).unwrap(), m);
            assert!(Meta::decode(&buf, 1 - m.slot()).is_err());
            assert_eq!(probe(&buf, Path::new("x")).unwrap(), 4096);
        }
    }

    #[test]
    fn implausible_depth_is_corruption() {
        let mut m = sample(1);
        m.depth = MAX_DEPTH + 1;
        let mut buf = vec![0u8; 4096];
        m.encode(&mut buf);
        assert!(Meta::decode(&buf, 1).is_err());
    }

    #[test]
    fn probe_rejects_foreign_and_newer_files() {
        let p = Path::new("f");
        assert!(matches!(
            probe(b"hello world, this is not a database", p),
            Err(Error::NotATreeStoreFile { .. })
        ));
        let mut buf = vec![0u8; 4096];
        sample(1).encode(&mut buf);
        page::write_u32(&mut buf, 24, FORMAT_VERSION + 1);
        assert!(matches!(
            probe(&buf, p),
            Err(Error::UnsupportedFormatVersion { found: 2, .. })
        ));
    }
}
