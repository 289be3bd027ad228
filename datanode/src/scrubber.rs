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
            let store = self.node.store.clone();
            let (block, generation) = (r.block, r.generation);
            let open = move || store.open_reader(block, generation, ReadPath::Disk);
            let reader = match blocking(open).await {
                Ok(reader) => Arc::new(reader),
                Err(
                    DatanodeError::ReplicaNotFound { .. } | DatanodeError::StaleGeneration { .. },
                ) => continue,
                Err(e) => {
                    tracing::warn!(block = r.block, error = %e, "scrubber cannot open replica");
                    self.node.replica_is_corrupt(
                        &tokio::runtime::Handle::current(),
                        r.block,
                        r.generation,
                        e.to_string(),
                    );
                    stats.corrupt += 1;
                    continue;
                }
            };
            stats.replicas += 1;
            let mut c = 0;
            while c < reader.chunks() {
                let rd = reader.clone();
                match blocking(move || rd.read_chunks(c, CHUNKS_PER_PACKET)).await {
                    Ok((data, _)) => {
                        stats.bytes += data.len() as u64;
                        tokio::select! {
                            _ = self.throttle.consume(data.len() as u64) => {}
                            _ = shutdown.changed() => return None,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(block = r.block, generation = r.generation, error = %e, "scrubber found a bad replica");
                        if matches!(e, DatanodeError::ChecksumMismatch { .. }) {
                            self.node.replica_is_corrupt(
                                &tokio::runtime::Handle::current(),
                                r.block,
                                r.generation,
                                e.to_string(),
                            );
                            stats.corrupt += 1;
                        }
                        break;
                    }
                }
                c += CHUNKS_PER_PACKET as u64;
            }
        }
        Some(stats)
    }
}
