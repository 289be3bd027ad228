//! Typed ids: a block id is never confused with an inode id. `TryFrom<u64>` rejects 0 (reserved).

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! u64_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub struct $name(pub u64);

        impl $name {
            pub fn get(self) -> u64 {
                self.0
            }
        }

        impl TryFrom<u64> for $name {
            type Error = tonic::Status;
            fn try_from(v: u64) -> Result<Self, Self::Error> {
                if v == 0 {
                    Err(tonic::Status::invalid_argument(concat!($what, " 0 is not valid")))
                } else {
                    Ok($name(v))
                }
            }
        }

        impl From<$name> for u64 {
            fn from(v: $name) -> u64 {
                v.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

u64_id!(
    /// A namespace node; never reused. The root is 1.
    InodeId,
    "inode id"
);
u64_id!(
    /// A block, assigned by the namenode; never reused.
    BlockId,
    "block id"
);

/// Bumped whenever a replica's content may change (pipeline recovery, lease recovery): a replica
/// with an older generation than the namenode's is stale and is deleted, never served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GenerationStamp(pub u64);

impl fmt::Display for GenerationStamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A datanode's stable identity (kept in its data dir), independent of its address.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DatanodeId(pub String);

impl fmt::Display for DatanodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for DatanodeId {
    type Error = tonic::Status;
    fn try_from(v: String) -> Result<Self, Self::Error> {
        if v.is_empty()
            || v.len() > 128
            || !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            Err(tonic::Status::invalid_argument(format!(
                "invalid datanode id {v:?}"
            )))
        } else {
            Ok(DatanodeId(v))
        }
    }
}

impl fmt::Display for crate::pb::FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::pb::FileKind::*;
        f.write_str(match self {
            Unspecified => "unknown",
            File => "file",
            Directory => "dir",
            Symlink => "symlink",
            Fifo => "fifo",
            Socket => "socket",
            CharDevice => "char_device",
            BlockDevice => "block_device",
        })
    }
}
