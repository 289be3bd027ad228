//! The datanode-facing `DatanodeProtocol` gRPC service: registration (authenticated with the cluster
//! secret), heartbeats that carry commands back, full and incremental block reports, bad replicas.

use super::{encode_command, Shared};
use crate::block_map::ReplicaVerdict;
use crate::datanodes::{AdminState, Command, HeartbeatStats};
use crate::error::{NamenodeError, Result};
use ringfs_proto::pb::{self, datanode_protocol_server::DatanodeProtocol};
use ringfs_proto::{BlockId, DatanodeId};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// Most commands one heartbeat reply carries.
const MAX_COMMANDS_PER_HEARTBEAT: usize = 10_000;

/// The `DatanodeProtocol` service.
#[derive(Clone)]
pub struct DatanodeService {
    pub shared: Arc<Shared>,
}

fn datanode_id(s: &str) -> Result<DatanodeId> {
    DatanodeId::try_from(s.to_string())
        .map_err(|_| NamenodeError::InvalidArgument(format!("invalid datanode id {s:?}")))
}

fn unknown(id: &DatanodeId) -> NamenodeError {
    NamenodeError::FailedPrecondition(format!(
        "datanode {id} is not registered (or was declared dead): register again"
    ))
}

impl DatanodeService {
    fn do_register(&self, req: pb::RegisterRequest) -> Result<pb::RegisterResponse> {
        let (resp, membership_changed) = self.register_node(req)?;
        if membership_changed {
            // A failed save costs only the listing of nodes that stay down after a restart.
            if let Err(e) = self.shared.save_known_datanodes() {
                tracing::error!(error = %e, "known datanodes not saved");
            }
        }
        Ok(resp)
    }

    /// Registers the node; also says whether what a restart must remember of the registered
    /// nodes changed (a new id, a new address, rack or capacity, a displaced id).
    fn register_node(&self, req: pb::RegisterRequest) -> Result<(pb::RegisterResponse, bool)> {
        let node = req
            .node
            .ok_or_else(|| NamenodeError::InvalidArgument("register: no node info".into()))?;
        let id = datanode_id(&node.id)?;
        if !self.shared.secret.check_node_auth(&node.id, &req.auth) {
            tracing::warn!(datanode = %id, address = %node.address, "registration refused: bad cluster secret");
            return Err(NamenodeError::PermissionDenied(format!(
                "datanode {id}: wrong cluster secret"
            )));
        }
        let cluster = format!("{:016x}", self.shared.journal.cluster_id());
        if !req.cluster_id.is_empty() && req.cluster_id != cluster {
            tracing::warn!(datanode = %id, address = %node.address, its_cluster = %req.cluster_id, %cluster,
                "registration refused: the datanode's data dir belongs to another cluster");
            return Err(NamenodeError::FailedPrecondition(format!(
                "datanode {id} at {}: its data dir belongs to cluster {}, this namenode's cluster \
                 is {cluster} (a datanode of another cluster, or this namenode runs on another \
                 data dir than before); start the datanode on an empty data dir to join this one",
                node.address, req.cluster_id
            )));
        }
        if node.address.parse::<std::net::SocketAddr>().is_err() && !node.address.contains(':') {
            return Err(NamenodeError::InvalidArgument(format!(
                "datanode {id}: address {:?} is not host:port",
                node.address
            )));
        }
        let mut st = self.shared.lock();
        let st = &mut *st;
        // The same id from another address while the first one still heartbeats: a copy of a
        // data dir (HDFS refuses a duplicate storage id likewise). Taking it in would merge two
        // nodes into one entry and hide either one's death. A node restarted on a new port is
        // taken once its old entry has missed a few heartbeats.
        let now = Instant::now();
        let heartbeating = |n: &crate::datanodes::Datanode| {
            n.alive
                && now.saturating_duration_since(n.last_heartbeat)
                    < self.shared.config.heartbeat_interval * 3
        };
        if let Some(n) = st.nodes.get(&id) {
            if heartbeating(n) && n.address != node.address {
                tracing::warn!(datanode = %id, address = %node.address, registered = %n.address,
                    "registration refused: the datanode id is in use at another address");
                return Err(NamenodeError::FailedPrecondition(format!(
                    "datanode {id} at {}: that datanode id is in use by {} (is its data dir a \
                     copy of another datanode's? start a new datanode on an empty dir)",
                    node.address, n.address
                )));
            }
        }
        // Another id at this address that still heartbeats: two datanodes advertise the same
        // address (a copy of a config). Taking this one would drop the other's replicas, and the
        // other would do the same on its next heartbeat, every second. A reinstalled node (new
        // id, same address) is taken once the old entry has missed a few heartbeats.
        if let Some(other) = st.nodes.by_address(&node.address) {
            if heartbeating(other) && other.id != id {
                tracing::warn!(datanode = %id, address = %node.address, registered = %other.id,
                    "registration refused: the address is in use by another live datanode");
                return Err(NamenodeError::FailedPrecondition(format!(
                    "datanode {id}: address {} is in use by live datanode {} (give each datanode \
                     its own --listen/--advertise address)",
                    node.address, other.id
                )));
            }
        }
        let before = st
            .nodes
            .get(&id)
            .map(|n| (n.address.clone(), n.rack.clone(), n.capacity));
        let reg = st.nodes.register(
            id.clone(),
            node.address.clone(),
            node.rack.clone(),
            req.capacity,
            req.used,
            now,
        );
        let membership_changed = !reg.displaced.is_empty()
            || before != Some((node.address.clone(), node.rack.clone(), req.capacity));
        if let Some(remaining) = req.remaining {
            st.nodes.set_remaining(&id, remaining);
        }
        // Whatever it held before is unknown until its full report.
        if reg.revived {
            st.blocks.remove_node(&id);
            st.in_flight.drop_node(&id);
        }
        for old in &reg.displaced {
            st.blocks.remove_node(old);
            st.in_flight.drop_node(old);
            tracing::warn!(datanode = %id, replaced = %old, address = %node.address,
                "address taken over by a new datanode id (reinstalled): the old id is dropped");
        }
        tracing::info!(datanode = %id, address = %node.address, rack = %node.rack, capacity = req.capacity,
            new = reg.new, "datanode registered");
        let cfg = &self.shared.config;
        let resp = pb::RegisterResponse {
            heartbeat_interval_ms: cfg.heartbeat_interval.as_millis() as u64,
            block_report_interval_ms: cfg.block_report_interval.as_millis() as u64,
            cluster_id: cluster,
        };
        Ok((resp, membership_changed))
    }

    fn do_heartbeat(&self, req: pb::HeartbeatRequest) -> Result<pb::HeartbeatResponse> {
        let id = datanode_id(&req.datanode_id)?;
        let stats = HeartbeatStats {
            capacity: req.capacity,
            used: req.used,
            remaining: req.remaining,
            active_transfers: req.active_transfers,
            blocks: req.blocks,
        };
        let now = Instant::now();
        let mut st = self.shared.lock();
        let st = &mut *st;
        let Some(cmds) = st
            .nodes
            .heartbeat(&id, stats, now, MAX_COMMANDS_PER_HEARTBEAT)
        else {
            return Ok(pb::HeartbeatResponse {
                reregister: true,
                ..Default::default()
            });
        };
        let decommissioned = st
            .nodes
            .get(&id)
            .is_some_and(|n| n.admin == AdminState::Decommissioned);
        // Nothing running on the node: copies handed to it a while ago ended without their target
        // reporting the block, so they failed (datanodes do not report failed copies).
        if req.active_transfers == 0 {
            let grace = (self.shared.config.heartbeat_interval * 3).max(Duration::from_millis(500));
            if let Some(before) = now.checked_sub(grace) {
                for c in st.in_flight.source_idle(&id, before, now) {
                    tracing::warn!(block = %c.block, source = %c.source, target = %c.target,
                        "copy failed (source idle, target did not report the block): planning it again");
                }
            }
        }
        for c in &cmds {
            if let Command::Replicate { block, targets, .. } = c {
                for t in targets {
                    st.in_flight.mark_delivered(*block, t, now);
                }
            }
        }
        let commands = cmds
            .into_iter()
            .map(|c| encode_command(&self.shared, &st.nodes, c))
            .collect();
        Ok(pb::HeartbeatResponse {
            commands,
            reregister: false,
            decommissioned,
        })
    }

    fn do_block_report(&self, req: pb::BlockReportRequest) -> Result<pb::BlockReportResponse> {
        let id = datanode_id(&req.datanode_id)?;
        let mut st = self.shared.lock();
        let st = &mut *st;
        if !st.nodes.is_alive(&id) {
            return Err(unknown(&id));
        }
        let reported = req.replicas.len();
        let verdicts = st.blocks.full_report(
            &id,
            req.replicas
                .iter()
                .map(|r| (BlockId(r.block_id), r.generation, r.len)),
        );
        for r in &req.replicas {
            st.in_flight.complete(BlockId(r.block_id), &id);
        }
        st.nodes.mark_reported(&id);
        let mut commands = Vec::new();
        let mut deleted = 0;
        for (block, generation, _) in verdicts {
            deleted += 1;
            commands.push(encode_command(
                &self.shared,
                &st.nodes,
                Command::Delete { block, generation },
            ));
        }
        // Corrupt marks outlive reports (the node may not know its replica is bad), but a replica
        // restored by hand, or wrongly reported by a reader, must not stay "corrupt" for good:
        // the node checks each one now and says which are good. Replicas the node itself found
        // corrupt are marked (a restarted namenode lost its marks and counted them as good).
        let found_bad: std::collections::HashSet<(BlockId, u64)> = req
            .replicas
            .iter()
            .filter(|r| r.corrupt)
            .map(|r| (BlockId(r.block_id), r.generation))
            .collect();
        let suspect: Vec<(BlockId, u64)> = st
            .blocks
            .corrupt_on(&id)
            .into_iter()
            .filter(|r| !found_bad.contains(r))
            .collect();
        for &(block, generation) in &found_bad {
            if st.blocks.mark_corrupt(&id, block, generation) {
                tracing::warn!(datanode = %id, %block, generation, "block report: the node holds this replica corrupt");
            }
        }
        for &(block, generation) in &suspect {
            commands.push(encode_command(
                &self.shared,
                &st.nodes,
                Command::Verify { block, generation },
            ));
        }
        let unclaimed = st.blocks.unclaimed_count();
        tracing::info!(datanode = %id, replicas = reported, deleted, unclaimed, verify = suspect.len(), "block report");
        Ok(pb::BlockReportResponse { commands })
    }

    fn do_block_received(&self, req: pb::BlockReceivedRequest) -> Result<()> {
        let id = datanode_id(&req.datanode_id)?;
        let mut st = self.shared.lock();
        let st = &mut *st;
        if !st.nodes.is_alive(&id) {
            return Err(unknown(&id));
        }
        for r in &req.received {
            let block = BlockId(r.block_id);
            match st.blocks.add_replica(&id, block, r.generation, r.len) {
                ReplicaVerdict::Accepted => {
                    if st.in_flight.complete(block, &id) {
                        tracing::debug!(datanode = %id, %block, "copy done");
                    }
                }
                ReplicaVerdict::Unclaimed => {
                    tracing::info!(datanode = %id, %block, generation = r.generation, "replica of a block not known (yet): held until committed or expired");
                }
                verdict => {
                    tracing::info!(datanode = %id, %block, generation = r.generation, ?verdict, "received replica not wanted: deleting");
                    st.nodes.queue(
                        &id,
                        Command::Delete {
                            block,
                            generation: r.generation,
                        },
                    );
                }
            }
        }
        for r in &req.deleted {
            st.blocks.deleted(&id, BlockId(r.block_id), r.generation);
        }
        for r in &req.verified {
            if st
                .blocks
                .clear_corrupt(&id, BlockId(r.block_id), r.generation)
            {
                tracing::info!(datanode = %id, block = r.block_id, generation = r.generation,
                    "replica held corrupt was checked and found good: it counts again");
            }
        }
        Ok(())
    }
}

fn ok<T>(r: Result<T>) -> std::result::Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl DatanodeProtocol for DatanodeService {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> std::result::Result<Response<pb::RegisterResponse>, Status> {
        ok(self.do_register(req.into_inner()))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> std::result::Result<Response<pb::HeartbeatResponse>, Status> {
        ok(self.do_heartbeat(req.into_inner()))
    }

    async fn block_report(
        &self,
        req: Request<pb::BlockReportRequest>,
    ) -> std::result::Result<Response<pb::BlockReportResponse>, Status> {
        ok(self.do_block_report(req.into_inner()))
    }

    async fn block_received(
        &self,
        req: Request<pb::BlockReceivedRequest>,
    ) -> std::result::Result<Response<pb::Empty>, Status> {
        ok(self
            .do_block_received(req.into_inner())
            .map(|_| pb::Empty {}))
    }

    async fn report_bad_replica(
        &self,
        req: Request<pb::ReportBadReplicaRequest>,
    ) -> std::result::Result<Response<pb::Empty>, Status> {
        // The node checked the replica itself: nothing to ask it again.
        super::client::report_bad_replica(&self.shared, &req.into_inner(), false);
        Ok(Response::new(pb::Empty {}))
    }
}
