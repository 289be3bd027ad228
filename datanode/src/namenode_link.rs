//! The datanode's side of DatanodeProtocol: one lazily connected client to the namenode, and the
//! queue of incremental reports (received/deleted replicas) that could not be delivered yet.

use crate::block_store::ReplicaInfo;
use ringfs_proto::pb::datanode_protocol_client::DatanodeProtocolClient;
use ringfs_proto::pb::{BlockReceivedRequest, ReplicaReport, ReportBadReplicaRequest};
use std::sync::Mutex;
use std::time::Duration;
use tonic::transport::Channel;

/// How long a synchronous BlockReceived may take before the write answers without it.
const RECEIVED_TIMEOUT: Duration = Duration::from_secs(5);

pub struct NamenodeLink {
    addr: String,
    datanode_id: String,
    client: DatanodeProtocolClient<Channel>,
    /// Reports that failed to reach the namenode; sent before the next heartbeat. Guarded because
    /// writes, deletes and the heartbeat loop all touch it.
    pending: Mutex<Pending>,
}

#[derive(Default)]
pub struct Pending {
    pub received: Vec<ReplicaReport>,
    pub deleted: Vec<ReplicaReport>,
    /// Replicas a VerifyCommand found good.
    pub verified: Vec<ReplicaReport>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.received.is_empty() && self.deleted.is_empty() && self.verified.is_empty()
    }
}

pub fn report(r: ReplicaInfo) -> ReplicaReport {
    ReplicaReport {
        block_id: r.block,
        generation: r.generation,
        len: r.len,
        corrupt: false,
    }
}

impl NamenodeLink {
    pub fn new(addr: &str, datanode_id: &str) -> Result<NamenodeLink, String> {
        let ch = ringfs_proto::net::connect_lazy(addr)
            .map_err(|e| format!("namenode address {addr:?}: {e}"))?;
        Ok(NamenodeLink {
            addr: addr.to_string(),
            datanode_id: datanode_id.to_string(),
            client: ringfs_proto::net::datanode_protocol_client(ch),
            pending: Mutex::new(Pending::default()),
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn datanode_id(&self) -> &str {
        &self.datanode_id
    }

    /// A client for one call (clones share the connection).
    pub fn client(&self) -> DatanodeProtocolClient<Channel> {
        self.client.clone()
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the namenode a replica was finalized, now: a client's write returns only after this, so
    /// the namenode knows every replica when `put` returns. If the namenode cannot be reached the
    /// report is queued for the heartbeat loop (and the next full block report covers it anyway):
    /// the replica is durable here, so the write itself does not fail.
    pub async fn block_received(&self, r: ReplicaInfo) {
        let req = BlockReceivedRequest {
            datanode_id: self.datanode_id.clone(),
            received: vec![report(r)],
            ..Default::default()
        };
        let mut request = tonic::Request::new(req);
        request.set_timeout(RECEIVED_TIMEOUT);
        if let Err(status) = self.client().block_received(request).await {
            tracing::warn!(namenode = %self.addr, block = r.block, generation = r.generation, error = %status.message(),
                "BlockReceived failed; queued for the next heartbeat");
            self.pending().received.push(report(r));
        }
    }

    /// Queues a deleted replica for the next heartbeat.
    pub fn deleted(&self, block: u64, generation: u64) {
        self.pending().deleted.push(ReplicaReport {
            block_id: block,
            generation,
            ..ReplicaReport::default()
        });
    }

    /// Queues a replica the namenode asked about and this node found good, for the next heartbeat.
    pub fn verified(&self, block: u64, generation: u64) {
        self.pending().verified.push(ReplicaReport {
            block_id: block,
            generation,
            ..ReplicaReport::default()
        });
    }

    /// Takes everything queued (the caller sends it or puts it back with [`requeue`](Self::requeue)).
    pub fn take_pending(&self) -> Pending {
        std::mem::take(&mut *self.pending())
    }

    pub fn requeue(&self, p: Pending) {
        let mut q = self.pending();
        q.received.extend(p.received);
        q.deleted.extend(p.deleted);
        q.verified.extend(p.verified);
    }

    /// Sends queued incremental reports.
    pub async fn flush(&self) -> Result<(), tonic::Status> {
        let p = self.take_pending();
        if p.is_empty() {
            return Ok(());
        }
        let req = BlockReceivedRequest {
            datanode_id: self.datanode_id.clone(),
            received: p.received.clone(),
            deleted: p.deleted.clone(),
            verified: p.verified.clone(),
        };
        match self.client().block_received(req).await {
            Ok(_) => Ok(()),
            Err(s) => {
                self.requeue(p);
                Err(s)
            }
        }
    }

    /// Reports a corrupt replica on this node (retried a few times; the scrubber finds it again
    /// on its next pass if every attempt fails).
    pub async fn report_bad_replica(
        &self,
        block: u64,
        generation: u64,
        self_addr: &str,
        reason: String,
    ) {
        let req = ReportBadReplicaRequest {
            block_id: block,
            generation,
            datanode: self_addr.to_string(),
            reason,
        };
        let mut delay = Duration::from_millis(200);
        for attempt in 0..5 {
            match self.client().report_bad_replica(req.clone()).await {
                Ok(_) => {
                    tracing::info!(block, generation, "reported bad replica to the namenode");
                    return;
                }
                Err(s) => {
                    tracing::warn!(block, generation, attempt, namenode = %self.addr, error = %s.message(),
                        "ReportBadReplica failed");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
}
