//! Background re-verification of every finalized replica at a limited rate, so corruption is found
//! (and reported, so the namenode replaces the replica) even when nobody reads the data.

use crate::block_store::ReadPath;
use crate::error::DatanodeError;
use crate::heartbeat::sleep_or_shutdown;
use crate::throttle::Throttle;
use crate::transfer::blocking;
use crate::Node;
use ringfs_proto::chunk::CHUNKS_PER_PACKET;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The scrubber of one datanode: a full pass, then a pause of `interval`, forever.
pub struct Scrubber {
    node: Arc<Node>,
    interval: Duration,
    throttle: Throttle,
}

/// What a pass found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PassStats {
    pub replicas: u64,
    pub bytes: u64,
    pub corrupt: u64,
}

impl Scrubber {
    pub fn new(node: Arc<Node>, interval: Duration, bandwidth: u64) -> Scrubber {
        Scrubber {
            node,
            interval,
            throttle: Throttle::new(bandwidth),
        }
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if sleep_or_shutdown(self.interval, &mut shutdown).await {
                return;
            }
            let Some(stats) = self.pass(&mut shutdown).await else {
                return;
            };
            tracing::info!(
                replicas = stats.replicas,
                bytes = stats.bytes,
                corrupt = stats.corrupt,
                "scrub pass done"
            );
            let store = self.node.store.clone();
            match blocking(move || store.sweep_tmp()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, "removed abandoned files from tmp/"),
                Err(e) => tracing::warn!(error = %e, "tidying tmp/ failed"),
            }
        }
    }

    /// Verifies every finalized replica once; `None` when shutdown interrupted it.
    pub async fn pass(&self, shutdown: &mut watch::Receiver<bool>) -> Option<PassStats> {
        let mut stats = PassStats::default();
        for r in self.node.store.replicas() {
            if *shutdown.borrow() {
                return None;
            }
            match check_replica(&self.node, r.block, r.generation, &self.throttle, shutdown).await {
                Check::Good { bytes } => {
                    stats.replicas += 1;
                    stats.bytes += bytes;
                    self.node.replica_is_good(r.block, r.generation, false);
                }
                Check::Corrupt { bytes } => {
                    stats.replicas += 1;
                    stats.bytes += bytes;
                    stats.corrupt += 1;
                }
                Check::Unreadable => stats.replicas += 1,
                Check::Gone => {}
                Check::Interrupted => return None,
            }
        }
        Some(stats)
    }
}

/// What [`check_replica`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// Every chunk matched its hash (`bytes` read).
    Good { bytes: u64 },
    /// A chunk did not, or the replica's files cannot be opened; reported to the namenode.
    Corrupt { bytes: u64 },
    /// Not here (deleted meanwhile, or a newer generation replaced it).
    Gone,
    /// A read failed for another reason (e.g. an I/O error): nothing is concluded.
    Unreadable,
    /// Shutdown came first.
    Interrupted,
}

/// Reads the whole replica and checks each chunk against its hash, at the pace `throttle`
/// allows; a bad replica is reported to the namenode (the scrubber, and the namenode's
/// VerifyCommand, both end here).
pub(crate) async fn check_replica(
    node: &Arc<Node>,
    block: u64,
    generation: u64,
    throttle: &Throttle,
    shutdown: &mut watch::Receiver<bool>,
) -> Check {
    let store = node.store.clone();
    let open = move || store.open_reader(block, generation, ReadPath::Disk);
    let reader = match blocking(open).await {
        Ok(reader) => Arc::new(reader),
        Err(DatanodeError::ReplicaNotFound { .. } | DatanodeError::StaleGeneration { .. }) => {
            return Check::Gone
        }
        Err(e) => {
            tracing::warn!(block, error = %e, "cannot open replica to check it");
            node.replica_is_corrupt(
                &tokio::runtime::Handle::current(),
                block,
                generation,
                e.to_string(),
            );
            return Check::Corrupt { bytes: 0 };
        }
    };
    let mut bytes = 0;
    let mut c = 0;
    while c < reader.chunks() {
        let rd = reader.clone();
        match blocking(move || rd.read_chunks(c, CHUNKS_PER_PACKET)).await {
            Ok((data, _)) => {
                bytes += data.len() as u64;
                tokio::select! {
                    _ = throttle.consume(data.len() as u64) => {}
                    _ = shutdown.changed() => return Check::Interrupted,
                }
            }
            Err(e) => {
                tracing::warn!(block, generation, error = %e, "found a bad replica");
                if matches!(e, DatanodeError::ChecksumMismatch { .. }) {
                    node.replica_is_corrupt(
                        &tokio::runtime::Handle::current(),
                        block,
                        generation,
                        e.to_string(),
                    );
                    return Check::Corrupt { bytes };
                }
                return Check::Unreadable;
            }
        }
        c += CHUNKS_PER_PACKET as u64;
    }
    Check::Good { bytes }
}
