//! Registration, heartbeats and block reports: keeps the namenode's view of this node current and
//! carries its commands back. Never gives up: while the namenode is down it retries with backoff.

use crate::commands::CommandRunner;
use crate::namenode_link::{report, Pending};
use crate::Node;
use ringfs_proto::pb::{
    BlockReportRequest, DatanodeInfo, HeartbeatRequest, RegisterRequest, ReplicaReport,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::Code;

const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(3);
const DEFAULT_BLOCK_REPORT: Duration = Duration::from_secs(3600);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The heartbeat loop of one datanode.
pub struct Heartbeat {
    node: Arc<Node>,
    commands: CommandRunner,
}

struct Intervals {
    heartbeat: Duration,
    block_report: Duration,
}

/// Why the inner loop stopped.
enum Stop {
    Shutdown,
    Reregister,
}

impl Heartbeat {
    pub fn new(node: Arc<Node>, commands: CommandRunner) -> Heartbeat {
        Heartbeat { node, commands }
    }

    /// Registers, reports, heartbeats until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let attempt = async {
                let iv = self.register().await?;
                self.full_report().await?;
                Ok::<_, tonic::Status>(iv)
            };
            let iv = match attempt.await {
                Ok(iv) => iv,
                Err(s) => {
                    let mut error = ringfs_proto::error_kind::error_chain(&s);
                    if s.code() == tonic::Code::Unimplemented {
                        error = format!(
                            "the server there is not a ringfs namenode ({error}): is --namenode \
                             the namenode's address?"
                        );
                    }
                    if let Some(hint) = ringfs_proto::tls::mismatch_hint(&error) {
                        error = format!("{error} ({hint})");
                    }
                    tracing::warn!(namenode = %self.node.namenode.addr(), %error, retry_in = ?backoff,
                        "cannot register with the namenode");
                    if sleep_or_shutdown(backoff, &mut shutdown).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            match self.beat(iv, &mut shutdown).await {
                Stop::Shutdown => return,
                Stop::Reregister => continue,
            }
        }
    }

    async fn register(&self) -> Result<Intervals, tonic::Status> {
        let node = &self.node;
        let (capacity, used, remaining) = node.space();
        let id = node.namenode.datanode_id().to_string();
        let joined = node
            .store
            .cluster_id()
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        let req = RegisterRequest {
            node: Some(DatanodeInfo {
                id: id.clone(),
                address: node.address.clone(),
                rack: node.rack.clone(),
            }),
            capacity,
            used,
            auth: node.secret.node_auth(&id),
            cluster_id: joined.clone().unwrap_or_default(),
            remaining: Some(remaining),
        };
        let resp = node.namenode.client().register(req).await?.into_inner();
        // The first namenode this data dir registers with is its cluster for good; any other
        // refuses it from now on (the namenode checks).
        if joined.is_none() && !resp.cluster_id.is_empty() {
            node.store
                .set_cluster_id(&resp.cluster_id)
                .map_err(|e| tonic::Status::internal(e.to_string()))?;
            tracing::info!(cluster = %resp.cluster_id, "joined the cluster");
        }
        let ms = |v: u64, d: Duration| if v == 0 { d } else { Duration::from_millis(v) };
        let iv = Intervals {
            heartbeat: ms(resp.heartbeat_interval_ms, DEFAULT_HEARTBEAT),
            block_report: ms(resp.block_report_interval_ms, DEFAULT_BLOCK_REPORT),
        };
        tracing::info!(namenode = %node.namenode.addr(), id = %id, address = %node.address, heartbeat = ?iv.heartbeat,
            "registered with the namenode");
        Ok(iv)
    }

    /// Sends every finalized replica; queued incremental reports are covered by it.
    async fn full_report(&self) -> Result<(), tonic::Status> {
        let node = &self.node;
        let pending = node.namenode.take_pending();
        let corrupt = node.store.corrupt_replicas();
        let req = BlockReportRequest {
            datanode_id: node.namenode.datanode_id().to_string(),
            replicas: node
                .store
                .replicas()
                .into_iter()
                .map(|r| ReplicaReport {
                    corrupt: corrupt.contains(&(r.block, r.generation)),
                    ..report(r)
                })
                .collect(),
        };
        let n = req.replicas.len();
        match node.namenode.client().block_report(req).await {
            Ok(resp) => {
                // The report covers received and deleted replicas, not checks asked for.
                node.namenode.requeue(Pending {
                    verified: pending.verified,
                    ..Pending::default()
                });
                tracing::debug!(replicas = n, "full block report sent");
                self.commands.execute(resp.into_inner().commands);
                Ok(())
            }
            Err(s) => {
                node.namenode.requeue(pending);
                Err(s)
            }
        }
    }

    async fn beat(&self, iv: Intervals, shutdown: &mut watch::Receiver<bool>) -> Stop {
        let node = &self.node;
        let mut next_report = Instant::now() + iv.block_report;
        let mut failures = 0u32;
        loop {
            let pause = if failures == 0 {
                iv.heartbeat
            } else {
                (iv.heartbeat * failures).min(MAX_BACKOFF)
            };
            if sleep_or_shutdown(pause, shutdown).await {
                return Stop::Shutdown;
            }
            if let Err(s) = node.namenode.flush().await {
                tracing::debug!(error = %s.message(), "incremental block report not delivered yet");
            }
            let (capacity, used, remaining) = node.space();
            let req = HeartbeatRequest {
                datanode_id: node.namenode.datanode_id().to_string(),
                capacity,
                used,
                remaining,
                active_transfers: node.active_transfers(),
                blocks: node.store.len() as u64,
            };
            match node.namenode.client().heartbeat(req).await {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    if failures > 0 {
                        tracing::info!(namenode = %node.namenode.addr(), "namenode reachable again");
                    }
                    failures = 0;
                    if resp.reregister {
                        tracing::info!("namenode asked to re-register");
                        return Stop::Reregister;
                    }
                    if resp.decommissioned {
                        tracing::info!("this datanode is decommissioned; it can be stopped");
                    }
                    self.commands.execute(resp.commands);
                }
                Err(s)
                    if matches!(
                        s.code(),
                        Code::NotFound | Code::FailedPrecondition | Code::PermissionDenied
                    ) =>
                {
                    tracing::info!(error = %s.message(), "namenode does not know this datanode; re-registering");
                    return Stop::Reregister;
                }
                Err(s) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(20) {
                        tracing::warn!(namenode = %node.namenode.addr(), error = %s.message(), failures, "heartbeat failed");
                    }
                    continue;
                }
            }
            if Instant::now() >= next_report {
                if let Err(s) = self.full_report().await {
                    tracing::warn!(error = %s.message(), "block report failed");
                } else {
                    next_report = Instant::now() + iv.block_report;
                }
            }
        }
    }
}

/// Sleeps for `d`; true when shutdown was signalled instead.
pub(crate) async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => *shutdown.borrow(),
        r = shutdown.changed() => r.is_err() || *shutdown.borrow(),
    }
}
