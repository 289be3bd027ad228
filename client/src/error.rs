//! `ClientError`: what a ringfs client call can fail with, and its POSIX-flavoured [`ErrorKind`].

use ringfs_proto::ErrorKind;

/// An error from a client call. `Display` is one line that names the path/block/node and the reason
/// (the namenode's messages already do, e.g. "/a: no such file or directory").
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A ringfs server refused the call; `message` is its message.
    #[error("{message}")]
    Status { kind: ErrorKind, message: String },
    /// The namenode could not be reached at all.
    #[error("cannot reach namenode at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// A local I/O error (e.g. writing the bytes of `copy_to`).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A replica's chunk did not match its hash (the replica was reported and skipped; this error
    /// comes out only where no other replica can be tried).
    #[error("block {block}: checksum mismatch in chunk {chunk} of the replica on {datanode}")]
    ChecksumMismatch {
        block: u64,
        chunk: usize,
        datanode: String,
    },
    /// Every replica of a block failed or none is known.
    #[error("{what}: block {block}: no live replica ({reason})")]
    NoLiveReplica {
        block: u64,
        what: String,
        reason: String,
    },
    /// Writing a block failed on every pipeline the namenode offered.
    #[error("{what}: block {block}: write pipeline failed: {reason}")]
    PipelineFailed {
        block: u64,
        what: String,
        reason: String,
        /// NoSpace when the datanodes refused for lack of space, else Io.
        kind: ErrorKind,
    },
    /// The file lost a block under the reader: another client deleted, replaced or truncated it
    /// meanwhile and its old blocks were freed (ESTALE, as NFS answers for a file gone elsewhere).
    #[error("{what}: {how} by another client while being read (block {block} is gone)")]
    ChangedWhileRead {
        what: String,
        block: u64,
        /// "deleted or replaced" (the inode is gone), or "truncated or rewritten".
        how: &'static str,
    },
    /// Fewer live datanodes than the replication factor asks for (`retiring`: more that are up
    /// but decommissioning or decommissioned, which take no new blocks).
    #[error("not enough live datanodes: need {need}, have {have}{}", ringfs_proto::retiring_note(*.retiring as usize))]
    NotEnoughDatanodes { need: u32, have: u32, retiring: u32 },
    /// A server answered with something the protocol does not allow.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The POSIX-level kind (the FUSE adapter maps it to errno).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Status { kind, .. } => *kind,
            ClientError::NotEnoughDatanodes { .. } => ErrorKind::NoSpace,
            ClientError::ChangedWhileRead { .. } => ErrorKind::Stale,
            ClientError::PipelineFailed { kind, .. } => *kind,
            ClientError::Connect { .. }
            | ClientError::Io(_)
            | ClientError::ChecksumMismatch { .. }
            | ClientError::NoLiveReplica { .. }
            | ClientError::Protocol(_) => ErrorKind::Io,
        }
    }

    /// A `Status` error with the given kind and message (for callers building their own errors).
    pub fn status(kind: ErrorKind, message: impl Into<String>) -> ClientError {
        ClientError::Status {
            kind,
            message: message.into(),
        }
    }

    /// Converts a Status from a server. Messages of ringfs servers are kept as they are; transport
    /// failures (no ringfs error kind set) get `context` (e.g. "namenode 127.0.0.1:8020") in front.
    pub(crate) fn from_status(status: tonic::Status, context: &str) -> ClientError {
        let kind = ErrorKind::of(&status);
        let is_ringfs = status.metadata().get("ringfs-error").is_some();
        let message = if is_ringfs {
            status.message().to_string()
        } else if status.code() == tonic::Code::Unimplemented {
            // Something else listens there (a datanode given as the namenode, a web server: HTTP
            // 404 arrives as Unimplemented); its own message is empty or about HTTP.
            let detail = match status.message() {
                "" => String::new(),
                m => format!(" ({m})"),
            };
            format!("{context}: the server there does not answer this ringfs call; is the address right?{detail}")
        } else {
            let mut m = format!("{context}: {}", status.message());
            let mut src = std::error::Error::source(&status);
            while let Some(e) = src {
                let s = e.to_string();
                if !m.contains(&s) {
                    m.push_str(": ");
                    m.push_str(&s);
                }
                src = e.source();
            }
            m
        };
        ClientError::Status { kind, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ringfs_status_keeps_message_and_kind() {
        let st =
            ringfs_proto::error_kind::status(ErrorKind::NotADirectory, "/a/b: not a directory");
        let e = ClientError::from_status(st, "namenode x");
        assert_eq!(e.kind(), ErrorKind::NotADirectory);
        assert_eq!(e.to_string(), "/a/b: not a directory");
        let plain = ClientError::from_status(
            tonic::Status::unavailable("connection refused"),
            "namenode 1.2.3.4:5",
        );
        assert_eq!(plain.to_string(), "namenode 1.2.3.4:5: connection refused");
        let elsewhere =
            ClientError::from_status(tonic::Status::unimplemented(""), "namenode 1.2.3.4:5");
        assert_eq!(
            elsewhere.to_string(),
            "namenode 1.2.3.4:5: the server there does not answer this ringfs call; is the address right?"
        );
        let two = |retiring| ClientError::NotEnoughDatanodes {
            need: 3,
            have: 2,
            retiring,
        };
        assert_eq!(
            two(0).to_string(),
            "not enough live datanodes: need 3, have 2"
        );
        assert_eq!(
            two(1).to_string(),
            "not enough live datanodes: need 3, have 2 (1 more decommissioning or \
             decommissioned, taking no new blocks)"
        );
        assert_eq!(two(0).kind(), ErrorKind::NoSpace);
    }
}
