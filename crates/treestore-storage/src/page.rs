//! Fixed-size pages: the common 16-byte header, type tags and checksums.
//!
//! Every page of the database file starts with the same header:
//!
//! | offset | size | field                                                      |
//! |--------|------|------------------------------------------------------------|
//! | 0      | 4    | crc32c of the page id (u64 LE) then bytes 4..page_size     |
//! | 4      | 1    | page type tag ([`PageType`])                               |
//! | 5      | 1    | flags (0)                                                  |
//! | 6      | 2    | count: number of cells / entries (u16 LE)                  |
//! | 8      | 8    | link (u64 LE): meaning depends on the type                 |
//!
//! The checksum is written when a page goes to the file, not when its image
//! is built: images in the buffer pool may carry a stale one (see
//! [`set_header`]); only images read from the file are verified.
//!
//! Mixing the page id into the checksum means a page written to the wrong place is
//! caught as well as a flipped bit or a torn write. All integers are little endian.

use std::sync::Arc;

use crate::error::{Error, Result};

/// Index of a page in the database file (offset = id * page_size).
pub type PageId = u64;

/// An immutable page image shared between the buffer pool and its readers.
/// Holding a clone pins the image: the pool never hands its memory to another page.
pub type PageRef = Arc<[u8]>;

/// A zeroed page image of `len` bytes, allocated in place (no copy from a
/// `Vec`), and a mutable view of it for filling: the image is not shared yet.
pub fn new_image(len: usize) -> PageRef {
    std::iter::repeat_n(0u8, len).collect()
}

/// The bytes of an image nobody else holds yet (see [`new_image`]). A shared
/// image is first copied, so this never changes what another holder sees.
pub fn image_mut(image: &mut PageRef) -> &mut [u8] {
    if Arc::get_mut(image).is_none() {
        *image = Arc::from(&image[..]);
    }
    Arc::get_mut(image).unwrap_or_default()
}

/// Size of the common page header.
pub const PAGE_HEADER_LEN: usize = 16;

/// Smallest and largest page sizes a database may be created with.
pub const MIN_PAGE_SIZE: usize = 1024;
pub const MAX_PAGE_SIZE: usize = 65536;
/// Page size used when none is given.
pub const DEFAULT_PAGE_SIZE: usize = 4096;

/// The type tag stored in byte 4 of every page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PageType {
    /// One of the two meta pages (ids 0 and 1).
    Meta = 1,
    /// An interior B+tree node: separator keys and child page ids.
    Branch = 2,
    /// A B+tree leaf: keys and values (or references to overflow chains).
    Leaf = 3,
    /// A piece of a large value, chained through the link field.
    Overflow = 4,
    /// A piece of the persisted free list, chained through the link field.
    FreeList = 5,
}

impl PageType {
    /// Decodes a type tag.
    pub fn from_u8(tag: u8) -> Option<PageType> {
        Some(match tag {
            1 => PageType::Meta,
            2 => PageType::Branch,
            3 => PageType::Leaf,
            4 => PageType::Overflow,
            5 => PageType::FreeList,
            _ => return None,
        })
    }
}

/// Computes the checksum of a page image as stored at `id`.
pub fn checksum(buf: &[u8], id: PageId) -> u32 {
    let seed = crc32c::crc32c(&id.to_le_bytes());
    crc32c::crc32c_append(seed, &buf[4..])
}

/// Writes the header fields and the checksum; call after the body is complete.
pub fn seal(buf: &mut [u8], id: PageId, ty: PageType, count: u16, link: u64) {
    set_header(buf, ty, count, link);
    write_checksum(buf, id);
}

/// Writes the header fields but not the checksum: for images staged in the
/// buffer pool, which get their checksum when written to the file
/// ([`crate::buffer_pool`]), so an image rewritten by many commits before it
/// reaches the disk is summed once, not once per commit.
pub fn set_header(buf: &mut [u8], ty: PageType, count: u16, link: u64) {
    buf[4] = ty as u8;
    buf[5] = 0;
    buf[6..8].copy_from_slice(&count.to_le_bytes());
    buf[8..16].copy_from_slice(&link.to_le_bytes());
}

/// Computes the checksum of a complete image as stored at `id` into its
/// first four bytes.
pub fn write_checksum(buf: &mut [u8], id: PageId) {
    let sum = checksum(buf, id);
    buf[0..4].copy_from_slice(&sum.to_le_bytes());
}

/// Verifies checksum and type tag of a page read from `id`.
pub fn verify(buf: &[u8], id: PageId) -> Result<PageType> {
    let stored = read_u32(buf, 0);
    let actual = checksum(buf, id);
    if stored != actual {
        return Err(Error::corrupt(
            id,
            format!("checksum mismatch (stored {stored:#010x}, computed {actual:#010x})"),
        ));
    }
    PageType::from_u8(buf[4])
        .ok_or_else(|| Error::corrupt(id, format!("unknown page type tag {}", buf[4])))
}

/// Verifies a page and that it has the expected type.
pub fn verify_type(buf: &[u8], id: PageId, want: PageType) -> Result<()> {
    let ty = verify(buf, id)?;
    if ty != want {
        return Err(Error::corrupt(
            id,
            format!("expected a {want:?} page, found {ty:?}"),
        ));
    }
    Ok(())
}

/// The page type tag (unverified).
pub fn page_type(buf: &[u8]) -> Option<PageType> {
    PageType::from_u8(buf[4])
}
/// The count field of the header.
pub fn count(buf: &[u8]) -> usize {
    read_u16(buf, 6) as usize
}
/// The link field of the header.
pub fn link(buf: &[u8]) -> u64 {
    read_u64(buf, 8)
}

#[inline]
pub(crate) fn read_u16(buf: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([buf[at], buf[at + 1]])
}
#[inline]
pub(crate) fn read_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}
#[inline]
pub(crate) fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}
#[inline]
pub(crate) fn write_u16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub(crate) fn write_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
#[inline]
pub(crate) fn write_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// True when `size` is an allowed page size.
pub fn valid_page_size(size: usize) -> bool {
    size.is_power_of_two() && (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_verify_roundtrips_and_detects_flips() {
        let mut buf = vec![0u8; 4096];
        buf[100] = 7;
        seal(&mut buf, 42, PageType::Leaf, 3, 99);
        assert_eq!(verify(&buf, 42).unwrap(), PageType::Leaf);
        assert_eq!(count(&buf), 3);
        assert_eq!(link(&buf), 99);
        // Same bytes at another page id: caught.
        assert!(matches!(
            verify(&buf, 43),
            Err(Error::CorruptPage { page: 43, .. })
        ));
        for at in [0usize, 4, 6, 15, 100, 4095] {
            let mut bad = buf.clone();
            bad[at] ^= 0x10;
            assert!(
                matches!(verify(&bad, 42), Err(Error::CorruptPage { page: 42, .. })),
                "flip at {at}"
            );
        }
        // A never-written (all zero) page is not mistaken for a valid one.
        assert!(verify(&vec![0u8; 4096], 5).is_err());
    }

    #[test]
    fn unknown_type_tag_is_corruption() {
        let mut buf = vec![0u8; 1024];
        seal(&mut buf, 1, PageType::Leaf, 0, 0);
        buf[4] = 77;
        let sum = checksum(&buf, 1);
        buf[0..4].copy_from_slice(&sum.to_le_bytes());
        assert!(matches!(
            verify(&buf, 1),
            Err(Error::CorruptPage { page: 1, .. })
        ));
    }
}
