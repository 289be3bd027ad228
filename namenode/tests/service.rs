//! The namenode's gRPC services end to end in-process, with scripted fake datanodes (no block data):
//! the write protocol, block reports, fsck/report, dead-node repair commands, restart durability,
//! safe mode, locks and extended attributes.

use ringfs_namenode::Config;
use ringfs_proto::pb::{
    self, datanode_protocol_client::DatanodeProtocolClient, namenode_client::NamenodeClient,
};
use ringfs_proto::token::{Secret, DEV_SECRET};
use ringfs_proto::ErrorKind;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

struct Namenode {
    addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ringfs_namenode::NamenodeError>>,
}

impl Namenode {
    async fn start(config: Config) -> Namenode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(ringfs_namenode::run(config, listener, async move {
            let _ = rx.await;
        }));
        Namenode {
            addr,
            stop: Some(tx),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.await.unwrap().unwrap();
    }

    fn client(&self) -> NamenodeClient<Channel> {
        ringfs_proto::net::namenode_client(ringfs_proto::net::connect_lazy(&self.addr).unwrap())
    }

    fn dn_client(&self) -> DatanodeProtocolClient<Channel> {
        ringfs_proto::net::datanode_protocol_client(
            ringfs_proto::net::connect_lazy(&self.addr).unwrap(),
        )
    }
}

fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        replication: 3,
        block_size: 1 << 20,
        heartbeat_interval: Duration::from_millis(50),
        dead_after: Duration::from_millis(400),
        safe_mode_extension: Duration::from_millis(100),
        lease_soft_limit: Duration::from_millis(300),
        lease_hard_limit: Duration::from_millis(600),
        ..Config::default()
    }
}

/// A scripted datanode: registers, heartbeats on demand, reports what the test says it holds.
struct FakeDn {
    id: String,
    addr: String,
    nn: DatanodeProtocolClient<Channel>,
}

impl FakeDn {
    async fn register(nn: &Namenode, i: usize) -> FakeDn {
        FakeDn::register_at(nn, i, format!("127.0.0.1:{}", 40000 + i)).await
    }

    async fn register_at(nn: &Namenode, i: usize, addr: String) -> FakeDn {
        FakeDn::register_with(nn, i, addr, None).await
    }

    /// Registers with `remaining` room (None: as a datanode that does not say, capacity - used).
    async fn register_with(
        nn: &Namenode,
        i: usize,
        addr: String,
        remaining: Option<u64>,
    ) -> FakeDn {
        let id = format!("dn{i}");
        let mut c = nn.dn_client();
        let auth = Secret::new(DEV_SECRET.as_bytes()).node_auth(&id);
        c.register(pb::RegisterRequest {
            node: Some(pb::DatanodeInfo {
                id: id.clone(),
                address: addr.clone(),
                rack: String::new(),
            }),
            capacity: 100 << 30,
            used: 0,
            auth,
            cluster_id: String::new(),
            remaining,
        })
        .await
        .unwrap();
        let mut dn = FakeDn { id, addr, nn: c };
        dn.report(&[]).await;
        dn
    }

    async fn heartbeat(&mut self) -> pb::HeartbeatResponse {
        self.nn
            .heartbeat(pb::HeartbeatRequest {
                datanode_id: self.id.clone(),
                capacity: 100 << 30,
                used: 0,
                remaining: 100 << 30,
                // Busy: copies handed out are never taken for failed by an idle source.
                active_transfers: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
    }

    async fn received(&mut self, block: u64, generation: u64, len: u64) {
        self.nn
            .block_received(pb::BlockReceivedRequest {
                datanode_id: self.id.clone(),
                received: vec![pb::ReplicaReport {
                    block_id: block,
                    generation,
                    len,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn report(&mut self, replicas: &[(u64, u64, u64)]) -> pb::BlockReportResponse {
        self.nn
            .block_report(pb::BlockReportRequest {
                datanode_id: self.id.clone(),
                replicas: replicas
                    .iter()
                    .map(|(b, g, l)| pb::ReplicaReport {
                        block_id: *b,
                        generation: *g,
                        len: *l,
                        ..Default::default()
                    })
                    .collect(),
            })
            .await
            .unwrap()
            .into_inner()
    }
}

fn path_entry(p: &str) -> Option<pb::EntryRef> {
    Some(pb::EntryRef {
        target: Some(pb::entry_ref::Target::Path(p.into())),
    })
}

fn path_node(p: &str) -> Option<pb::NodeRef> {
    Some(pb::NodeRef {
        target: Some(pb::node_ref::Target::Path(p.into())),
    })
}

/// A namenode on a fresh temp dir with `datanodes` fake datanodes registered (dn0, dn1, ...), and
/// a client of it. The dir is returned so a test can restart the namenode on it.
async fn start_with(
    datanodes: usize,
) -> (
    tempfile::TempDir,
    Namenode,
    NamenodeClient<Channel>,
    Vec<FakeDn>,
) {
    let dir = tempfile::tempdir().unwrap();
    let nn = Namenode::start(config(dir.path())).await;
    let c = nn.client();
    let mut dns = Vec::new();
    for i in 0..datanodes {
        dns.push(FakeDn::register(&nn, i).await);
    }
    (dir, nn, c, dns)
}

async fn create(nn: &mut NamenodeClient<Channel>, path: &str) -> Result<pb::Attr, tonic::Status> {
    nn.create(pb::CreateRequest {
        entry: path_entry(path),
        mode: 0o644,
        client_id: "c1".into(),
        open_for_write: true,
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().attr.unwrap())
}

/// AllocateBlock for client "c1" on `inode` (nothing excluded, the full replication).
async fn allocate(nn: &mut NamenodeClient<Channel>, inode: u64) -> pb::LocatedBlock {
    nn.allocate_block(pb::AllocateBlockRequest {
        inode,
        client_id: "c1".into(),
        excluded: vec![],
        min_replicas: 0,
    })
    .await
    .unwrap()
    .into_inner()
}

async fn fsck(nn: &mut NamenodeClient<Channel>) -> pb::FsckResponse {
    nn.fsck(pb::FsckRequest {
        path: "/".into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
}

/// Writes a file of `blocks` full blocks through the protocol, with every pipeline node reporting.
async fn write_file(
    nn: &mut NamenodeClient<Channel>,
    dns: &mut [FakeDn],
    path: &str,
    blocks: usize,
) -> Vec<pb::LocatedBlock> {
    let attr = create(nn, path).await.unwrap();
    let mut previous: Option<pb::CommittedBlock> = None;
    let mut out = Vec::new();
    for _ in 0..blocks {
        let lb = nn
            .add_block(pb::AddBlockRequest {
                inode: attr.inode,
                client_id: "c1".into(),
                previous,
                excluded: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        for loc in &lb.locations {
            let dn = dns.iter_mut().find(|d| d.addr == loc.address).unwrap();
            dn.received(lb.id, lb.generation, 1 << 20).await;
        }
        previous = Some(pb::CommittedBlock {
            id: lb.id,
            generation: lb.generation,
            len: 1 << 20,
        });
        out.push(lb);
    }
    let committed: Vec<pb::CommittedBlock> = out
        .iter()
        .map(|b| pb::CommittedBlock {
            id: b.id,
            generation: b.generation,
            len: 1 << 20,
        })
        .collect();
    nn.commit_blocks(pb::CommitBlocksRequest {
        inode: attr.inode,
        client_id: "c1".into(),
        blocks: committed,
        size: (blocks as u64) << 20,
        close: true,
        mtime: None,
        inline_data: None,
    })
    .await
    .unwrap();
    out
}

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn write_protocol_fsck_and_locations() {
    let dir = tempfile::tempdir().unwrap();
    let nn = Namenode::start(config(dir.path())).await;
    let mut c = nn.client();
    let mut dns = vec![
        FakeDn::register(&nn, 0).await,
        FakeDn::register(&nn, 1).await,
    ];

    // Too few datanodes: a create works (a small file needs no datanode, as in HDFS), and its
    // first block is refused with a clear error (EIO: the nodes are down, not full).
    let made = create(&mut c, "/f").await.unwrap();
    let e = c
        .allocate_block(pb::AllocateBlockRequest {
            inode: made.inode,
            client_id: "c1".into(),
            excluded: vec![],
            min_replicas: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::Io);
    assert_eq!(e.message(), "not enough live datanodes: need 3, have 2");
    c.remove(pb::RemoveRequest {
        entry: path_entry("/f"),
        any_kind: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let e = c
        .get_attr(pb::GetAttrRequest {
            creds: None,
            node: path_node("/f"),
            access_mask: 0,
            client_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::NotFound);

    dns.push(FakeDn::register(&nn, 2).await);
    let blocks = write_file(&mut c, &mut dns, "/f", 3).await;
    for b in &blocks {
        let mut addrs: Vec<_> = b.locations.iter().map(|l| l.address.clone()).collect();
        addrs.sort();
        addrs.dedup();
        assert_eq!(addrs.len(), 3);
        assert!(!b.access_token.is_empty());
    }
    let f = fsck(&mut c).await;
    assert_eq!(
        (f.files, f.blocks, f.replicas, f.healthy_blocks),
        (1, 3, 9, 3),
        "{f:?}"
    );
    assert_eq!(
        (f.under_replicated, f.corrupt, f.missing, f.open_files),
        (0, 0, 0, 0)
    );

    let loc = c
        .get_block_locations(pb::GetBlockLocationsRequest {
            node: path_node("/f"),
            offset: (1 << 20) + 5,
            len: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(loc.attr.unwrap().size, 3 << 20);
    assert_eq!(loc.blocks.len(), 1);
    assert_eq!(loc.blocks[0].id, blocks[1].id);
    assert_eq!(loc.blocks[0].offset, 1 << 20);
    assert_eq!(loc.blocks[0].locations.len(), 3);

    // A bad replica shows in fsck.
    c.report_bad_replica(pb::ReportBadReplicaRequest {
        block_id: blocks[0].id,
        generation: blocks[0].generation,
        datanode: blocks[0].locations[0].address.clone(),
        reason: "test".into(),
    })
    .await
    .unwrap();
    let f = fsck(&mut c).await;
    assert_eq!((f.corrupt, f.corrupt_replicas, f.healthy_blocks), (1, 1, 2));
    // A reader may be wrong: its holder is asked to check the replica, and a good check drops
    // the mark.
    let (id, generation) = (blocks[0].id, blocks[0].generation);
    let holder = dns
        .iter_mut()
        .find(|d| d.addr == blocks[0].locations[0].address)
        .unwrap();
    holder
        .nn
        .block_received(pb::BlockReceivedRequest {
            datanode_id: holder.id.clone(),
            verified: vec![pb::ReplicaReport {
                block_id: id,
                generation,
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap();
    let f = fsck(&mut c).await;
    assert_eq!((f.corrupt, f.corrupt_replicas, f.healthy_blocks), (0, 0, 3));
    let cmds = holder.heartbeat().await.commands;
    assert!(
        cmds.iter().any(|c| matches!(
            &c.command,
            Some(pb::datanode_command::Command::Verify(v))
                if v.block_id == id && v.generation == generation
        )),
        "{cmds:?}"
    );

    // Report lists the datanodes.
    let r = c.report(pb::ReportRequest {}).await.unwrap().into_inner();
    assert_eq!(r.datanodes.len(), 3);
    assert!(r
        .datanodes
        .iter()
        .all(|d| d.state == "live" && d.blocks == 3));

    // Deleting the file sends delete commands to every holder.
    c.remove(pb::RemoveRequest {
        entry: path_entry("/f"),
        any_kind: true,
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(deletes_sent(&mut dns, 9).await.len(), 9);
    nn.stop().await;
}

#[tokio::test]
async fn dead_datanode_blocks_are_scheduled_for_repair() {
    let (_dir, nn, mut c, mut dns) = start_with(4).await;
    let blocks = write_file(&mut c, &mut dns, "/f", 4).await;
    // dn3 stops heartbeating; the others keep going and collect their commands.
    let victim = dns.pop().unwrap();
    let lost: Vec<u64> = blocks
        .iter()
        .filter(|b| b.locations.iter().any(|l| l.address == victim.addr))
        .map(|b| b.id)
        .collect();
    let mut replicate: Vec<(u64, String)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while replicate.len() < lost.len() {
        assert!(
            Instant::now() < deadline,
            "no repair commands: got {replicate:?}, want blocks {lost:?}"
        );
        for d in &mut dns {
            for cmd in d.heartbeat().await.commands {
                if let Some(pb::datanode_command::Command::Replicate(r)) = cmd.command {
                    assert_eq!(r.targets.len(), 1);
                    assert_ne!(r.targets[0].address, victim.addr);
                    assert_ne!(r.targets[0].address, d.addr);
                    replicate.push((r.block_id, r.targets[0].address.clone()));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut got: Vec<u64> = replicate.iter().map(|r| r.0).collect();
    got.sort();
    assert_eq!(got, lost);
    let r = c.report(pb::ReportRequest {}).await.unwrap().into_inner();
    assert_eq!(r.datanodes.iter().filter(|d| d.state == "dead").count(), 1);
    // The copies land: fsck is healthy again.
    for (block, target) in &replicate {
        let gen = blocks.iter().find(|b| b.id == *block).unwrap().generation;
        dns.iter_mut()
            .find(|d| &d.addr == target)
            .unwrap()
            .received(*block, gen, 1 << 20)
            .await;
    }
    let f = fsck(&mut c).await;
    assert_eq!(
        (f.blocks, f.healthy_blocks, f.replicas),
        (4, 4, 12),
        "{f:?}"
    );
    nn.stop().await;
}

#[tokio::test]
async fn restart_keeps_the_namespace_and_waits_in_safe_mode() {
    let (dir, nn, mut c, mut dns) = start_with(3).await;
    let blocks = write_file(&mut c, &mut dns, "/f", 2).await;
    c.mkdir(pb::MkdirRequest {
        entry: path_entry("/d"),
        mode: 0o755,
        ..Default::default()
    })
    .await
    .unwrap();
    nn.stop().await;

    let nn = Namenode::start(config(dir.path())).await;
    let mut c = nn.client();
    let f = fsck(&mut c).await;
    assert_eq!((f.files, f.directories, f.blocks, f.missing), (1, 2, 2, 2));
    assert!(f.safe_mode);
    // Datanodes are unknown now: heartbeats ask them to register again, then they report.
    for (i, d) in dns.iter_mut().enumerate() {
        d.nn = nn.dn_client();
        assert!(d.heartbeat().await.reregister);
        *d = FakeDn::register(&nn, i).await;
        let held: Vec<(u64, u64, u64)> = blocks
            .iter()
            .filter(|b| b.locations.iter().any(|l| l.address == d.addr))
            .map(|b| (b.id, b.generation, 1 << 20))
            .collect();
        // A replica of an unknown block is held (a writer may still commit it), not deleted.
        let mut with_junk = held.clone();
        with_junk.push((999_999, 1, 10));
        let r = d.report(&with_junk).await;
        assert!(r.commands.is_empty(), "{r:?}");
    }
    wait_until("safe mode to end", || {
        let mut c = c.clone();
        async move { !fsck(&mut c).await.safe_mode }
    })
    .await;
    let f = fsck(&mut c).await;
    assert_eq!((f.healthy_blocks, f.replicas), (2, 6));
    // Nobody commits block 999999: after the lease hard limit its replicas are deleted through
    // heartbeat commands. (Nodes that missed heartbeats meanwhile register and report again.)
    let mut deleted = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while deleted.len() < dns.len() {
        assert!(
            Instant::now() < deadline,
            "unclaimed replica deleted on {deleted:?} only"
        );
        for (i, d) in dns.iter_mut().enumerate() {
            let hb = d.heartbeat().await;
            if hb.reregister {
                *d = FakeDn::register(&nn, i).await;
                let mut held: Vec<(u64, u64, u64)> = blocks
                    .iter()
                    .filter(|b| b.locations.iter().any(|l| l.address == d.addr))
                    .map(|b| (b.id, b.generation, 1 << 20))
                    .collect();
                held.push((999_999, 1, 10));
                d.report(&held).await;
            }
            let junk = hb.commands.iter().any(|c| {
                matches!(&c.command, Some(pb::datanode_command::Command::Delete(del))
                    if del.block_id == 999_999)
            });
            if junk {
                deleted.insert(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nn.stop().await;
}

#[tokio::test]
async fn locks_conflict_and_die_with_the_lease() {
    let dir = tempfile::tempdir().unwrap();
    let nn = Namenode::start(config(dir.path())).await;
    let mut c = nn.client();
    let attr = c
        .create(pb::CreateRequest {
            entry: path_entry("/l"),
            mode: 0o644,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .attr
        .unwrap();
    let req = |client: &str, typ: pb::LockType, start: u64, end: u64| pb::LockRequest {
        inode: attr.inode,
        client_id: client.into(),
        owner: 1,
        kind: pb::LockKind::Posix as i32,
        r#type: typ as i32,
        start,
        end,
        pid: 7,
    };
    let a = c
        .lock(req("m1", pb::LockType::Write, 0, 99))
        .await
        .unwrap()
        .into_inner();
    assert!(a.granted && a.fencing_token > 0);
    let b = c
        .lock(req("m2", pb::LockType::Read, 50, 60))
        .await
        .unwrap()
        .into_inner();
    assert!(!b.granted);
    assert_eq!(
        (
            b.conflict_type,
            b.conflict_start,
            b.conflict_end,
            b.conflict_pid
        ),
        (pb::LockType::Write as i32, 0, 99, 7)
    );
    let t = c
        .test_lock(req("m2", pb::LockType::Read, 100, 200))
        .await
        .unwrap()
        .into_inner();
    assert!(t.granted);
    assert_eq!(t.conflict_type, pb::LockType::Unlock as i32);
    // m1 goes silent: after the soft limit its lock is gone, m2 gets one with a larger token.
    wait_until("m1's lock to expire", || {
        let mut c = c.clone();
        let r = req("m2", pb::LockType::Write, 50, 60);
        async move { c.lock(r).await.unwrap().into_inner().granted }
    })
    .await;
    let again = c
        .test_lock(req("m3", pb::LockType::Read, 0, 10))
        .await
        .unwrap()
        .into_inner();
    assert!(again.granted);
    nn.stop().await;
}

#[tokio::test]
async fn copy_on_write_commit_and_pipeline_update() {
    let (_dir, nn, mut c, mut dns) = start_with(4).await;
    let old = write_file(&mut c, &mut dns, "/f", 2).await;
    let open = c
        .open_write(pb::OpenWriteRequest {
            node: path_node("/f"),
            client_id: "c1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(open.blocks.len(), 2);
    let inode = open.attr.unwrap().inode;

    // Rewrite block 0 as a new block; its pipeline loses a node and is repaired with a new generation.
    let nb = allocate(&mut c, inode).await;
    assert_eq!(nb.locations.len(), 3);
    let failed = nb.locations[1].address.clone();
    let survivors = vec![
        nb.locations[0].address.clone(),
        nb.locations[2].address.clone(),
    ];
    let recovery = pb::UpdatePipelineRequest {
        inode,
        client_id: "c1".into(),
        block_id: nb.id,
        generation: nb.generation,
        failed: vec![failed.clone()],
        survivors: survivors.clone(),
        min_replicas: 0,
    };
    let up = c
        .update_pipeline(recovery.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(up.generation > nb.generation);
    let addrs: Vec<String> = up.locations.iter().map(|l| l.address.clone()).collect();
    assert_eq!(addrs.len(), 3);
    assert_eq!(&addrs[..2], &survivors[..]);
    assert!(!addrs.contains(&failed));
    // The same request again (its answer lost on the way) is answered as the first was.
    let again = c
        .update_pipeline(recovery.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.generation, up.generation);
    let again_addrs: Vec<String> = again.locations.iter().map(|l| l.address.clone()).collect();
    assert_eq!(again_addrs, addrs);
    // A stale generation is refused.
    let e = c
        .update_pipeline(pb::UpdatePipelineRequest {
            failed: vec![],
            ..recovery
        })
        .await
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidArgument);
    for a in &addrs {
        dns.iter_mut()
            .find(|d| &d.addr == a)
            .unwrap()
            .received(nb.id, up.generation, 1 << 20)
            .await;
    }
    // An unused copy-on-write block is freed at close.
    let spare = allocate(&mut c, inode).await;
    let spare_holder = spare.locations[0].address.clone();
    dns.iter_mut()
        .find(|d| d.addr == spare_holder)
        .unwrap()
        .received(spare.id, spare.generation, 10)
        .await;

    c.commit_blocks(pb::CommitBlocksRequest {
        inode,
        client_id: "c1".into(),
        blocks: vec![
            pb::CommittedBlock {
                id: nb.id,
                generation: up.generation,
                len: 1 << 20,
            },
            pb::CommittedBlock {
                id: old[1].id,
                generation: old[1].generation,
                len: 1 << 20,
            },
        ],
        size: 2 << 20,
        close: true,
        mtime: None,
        inline_data: None,
    })
    .await
    .unwrap();
    let f = fsck(&mut c).await;
    assert_eq!(
        (f.blocks, f.healthy_blocks, f.open_files),
        (2, 2, 0),
        "{f:?}"
    );
    // The replaced block's replicas and the spare are deleted: the spare on every node of its
    // pipeline, which may hold a partial replica in tmp/ without having reported it. So is the
    // old generation of the recovered block on the node its recovery dropped.
    let mut deleted = deletes_sent(&mut dns, 3 + spare.locations.len() + 1).await;
    deleted.sort();
    let mut want = vec![old[0].id; 3];
    want.extend(vec![spare.id; spare.locations.len()]);
    want.push(nb.id);
    want.sort();
    assert_eq!(deleted, want);
    nn.stop().await;
}

/// A DataTransfer server that only answers RecoverReplica: it holds `len` bytes of any block and
/// finalizes at whatever length it is asked.
struct FakeTransfer {
    len: u64,
    calls: std::sync::Arc<std::sync::Mutex<Vec<pb::RecoverReplicaRequest>>>,
}

#[tonic::async_trait]
impl pb::data_transfer_server::DataTransfer for FakeTransfer {
    async fn write_block(
        &self,
        _req: tonic::Request<tonic::Streaming<pb::WriteBlockMessage>>,
    ) -> Result<tonic::Response<pb::WriteBlockResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("fake"))
    }

    type ReadBlockStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<pb::ReadBlockPacket, tonic::Status>> + Send>,
    >;

    async fn read_block(
        &self,
        _req: tonic::Request<pb::ReadBlockRequest>,
    ) -> Result<tonic::Response<Self::ReadBlockStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("fake"))
    }

    async fn recover_replica(
        &self,
        req: tonic::Request<pb::RecoverReplicaRequest>,
    ) -> Result<tonic::Response<pb::RecoverReplicaResponse>, tonic::Status> {
        let req = req.into_inner();
        self.calls.lock().unwrap().push(req.clone());
        let (len, finalized) = match req.finalize_len {
            Some(l) => (l.min(self.len), true),
            None => (self.len, false),
        };
        Ok(tonic::Response::new(pb::RecoverReplicaResponse {
            len,
            finalized,
        }))
    }
}

#[tokio::test]
async fn lease_recovery_closes_the_file_at_the_agreed_length() {
    let dir = tempfile::tempdir().unwrap();
    let nn = Namenode::start(config(dir.path())).await;
    let mut c = nn.client();
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut dns = Vec::new();
    for (i, len) in [700u64, 500, 900].into_iter().enumerate() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let svc = pb::data_transfer_server::DataTransferServer::new(FakeTransfer {
            len,
            calls: calls.clone(),
        });
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        dns.push(FakeDn::register_at(&nn, i, addr).await);
    }
    // A writer creates a file, gets a block, and disappears without committing.
    let attr = create(&mut c, "/r").await.unwrap();
    let lb = c
        .add_block(pb::AddBlockRequest {
            inode: attr.inode,
            client_id: "c1".into(),
            previous: None,
            excluded: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    wait_until("the file to be recovered and closed", || {
        let mut c = c.clone();
        let mut dns: Vec<_> = dns.iter().map(|d| (d.id.clone(), d.nn.clone())).collect();
        async move {
            // Keep the datanodes alive meanwhile.
            for (id, nn) in &mut dns {
                let _ = nn
                    .heartbeat(pb::HeartbeatRequest {
                        datanode_id: id.clone(),
                        ..Default::default()
                    })
                    .await;
            }
            let a = c
                .get_attr(pb::GetAttrRequest {
                    creds: None,
                    node: path_node("/r"),
                    access_mask: 0,
                    client_id: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            !a.attr.unwrap().under_construction
        }
    })
    .await;
    let loc = c
        .get_block_locations(pb::GetBlockLocationsRequest {
            node: path_node("/r"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(loc.attr.unwrap().size, 500);
    assert_eq!(loc.blocks.len(), 1);
    assert_eq!(loc.blocks[0].id, lb.id);
    assert_eq!(loc.blocks[0].len, 500);
    assert!(loc.blocks[0].generation > lb.generation);
    assert_eq!(
        loc.blocks[0].locations.len(),
        3,
        "finalized replicas are known"
    );
    {
        let calls = calls.lock().unwrap();
        assert_eq!(calls.iter().filter(|r| r.finalize_len.is_none()).count(), 3);
        assert!(calls
            .iter()
            .filter(|r| r.finalize_len.is_some())
            .all(|r| r.finalize_len == Some(500)));
    }
    {
        // The old writer is fenced off.
        let e = c
            .commit_blocks(pb::CommitBlocksRequest {
                inode: attr.inode,
                client_id: "c1".into(),
                size: 0,
                close: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::Io);
    }
    nn.stop().await;
}

async fn commit_inline(
    nn: &mut NamenodeClient<Channel>,
    inode: u64,
    data: &[u8],
    size: u64,
) -> Result<pb::Attr, tonic::Status> {
    nn.commit_blocks(pb::CommitBlocksRequest {
        inode,
        client_id: "c1".into(),
        size,
        close: true,
        inline_data: Some(data.to_vec()),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().attr.unwrap())
}

#[tokio::test]
async fn inline_commits_limits_budget_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config {
        inline_max: 1000,
        inline_max_total: 1500,
        ..config(dir.path())
    };
    let nn = Namenode::start(cfg.clone()).await;
    let mut c = nn.client();
    let _dns = [
        FakeDn::register(&nn, 0).await,
        FakeDn::register(&nn, 1).await,
        FakeDn::register(&nn, 2).await,
    ];
    // Create tells the writer the limit; a small commit stores the content inline.
    let resp = c
        .create(pb::CreateRequest {
            entry: path_entry("/a"),
            mode: 0o644,
            client_id: "c1".into(),
            open_for_write: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.inline_limit, 1000);
    let a = resp.attr.unwrap();
    let attr = commit_inline(&mut c, a.inode, &[7; 900], 1200)
        .await
        .unwrap();
    assert!(attr.inline && !attr.under_construction);
    assert_eq!(attr.size, 1200);
    let loc = c
        .get_block_locations(pb::GetBlockLocationsRequest {
            node: path_node("/a"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(loc.blocks.is_empty());
    assert_eq!(loc.inline_data, vec![7; 900]);

    // Over the per-file limit, or with blocks: refused, nothing changed.
    let b = create(&mut c, "/b").await.unwrap();
    let e = commit_inline(&mut c, b.inode, &[1; 1001], 1001)
        .await
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::NoSpace, "{e:?}");
    let e = c
        .commit_blocks(pb::CommitBlocksRequest {
            inode: b.inode,
            client_id: "c1".into(),
            blocks: vec![pb::CommittedBlock {
                id: 0,
                generation: 0,
                len: 10,
            }],
            size: 10,
            inline_data: Some(vec![1; 10]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidArgument, "{e:?}");
    // The budget: 900 of 1500 used, so 700 more is refused and 600 fits; then creates say 0.
    let e = commit_inline(&mut c, b.inode, &[2; 700], 700)
        .await
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::NoSpace, "{e:?}");
    commit_inline(&mut c, b.inode, &[2; 600], 600)
        .await
        .unwrap();
    let resp = c
        .open_write(pb::OpenWriteRequest {
            node: path_node("/a"),
            client_id: "c1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.inline_limit, 0, "budget used up");
    assert_eq!(resp.inline_data, vec![7; 900], "a writer gets the content");
    // Rewriting a file's own inline content counts its old bytes as given back.
    commit_inline(&mut c, a.inode, &[8; 800], 800)
        .await
        .unwrap();
    let f = fsck(&mut c).await;
    assert_eq!(
        (
            f.files,
            f.blocks,
            f.inline_files,
            f.inline_bytes,
            f.total_bytes
        ),
        (2, 0, 2, 1400, 1400)
    );

    // A restart keeps the content.
    drop(c);
    nn.stop().await;
    let nn = Namenode::start(cfg).await;
    let mut c = nn.client();
    let loc = c
        .get_block_locations(pb::GetBlockLocationsRequest {
            node: path_node("/b"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(loc.attr.unwrap().inline);
    assert_eq!(loc.inline_data, vec![2; 600]);
    nn.stop().await;
}

#[tokio::test]
async fn pipeline_update_never_shrinks_the_pipeline_below_the_replication_factor() {
    // Three datanodes, R=3, the middle node of a pipeline broke: the node behind it was reported
    // failed only because it came after the break, so it is retried; without a third node the
    // update is refused instead of returning a two-node pipeline (a put would then succeed with
    // blocks on two replicas).
    let (_dir, nn, mut c, mut dns) = start_with(3).await;
    let inode = create(&mut c, "/f").await.unwrap().inode;
    let b = allocate(&mut c, inode).await;
    let l: Vec<String> = b.locations.iter().map(|l| l.address.clone()).collect();
    assert_eq!(l.len(), 3);
    let update = pb::UpdatePipelineRequest {
        inode,
        client_id: "c1".into(),
        block_id: b.id,
        generation: b.generation,
        failed: vec![l[1].clone(), l[2].clone()],
        survivors: vec![l[0].clone()],
        min_replicas: 0,
    };
    let e = c.update_pipeline(update.clone()).await.unwrap_err();
    assert!(
        e.message()
            .contains("not enough live datanodes: need 3, have 2"),
        "{e:?}"
    );
    // With a fourth node, the replacement and the retried node behind the break make three.
    dns.push(FakeDn::register(&nn, 3).await);
    let up = c.update_pipeline(update).await.unwrap().into_inner();
    let addrs: Vec<String> = up.locations.iter().map(|l| l.address.clone()).collect();
    assert_eq!(addrs.len(), 3, "{addrs:?}");
    assert_eq!(addrs[0], l[0]);
    assert!(addrs.contains(&l[2]) && !addrs.contains(&l[1]), "{addrs:?}");
    nn.stop().await;
}

#[tokio::test]
async fn a_datanode_registering_without_room_is_left_out_of_pipelines_before_its_first_heartbeat() {
    // Its registration says how much room its disk has left (capacity - used ignores the disk's
    // free space): a node that registers full takes no block, without waiting for a heartbeat.
    let (_dir, nn, mut c, _dns) = start_with(3).await;
    let full = FakeDn::register_with(&nn, 3, "127.0.0.1:40003".into(), Some(0)).await;
    for f in 0..12 {
        let inode = create(&mut c, &format!("/f{f}")).await.unwrap().inode;
        let b = allocate(&mut c, inode).await;
        let addrs: Vec<&str> = b.locations.iter().map(|l| l.address.as_str()).collect();
        assert_eq!(addrs.len(), 3, "{addrs:?}");
        assert!(
            !addrs.contains(&full.addr.as_str()),
            "block of /f{f} placed on the full node: {addrs:?}"
        );
    }
    nn.stop().await;
}

#[tokio::test]
async fn a_writer_that_accepts_fewer_replicas_goes_on_with_the_live_datanodes() {
    // R=3 on three datanodes. A writer with min_replicas 1 (the mount) keeps a two-node pipeline
    // when one node broke and none can replace it, and gets new blocks and creates while a node is
    // dead; a strict writer (put) is refused in both cases.
    let (_dir, nn, mut c, mut dns) = start_with(3).await;
    let inode = create(&mut c, "/f").await.unwrap().inode;
    let b = c
        .allocate_block(pb::AllocateBlockRequest {
            inode,
            client_id: "c1".into(),
            excluded: vec![],
            min_replicas: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let l: Vec<String> = b.locations.iter().map(|l| l.address.clone()).collect();
    assert_eq!(l.len(), 3, "all live nodes are used when there are enough");
    let update = pb::UpdatePipelineRequest {
        inode,
        client_id: "c1".into(),
        block_id: b.id,
        generation: b.generation,
        failed: vec![l[2].clone()],
        survivors: vec![l[0].clone(), l[1].clone()],
        min_replicas: 0,
    };
    let e = c.update_pipeline(update.clone()).await.unwrap_err();
    // Short of nodes that are up, not of space: EIO.
    assert_eq!(ErrorKind::of(&e), ErrorKind::Io, "{e:?}");
    let up = c
        .update_pipeline(pb::UpdatePipelineRequest {
            min_replicas: 1,
            ..update
        })
        .await
        .unwrap()
        .into_inner();
    let addrs: Vec<String> = up.locations.iter().map(|l| l.address.clone()).collect();
    assert_eq!(addrs, vec![l[0].clone(), l[1].clone()]);
    assert!(up.generation > b.generation);

    // The third node dies (no heartbeats): strict allocations are refused (EIO: nodes are down,
    // not full), lenient ones get the two live nodes; creates need no datanode.
    let victim = dns.iter().position(|d| d.addr == l[2]).unwrap();
    dns.remove(victim);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for d in dns.iter_mut() {
            d.heartbeat().await;
        }
        let strict = c
            .allocate_block(pb::AllocateBlockRequest {
                inode,
                client_id: "c1".into(),
                excluded: vec![],
                min_replicas: 0,
            })
            .await;
        if let Err(e) = strict {
            assert_eq!(ErrorKind::of(&e), ErrorKind::Io);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the silent datanode was never declared dead"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lenient = c
        .allocate_block(pb::AllocateBlockRequest {
            inode,
            client_id: "c1".into(),
            excluded: vec![],
            min_replicas: 1,
        })
        .await
        .unwrap()
        .into_inner();
    let mut got: Vec<String> = lenient
        .locations
        .iter()
        .map(|l| l.address.clone())
        .collect();
    got.sort();
    let mut live = vec![l[0].clone(), l[1].clone()];
    live.sort();
    assert_eq!(got, live);
    c.create(pb::CreateRequest {
        entry: path_entry("/strict"),
        mode: 0o644,
        client_id: "c1".into(),
        open_for_write: true,
        ..Default::default()
    })
    .await
    .unwrap();
    c.create(pb::CreateRequest {
        entry: path_entry("/g"),
        mode: 0o644,
        client_id: "c1".into(),
        open_for_write: true,
        min_replicas: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    nn.stop().await;
}

/// The blocks of the delete commands the datanodes get in heartbeats, gathered until there are
/// `want` (replicas are deleted only once the change that freed them is durable, a moment after
/// the reply) or 10 s passed.
async fn deletes_sent(dns: &mut [FakeDn], want: usize) -> Vec<u64> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut deleted = Vec::new();
    loop {
        for d in dns.iter_mut() {
            for cmd in d.heartbeat().await.commands {
                if let Some(pb::datanode_command::Command::Delete(del)) = cmd.command {
                    deleted.push(del.block_id);
                }
            }
        }
        if deleted.len() >= want || std::time::Instant::now() > deadline {
            return deleted;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn getattr_checks_access_when_asked() {
    // open(2) through a mount asks for attributes and access in one call.
    let dir = tempfile::tempdir().unwrap();
    let nn = Namenode::start(config(dir.path())).await;
    let mut c = nn.client();
    c.mkdir(pb::MkdirRequest {
        entry: path_entry("/d"),
        mode: 0o755,
        ..Default::default()
    })
    .await
    .unwrap();
    c.create(pb::CreateRequest {
        entry: path_entry("/d/f"),
        mode: 0o640,
        ..Default::default()
    })
    .await
    .unwrap();
    let user = Some(pb::Credentials {
        uid: 1000,
        gid: 1000,
        groups: Vec::new(),
    });
    let getattr = |path: &str, mask: u32, creds: Option<pb::Credentials>| {
        let mut c = c.clone();
        let node = path_node(path);
        async move {
            c.get_attr(pb::GetAttrRequest {
                creds,
                node,
                access_mask: mask,
                client_id: String::new(),
            })
            .await
        }
    };
    // no mask: attributes for anyone who can reach the inode
    assert!(getattr("/d/f", 0, user.clone()).await.is_ok());
    // R_OK on a 0640 root file for another uid: denied, with the reason
    let denied = getattr("/d/f", 4, user.clone()).await.unwrap_err();
    assert_eq!(
        ringfs_proto::ErrorKind::of(&denied),
        ringfs_proto::ErrorKind::PermissionDenied,
        "{denied:?}"
    );
    // root may; the owner's group bits do not cover uid 1000
    assert!(getattr("/d/f", 6, None).await.is_ok());
    // W_OK is not checked on a directory (opening one for writing is EISDIR), R_OK is
    assert!(getattr("/d", 2, user.clone()).await.is_ok());
    assert!(getattr("/d", 4 | 1, user.clone()).await.is_ok());
    nn.stop().await;
}

#[tokio::test]
async fn calls_sent_again_with_their_retry_id_are_answered_as_the_first_was_across_a_restart() {
    // A client whose call was applied but whose answer was lost (the namenode died) sends it
    // again with the same retry id to the restarted namenode: it gets the first call's answer.
    let (dir, nn, mut c, _dns) = start_with(3).await;
    let retry = |n: u64| {
        Some(pb::RetryId {
            client_id: "c1".into(),
            call_id: n,
        })
    };
    let mkdir = pb::MkdirRequest {
        entry: path_entry("/d"),
        mode: 0o755,
        retry: retry(1),
        ..Default::default()
    };
    let create = pb::CreateRequest {
        entry: path_entry("/d/f"),
        mode: 0o644,
        exclusive: true,
        client_id: "c1".into(),
        open_for_write: true,
        retry: retry(2),
        ..Default::default()
    };
    let rename = pb::RenameRequest {
        from: path_entry("/d/f"),
        to: path_entry("/d/g"),
        retry: retry(3),
        ..Default::default()
    };
    let symlink = pb::SymlinkRequest {
        entry: path_entry("/d/s"),
        target: "g".into(),
        retry: retry(4),
        ..Default::default()
    };
    let remove = pb::RemoveRequest {
        entry: path_entry("/d/s"),
        retry: retry(5),
        ..Default::default()
    };
    let d = c
        .mkdir(mkdir.clone())
        .await
        .unwrap()
        .into_inner()
        .attr
        .unwrap();
    let f = c
        .create(create.clone())
        .await
        .unwrap()
        .into_inner()
        .attr
        .unwrap();
    c.rename(rename.clone()).await.unwrap();
    let s = c
        .symlink(symlink.clone())
        .await
        .unwrap()
        .into_inner()
        .attr
        .unwrap();
    c.remove(remove.clone()).await.unwrap();
    // Without its retry id a repeat is a new call.
    let plain = c
        .mkdir(pb::MkdirRequest {
            retry: None,
            ..mkdir.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(ErrorKind::of(&plain), ErrorKind::AlreadyExists, "{plain:?}");
    nn.stop().await;

    let nn = Namenode::start(config(dir.path())).await;
    let mut c = nn.client();
    for i in 0..3 {
        FakeDn::register(&nn, i).await;
    }
    let again = c.mkdir(mkdir).await.unwrap().into_inner().attr.unwrap();
    assert_eq!(again.inode, d.inode);
    // The create's answer names the file (renamed since), still open for writing by c1.
    let again = c.create(create).await.unwrap().into_inner().attr.unwrap();
    assert_eq!(again.inode, f.inode);
    assert!(again.under_construction, "{again:?}");
    c.rename(rename).await.unwrap();
    // The symlink was removed since: its repeat cannot show it.
    let gone = c.symlink(symlink).await.unwrap_err();
    assert_eq!(
        ErrorKind::of(&gone),
        ErrorKind::Stale,
        "{gone:?} (symlink {})",
        s.inode
    );
    c.remove(remove).await.unwrap();
    // Nothing happened twice: /d holds g alone, and c1 may still commit and close it.
    let list = c
        .read_dir(pb::ReadDirRequest {
            dir: path_node("/d"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = list.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["g"]);
    c.commit_blocks(pb::CommitBlocksRequest {
        inode: f.inode,
        client_id: "c1".into(),
        close: true,
        ..Default::default()
    })
    .await
    .unwrap();
    nn.stop().await;
}

#[tokio::test]
async fn xattrs_on_the_wire_error_kinds_and_retry_ids_across_a_restart() {
    // SetXattr/GetXattr/ListXattr/RemoveXattr: errors carry the xattr kinds, a create-only set or
    // a remove sent again with its retry id after a restart is answered as the first was.
    let (dir, nn, mut c, _dns) = start_with(3).await;
    let f = create(&mut c, "/f").await.unwrap();
    let retry = |n: u64| {
        Some(pb::RetryId {
            client_id: "c1".into(),
            call_id: n,
        })
    };
    let set = |name: &str, value: &[u8], mode: pb::XattrSetMode, n: u64| pb::SetXattrRequest {
        node: path_node("/f"),
        name: name.into(),
        value: value.to_vec(),
        mode: mode as i32,
        retry: retry(n),
        ..Default::default()
    };
    let get = |name: &str| pb::GetXattrRequest {
        node: path_node("/f"),
        name: name.into(),
        ..Default::default()
    };
    let create_k = set("user.k", b"v", pb::XattrSetMode::XattrSetCreate, 1);
    let a = c
        .set_xattr(create_k.clone())
        .await
        .unwrap()
        .into_inner()
        .attr
        .unwrap();
    assert_eq!(a.inode, f.inode);
    let secs = |t: Option<pb::Time>| t.map(|t| (t.secs, t.nanos));
    assert!(
        secs(a.ctime) > secs(f.ctime),
        "{:?} after {:?}",
        a.ctime,
        f.ctime
    );
    fn kind<T>(r: Result<tonic::Response<T>, tonic::Status>) -> ErrorKind {
        ErrorKind::of(&r.map(drop).unwrap_err())
    }
    let mut fresh = create_k.clone();
    fresh.retry = retry(2);
    assert_eq!(kind(c.set_xattr(fresh).await), ErrorKind::AlreadyExists);
    let replace = set("user.none", b"v", pb::XattrSetMode::XattrSetReplace, 3);
    assert_eq!(kind(c.set_xattr(replace).await), ErrorKind::NoData);
    assert_eq!(kind(c.get_xattr(get("user.none")).await), ErrorKind::NoData);
    let long = format!("user.{}", "x".repeat(251));
    let too_long = set(&long, b"", pb::XattrSetMode::XattrSetAny, 4);
    assert_eq!(kind(c.set_xattr(too_long).await), ErrorKind::Range);
    let big = set("user.b", &[0; 65537], pb::XattrSetMode::XattrSetAny, 5);
    assert_eq!(kind(c.set_xattr(big).await), ErrorKind::TooBig);
    let acl = set(
        "system.posix_acl_access",
        b"",
        pb::XattrSetMode::XattrSetAny,
        6,
    );
    assert_eq!(kind(c.set_xattr(acl).await), ErrorKind::NotSupported);
    let mut bad_mode = set("user.m", b"", pb::XattrSetMode::XattrSetAny, 7);
    bad_mode.mode = 9;
    assert_eq!(
        kind(c.set_xattr(bad_mode).await),
        ErrorKind::InvalidArgument
    );
    let remove_k = pb::RemoveXattrRequest {
        node: Some(pb::NodeRef {
            target: Some(pb::node_ref::Target::Inode(f.inode)),
        }),
        name: "user.k".into(),
        retry: retry(8),
        ..Default::default()
    };
    let set_t = set("trusted.t", b"t", pb::XattrSetMode::XattrSetAny, 9);
    c.set_xattr(set_t).await.unwrap();
    c.remove_xattr(remove_k.clone()).await.unwrap();
    nn.stop().await;

    let nn = Namenode::start(config(dir.path())).await;
    let mut c = nn.client();
    // Both repeats succeed without a second effect: the create must not set user.k again (it
    // would find nothing to refuse now), the remove must not fail with NoData.
    c.set_xattr(create_k).await.unwrap();
    let names = c
        .list_xattr(pb::ListXattrRequest {
            node: path_node("/f"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .names;
    assert_eq!(names, ["trusted.t"]);
    c.remove_xattr(remove_k).await.unwrap();
    // A user sees no trusted.* attribute.
    let user = Some(pb::Credentials {
        uid: 1000,
        gid: 1000,
        groups: vec![],
    });
    let names = c
        .list_xattr(pb::ListXattrRequest {
            creds: user.clone(),
            node: path_node("/f"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .names;
    assert!(names.is_empty(), "{names:?}");
    let hidden = c
        .get_xattr(pb::GetXattrRequest {
            creds: user,
            ..get("trusted.t")
        })
        .await;
    assert_eq!(kind(hidden), ErrorKind::NoData);
    let value = c
        .get_xattr(get("trusted.t"))
        .await
        .unwrap()
        .into_inner()
        .value;
    assert_eq!(value, b"t");
    nn.stop().await;
}

#[tokio::test]
async fn a_datanode_of_another_cluster_is_refused_and_a_new_one_learns_the_id() {
    let dir = tempfile::tempdir().unwrap();
    let nn = Namenode::start(config(dir.path())).await;
    let mut c = nn.dn_client();
    let register = |cluster_id: &str| {
        let id = "dnx".to_string();
        pb::RegisterRequest {
            node: Some(pb::DatanodeInfo {
                id: id.clone(),
                address: "127.0.0.1:1".into(),
                rack: String::new(),
            }),
            capacity: 100 << 30,
            used: 0,
            auth: Secret::new(DEV_SECRET.as_bytes()).node_auth(&id),
            cluster_id: cluster_id.into(),
            remaining: None,
        }
    };
    // A new data dir (no id yet) is taken and told the cluster's id.
    let ours = c
        .register(register(""))
        .await
        .unwrap()
        .into_inner()
        .cluster_id;
    assert_eq!(ours.len(), 16, "{ours:?}");
    assert!(c.register(register(&ours)).await.is_ok());
    let e = c.register(register("00000000000000ff")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    assert!(
        e.message().contains("belongs to cluster 00000000000000ff"),
        "{}",
        e.message()
    );
}
