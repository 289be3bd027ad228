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

    /// Queues a received replica; an older "deleted" of the same replica is superseded (the
    /// namenode applies a batch's received before its deleted, which would lose this one).
    fn push_received(&mut self, r: ReplicaReport) {
        self.deleted.retain(|d| !same_replica(d, &r));
        self.received.push(r);
    }

    /// Queues a deleted replica; an older "received" of the same replica is superseded.
    fn push_deleted(&mut self, r: ReplicaReport) {
        self.received.retain(|d| !same_replica(d, &r));
        self.deleted.push(r);
    }
}

fn same_replica(a: &ReplicaReport, b: &ReplicaReport) -> bool {
    (a.block_id, a.generation) == (b.block_id, b.generation)
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
        // Reports queued before this one go first: a delete of this very replica (an earlier
        // generation of its life here), sent after it, made the namenode forget a replica that
        // is on disk until the next full block report (QA).
        if !self.pending().is_empty() {
            if let Err(status) = self.flush_within(Some(RECEIVED_TIMEOUT)).await {
                tracing::debug!(namenode = %self.addr, error = %status.message(), "queued reports not delivered");
                self.pending().push_received(report(r));
                return;
            }
        }
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
            self.pending().push_received(report(r));
        }
    }

    /// Queues a deleted replica for the next heartbeat.
    pub fn deleted(&self, block: u64, generation: u64) {
        self.pending().push_deleted(ReplicaReport {
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
        // `p` is older than what was queued meanwhile: queue it first, then the newer again.
        let mut q = self.pending();
        let newer = std::mem::replace(&mut *q, p);
        for r in newer.received {
            q.push_received(r);
        }
        for r in newer.deleted {
            q.push_deleted(r);
        }
        q.verified.extend(newer.verified);
    }

    /// Sends queued incremental reports.
    pub async fn flush(&self) -> Result<(), tonic::Status> {
        self.flush_within(None).await
    }

    async fn flush_within(&self, timeout: Option<Duration>) -> Result<(), tonic::Status> {
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
        let mut request = tonic::Request::new(req);
        if let Some(t) = timeout {
            request.set_timeout(t);
        }
        match self.client().block_received(request).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(block_id: u64, generation: u64) -> ReplicaReport {
        ReplicaReport {
            block_id,
            generation,
            ..ReplicaReport::default()
        }
    }

    fn keys(list: &[ReplicaReport]) -> Vec<(u64, u64)> {
        list.iter().map(|r| (r.block_id, r.generation)).collect()
    }

    #[test]
    fn a_queued_report_is_superseded_by_a_later_one_of_the_same_replica() {
        let mut p = Pending::default();
        p.push_deleted(replica(7, 3));
        p.push_deleted(replica(8, 1));
        p.push_received(replica(7, 3));
        assert_eq!(keys(&p.received), [(7, 3)]);
        assert_eq!(keys(&p.deleted), [(8, 1)]);
        p.push_deleted(replica(7, 3));
        assert!(p.received.is_empty());
        assert_eq!(keys(&p.deleted), [(8, 1), (7, 3)]);
        // Another generation is another replica.
        p.push_received(replica(7, 4));
        assert_eq!(keys(&p.deleted), [(8, 1), (7, 3)]);
    }

    #[tokio::test]
    async fn reports_put_back_after_a_failed_send_are_older_than_those_queued_meanwhile() {
        let link = NamenodeLink::new("127.0.0.1:1", "dn").unwrap();
        link.deleted(7, 3);
        let sent = link.take_pending();
        // While that send failed, the replica came back (a copy of the block landed again).
        link.pending().push_received(replica(7, 3));
        link.requeue(sent);
        let p = link.take_pending();
        assert_eq!(keys(&p.received), [(7, 3)]);
        assert!(p.deleted.is_empty(), "{:?}", keys(&p.deleted));
    }
}
