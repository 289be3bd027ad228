//! ringfs-proto: everything that crosses the wire.
//!
//! - [`pb`]: generated gRPC services and messages (`proto/ringfs.proto`)
//! - [`ids`]: `InodeId`, `BlockId`, `GenerationStamp`, `DatanodeId` newtypes
//! - [`chunk`]: the 64 KiB chunking and blake3 hashing shared by writers, datanodes and readers
//! - [`token`]: keyed-hash block access tokens and node authentication
//! - [`codec`]: the prost gRPC codec of every service (encodes each message with one copy)
//! - [`local_read`]: short-circuit reads of a replica on the same host (a descriptor over a Unix socket)
//! - [`net`]: one `connect()` helper with timeouts and message-size limits, server builder settings
//! - [`reconnect`]: a channel whose calls wait out a server restart instead of failing
//! - [`tls`]: optional TLS on every connection (process-wide settings)
//! - [`units`]: human sizes ("64MiB") and durations ("3s") for flags and config

pub mod chunk;
pub mod codec;
pub mod error_kind;
pub mod ids;
pub mod local_read;
pub mod net;
pub mod reconnect;
pub mod tls;
pub mod token;
pub mod units;

/// Generated protobuf/gRPC code.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("ringfs");
}

pub use error_kind::ErrorKind;
pub use ids::{BlockId, DatanodeId, GenerationStamp, InodeId};

/// Largest file ringfs stores, as ext4 (16 TiB).
pub const MAX_FILE_SIZE: u64 = 1 << 44;
/// Most blocks (holes included) one file may have: its block list is one metadata row and one
/// piece of a writer's memory.
pub const MAX_FILE_BLOCKS: u64 = 1 << 18;

/// Largest size of a file of `block_size` (EFBIG past it): [`MAX_FILE_SIZE`], or less for small
/// blocks ([`MAX_FILE_BLOCKS`] of them).
pub fn max_file_size(block_size: u64) -> u64 {
    MAX_FILE_SIZE.min(block_size.max(1).saturating_mul(MAX_FILE_BLOCKS))
}

/// The tail of a "not enough live datanodes" refusal for `retiring` more nodes that are up but
/// decommissioning or decommissioned: without it "have 2" read as dead nodes while more were up.
pub fn retiring_note(retiring: usize) -> String {
    match retiring {
        0 => String::new(),
        n => format!(" ({n} more decommissioning or decommissioned, taking no new blocks)"),
    }
}

/// Prefix of the hidden names a mount gives files unlinked or replaced while still open there
/// (`.ringfs-open-<inode>-<mount>`, like NFS's `.nfsXXXX`): the mount does not list them and the
/// CLI's `ls` lists them only with `-a`.
pub const OPEN_FILE_HIDDEN_PREFIX: &str = ".ringfs-open-";

/// The hidden name the mount with `client_id` gives inode `ino` (see [`OPEN_FILE_HIDDEN_PREFIX`]).
pub fn open_file_hidden_name(ino: u64, client_id: &str) -> String {
    format!(
        "{OPEN_FILE_HIDDEN_PREFIX}{ino}-{}",
        open_file_hidden_tag(client_id)
    )
}

/// The part of a hidden name that names the mount with `client_id`.
pub fn open_file_hidden_tag(client_id: &str) -> String {
    client_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect()
}

/// The mount tag of a name made by [`open_file_hidden_name`], if it is one.
pub fn open_file_hidden_owner(name: &str) -> Option<&str> {
    open_file_hidden_parts(name).map(|(_, tag)| tag)
}

/// The inode and the mount tag of a name made by [`open_file_hidden_name`], if it is one. Only an
/// entry whose inode is the one its name says is a mount's hidden name: a user's file named alike
/// (made through the CLI, which does not refuse the prefix) almost never is.
pub fn open_file_hidden_parts(name: &str) -> Option<(u64, &str)> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (ino, rest) = name
        .strip_prefix(OPEN_FILE_HIDDEN_PREFIX)?
        .split_once('-')?;
    // `-<dir>` after the tag: moved to the root when its directory went (a mount's rmdir).
    let (tag, moved_from) = match rest.split_once('-') {
        Some((tag, dir)) => (tag, Some(dir)),
        None => (rest, None),
    };
    let well_formed = digits(ino)
        && tag.len() == 8
        && tag.bytes().all(|b| b.is_ascii_alphanumeric())
        && moved_from.is_none_or(digits);
    let ino = ino.parse().ok().filter(|_| well_formed)?;
    Some((ino, tag))
}

/// Whether the directory entry `name`, which links inode `inode`, is a mount's hidden name of an
/// open file: named so, and for that very inode. A user's file named alike (the CLI does not
/// refuse the prefix) is an ordinary file: listed, copied, and never removed as a leftover.
pub fn is_open_file_hidden_entry(name: &str, inode: u64) -> bool {
    open_file_hidden_parts(name).is_some_and(|(ino, _)| ino == inode)
}

/// [`is_open_file_hidden_entry`] of a directory listing's entry: what the mount's `readdir` and
/// the CLI's `ls` leave out.
pub fn is_hidden_dir_entry(e: &pb::DirEntry) -> bool {
    e.attr
        .as_ref()
        .is_some_and(|a| is_open_file_hidden_entry(&e.name, a.inode))
}

/// The inode id of the root directory.
pub const ROOT_INODE: u64 = 1;
/// Default namenode address for clients.
pub const DEFAULT_NAMENODE: &str = "127.0.0.1:8020";

/// How long one datanode of a write pipeline may take, after the last packet, to answer for
/// itself (store and fsync): a hop waits this long per datanode below it, and the writer per
/// datanode of the pipeline plus one, so the hop just above a hung node times out first and
/// names it.
pub const PIPELINE_ANSWER_PER_HOP: std::time::Duration = std::time::Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_names_of_open_files_name_their_mount() {
        let name = open_file_hidden_name(57951, "ce30322e-6ac7-40ef-9398-e5aa8c8716c2");
        assert_eq!(name, ".ringfs-open-57951-ce30322e");
        assert_eq!(open_file_hidden_owner(&name), Some("ce30322e"));
        assert_eq!(open_file_hidden_parts(&name), Some((57951, "ce30322e")));
        assert!(is_open_file_hidden_entry(&name, 57951));
        assert!(!is_open_file_hidden_entry(&name, 57952));
        let moved = format!("{name}-12");
        assert_eq!(open_file_hidden_parts(&moved), Some((57951, "ce30322e")));
        assert_eq!(
            open_file_hidden_tag("ce30322e-6ac7-40ef-9398-e5aa8c8716c2"),
            "ce30322e"
        );
        for other in [
            ".ringfs-open-",
            ".ringfs-open-12",
            ".ringfs-open--ce30322e",
            ".ringfs-open-x1-ce30322e",
            ".ringfs-open-1-ce30",
            ".ringfs-open-1-ce30322e.txt",
            ".ringfs-open-1-ce30322e-",
            ".ringfs-open-1-ce30322e-x",
            "ringfs-open-1-ce30322e",
        ] {
            assert_eq!(open_file_hidden_owner(other), None, "{other}");
        }
    }
}
