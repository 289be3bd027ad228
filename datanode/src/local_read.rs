//! The datanode's end of short-circuit local reads (`ringfs_proto::local_read`): a Unix socket in
//! the abstract namespace, named after the registered address, that hands a client on this host
//! an open descriptor of a finalized replica (after checking its block access token) together
//! with the replica's stored chunk hashes. The client reads and verifies the file itself.
//!
//! Finalized replica files are never changed in place (a new generation is a new file), so a
//! descriptor keeps reading the exact bytes the hashes describe, even after the replica is deleted.
//! Connections are served by plain threads: each is one local process (a mount, a `get`) asking
//! for a descriptor per block, and the answer is a file open plus a 32 KiB meta read.

use crate::block_store::ReadPath;
use crate::error::DatanodeError;
use crate::Node;
use ringfs_proto::local_read::{self, LocalReadRequest, LocalReadResponse};
use ringfs_proto::token::AccessMode;
use std::fs::File;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Connections served at once; more are closed at once (their clients read over gRPC instead).
const MAX_CONNECTIONS: usize = 256;

/// Serves the local-read socket until `stop` turns true. Without the socket (bind refused) the
/// datanode runs on: clients then read everything over gRPC.
pub(crate) async fn serve(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    let listener = match local_read::bind(&node.address).and_then(|l| {
        l.set_nonblocking(true)?;
        tokio::net::UnixListener::from_std(l)
    }) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(address = %node.address, error = %e, "local reads are off: cannot bind their socket");
            return;
        }
    };
    let open = Arc::new(AtomicUsize::new(0));
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = listener.accept() => r,
        };
        let stream = match accepted.and_then(|(s, _)| {
            let s = s.into_std()?;
            s.set_nonblocking(false)?;
            Ok(s)
        }) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a local-read connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!("too many local-read connections; refusing one");
            continue;
        }
        let (node, stop, open) = (node.clone(), stop.clone(), open.clone());
        let spawned = std::thread::Builder::new()
            .name("local-read".into())
            .spawn(move || {
                serve_connection(&node, stream, &stop);
                open.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a local-read thread");
        }
    }
}

/// Answers one client's requests until it hangs up or the datanode stops.
fn serve_connection(node: &Node, mut stream: UnixStream, stop: &watch::Receiver<bool>) {
    loop {
        let req = match local_read::recv::<LocalReadRequest>(&mut stream) {
            Ok(Some((req, _))) => req,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "local-read connection failed");
                return;
            }
        };
        if *stop.borrow() {
            return;
        }
        let (resp, file) = match grant(node, &req) {
            Ok((len, file, hashes)) => (
                LocalReadResponse {
                    datanode: node.address.clone(),
                    error: String::new(),
                    len,
                    chunk_hashes: hashes.concat(),
                },
                Some(file),
            ),
            Err(e) => (
                LocalReadResponse {
                    datanode: node.address.clone(),
                    error: e.to_string(),
                    ..Default::default()
                },
                None,
            ),
        };
        if let Err(e) = local_read::send(&mut stream, &resp, file.as_ref()) {
            tracing::debug!(error = %e, "answering a local read failed");
            return;
        }
    }
}

/// Checks the token and opens the finalized replica: (length, data file, chunk hashes).
fn grant(
    node: &Node,
    req: &LocalReadRequest,
) -> Result<(u64, File, Vec<ringfs_proto::chunk::Hash>), DatanodeError> {
    let (block, generation) = (req.block_id, req.generation);
    node.secret
        .check_block_token(&req.access_token, block, generation, AccessMode::Read)
        .map_err(|source| DatanodeError::Token { block, source })?;
    if node.store.is_corrupt(block, generation) {
        return Err(DatanodeError::InvalidRequest(format!(
            "block {block} gen {generation}: the replica here is known to be corrupt"
        )));
    }
    let reader = node
        .store
        .open_reader(block, generation, ReadPath::PageCache)?;
    let len = reader.info().len;
    let (file, hashes) = reader.into_file();
    Ok((len, file, hashes))
}
