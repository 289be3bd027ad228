//! DataTransfer against real in-process datanodes: pipelined writes, verified reads, aborts, lease
//! recovery. No namenode runs here: each datanode points at a closed port, so its BlockReceived
//! calls fail fast and are queued for a later heartbeat — by design a write does not fail because
//! the namenode is unreachable (the replica is durable; the next block report covers it).

use ringfs_datanode::{run, Config};
use ringfs_proto::chunk::{hash_chunks, hashes_to_wire, CHUNK_SIZE, PACKET_SIZE};
use ringfs_proto::error_kind::ErrorKind;
use ringfs_proto::pb::data_transfer_client::DataTransferClient;
use ringfs_proto::pb::write_block_message::Msg;
use ringfs_proto::pb::{
    DataPacket, DatanodeInfo, ReadBlockRequest, RecoverReplicaRequest, WriteBlockEnd,
    WriteBlockHeader, WriteBlockMessage, WriteBlockResponse,
};
use ringfs_proto::token::{AccessMode, Secret, DEV_SECRET};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use tonic::Code;

struct TestNode {
    addr: String,
    dir: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ringfs_datanode::DatanodeError>>>,
}

impl TestNode {
    async fn start() -> TestNode {
        TestNode::start_in(tempfile::tempdir().unwrap()).await
    }

    async fn start_in(dir: tempfile::TempDir) -> TestNode {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let config = Config {
            data_dir: dir.path().to_path_buf(),
            namenode: closed_port().await,
            ..Config::default()
        };
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(run(config, listener, async move {
            let _ = rx.await;
        }));
        TestNode {
            addr,
            dir: Some(dir),
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn client(&self) -> DataTransferClient<Channel> {
        ringfs_proto::net::data_transfer_client(
            ringfs_proto::net::connect_lazy(&self.addr).unwrap(),
        )
    }

    fn info(&self) -> DatanodeInfo {
        DatanodeInfo {
            id: String::new(),
            address: self.addr.clone(),
            rack: String::new(),
        }
    }

    fn dir(&self) -> &std::path::Path {
        self.dir.as_ref().unwrap().path()
    }

    /// Stops the node cleanly and hands back its data dir.
    async fn stop(mut self) -> tempfile::TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
        self.dir.take().unwrap()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// An address nobody listens on.
async fn closed_port() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().to_string()
}

fn secret() -> Secret {
    Secret::new(DEV_SECRET.as_bytes())
}

fn payload(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn header(block: u64, generation: u64, downstream: Vec<DatanodeInfo>) -> WriteBlockMessage {
    WriteBlockMessage {
        msg: Some(Msg::Header(WriteBlockHeader {
            block_id: block,
            generation,
            downstream,
            access_token: secret().block_token(block, generation, AccessMode::Write),
            client: "test".into(),
            datanode_id: String::new(),
        })),
    }
}

fn packets(data: &[u8]) -> Vec<WriteBlockMessage> {
    data.chunks(PACKET_SIZE)
        .map(|p| WriteBlockMessage {
            msg: Some(Msg::Packet(DataPacket {
                data: bytes::Bytes::copy_from_slice(p),
                chunk_hashes: hashes_to_wire(&hash_chunks(p)),
            })),
        })
        .collect()
}

async fn write(
    node: &TestNode,
    block: u64,
    generation: u64,
    downstream: Vec<DatanodeInfo>,
    data: &[u8],
) -> Result<WriteBlockResponse, tonic::Status> {
    let mut msgs = vec![header(block, generation, downstream)];
    msgs.extend(packets(data));
    msgs.push(end(data.len() as u64));
    node.client()
        .write_block(futures::stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

fn end(len: u64) -> WriteBlockMessage {
    WriteBlockMessage {
        msg: Some(Msg::End(WriteBlockEnd { len })),
    }
}

/// Reads a range; returns (offset of the first byte, bytes) or the error, plus what arrived before it.
async fn read(
    node: &TestNode,
    block: u64,
    generation: u64,
    offset: u64,
    len: u64,
) -> (Vec<u8>, Result<u64, tonic::Status>) {
    let req = ReadBlockRequest {
        block_id: block,
        generation,
        offset,
        len,
        access_token: secret().block_token(block, generation, AccessMode::Read),
        client_verifies: false,
    };
    let mut stream = match node.client().read_block(req).await {
        Ok(s) => s.into_inner(),
        Err(s) => return (Vec::new(), Err(s)),
    };
    let mut out = Vec::new();
    let mut start = None;
    loop {
        match stream.message().await {
            Ok(Some(p)) => {
                assert_eq!(p.offset % CHUNK_SIZE as u64, 0, "packets are chunk-aligned");
                assert_eq!(
                    ringfs_proto::chunk::verify_chunks(&p.data, &p.chunk_hashes),
                    Ok(()),
                    "packets carry their hashes"
                );
                if let Some(s) = start {
                    assert_eq!(p.offset, s + out.len() as u64, "packets are contiguous");
                }
                start.get_or_insert(p.offset);
                out.extend_from_slice(&p.data);
            }
            Ok(None) => return (out, Ok(start.unwrap_or(offset))),
            Err(s) => return (out, Err(s)),
        }
    }
}

async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_write_is_stored_on_every_node_and_reads_back() {
    let (a, b, c) = (
        TestNode::start().await,
        TestNode::start().await,
        TestNode::start().await,
    );
    let data = payload(5 * PACKET_SIZE + 3 * CHUNK_SIZE + 1000, 1);
    let resp = write(&a, 77, 3, vec![b.info(), c.info()], &data)
        .await
        .unwrap();
    assert_eq!(resp.len, data.len() as u64);
    assert_eq!(
        resp.hash,
        ringfs_datanode::block_store::replica_hash(&hash_chunks(&data)).to_vec()
    );
    assert_eq!(
        resp.stored,
        vec![a.addr.clone(), b.addr.clone(), c.addr.clone()]
    );
    assert!(resp.failed.is_empty());
    for n in [&a, &b, &c] {
        let (got, r) = read(n, 77, 3, 0, 0).await;
        assert_eq!(r.unwrap(), 0);
        assert!(got == data, "replica on {} differs", n.addr);
        assert!(n.dir().join("blocks/4d/77_3.data").exists());
        assert!(n.dir().join("blocks/4d/77_3.meta").exists());
    }
    // A range read starts at the chunk holding `offset` and covers at least the range.
    let off = 2 * CHUNK_SIZE as u64 + 17;
    let (got, r) = read(&b, 77, 3, off, 100_000).await;
    let start = r.unwrap();
    assert_eq!(start, 2 * CHUNK_SIZE as u64);
    assert!(start + got.len() as u64 >= off + 100_000);
    assert_eq!(got, data[start as usize..start as usize + got.len()]);
    // Reading at the exact end yields nothing; past the end is refused.
    assert_eq!(read(&c, 77, 3, data.len() as u64, 0).await.0.len(), 0);
    assert_eq!(
        ErrorKind::of(
            &read(&c, 77, 3, data.len() as u64 + 1, 0)
                .await
                .1
                .unwrap_err()
        ),
        ErrorKind::InvalidArgument
    );
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_generation_replaces_older_and_old_generation_is_not_served() {
    let a = TestNode::start().await;
    write(&a, 5, 1, vec![], &payload(1000, 1)).await.unwrap();
    let v2 = payload(3000, 2);
    write(&a, 5, 2, vec![], &v2).await.unwrap();
    assert_eq!(read(&a, 5, 2, 0, 0).await.0, v2);
    let err = read(&a, 5, 1, 0, 0).await.1.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Writing an older generation than the one stored is refused.
    let err = write(&a, 5, 1, vec![], &payload(10, 3)).await.unwrap_err();
    assert_eq!(ErrorKind::of(&err), ErrorKind::NotFound);
    // Unknown block.
    assert_eq!(
        read(&a, 6, 1, 0, 0).await.1.unwrap_err().code(),
        Code::NotFound
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chunk_hash_is_rejected_and_nothing_is_finalized() {
    let (a, b) = (TestNode::start().await, TestNode::start().await);
    let data = payload(2 * PACKET_SIZE, 4);
    let mut msgs = vec![header(9, 1, vec![b.info()])];
    msgs.extend(packets(&data));
    if let Some(Msg::Packet(p)) = &mut msgs[2].msg {
        let mut bad = p.data.to_vec();
        bad[5 * CHUNK_SIZE + 3] ^= 1; // chunk 16 + 5 of the block
        p.data = bad.into();
    }
    let err = a
        .client()
        .write_block(futures::stream::iter(msgs))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DataLoss);
    assert_eq!(ErrorKind::of(&err), ErrorKind::Io);
    assert!(
        err.message().contains("block 9") && err.message().contains("chunk 21"),
        "{}",
        err.message()
    );
    for n in [&a, &b] {
        wait_until("the aborted write to release the replica", || async {
            let req = RecoverReplicaRequest {
                block_id: 9,
                generation: 1,
                new_generation: 0,
                finalize_len: None,
                access_token: secret().block_token(9, 1, AccessMode::Write),
            };
            // Released: a tmp replica that recovery can read, or none at all (the abort reached
            // the downstream node before any data did).
            match n.client().recover_replica(req).await {
                Ok(_) => true,
                Err(s) => s.code() == Code::NotFound,
            }
        })
        .await;
        assert_eq!(
            read(n, 9, 1, 0, 0).await.1.unwrap_err().code(),
            Code::NotFound,
            "{} finalized a bad write",
            n.addr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_downstream_is_reported_in_failed_and_the_local_replica_is_kept() {
    let a = TestNode::start().await;
    let dead = DatanodeInfo {
        id: String::new(),
        address: closed_port().await,
        rack: String::new(),
    };
    let data = payload(3 * PACKET_SIZE + 5, 5);
    // (WriteBlockEnd is optional: this writer just ends its stream.)
    let mut msgs = vec![header(12, 1, vec![dead.clone(), dead.clone()])];
    msgs.extend(packets(&data));
    let resp = a
        .client()
        .write_block(futures::stream::iter(msgs))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.stored, vec![a.addr.clone()]);
    assert_eq!(
        resp.failed,
        vec![dead.address.clone(), dead.address.clone()]
    );
    assert_eq!(read(&a, 12, 1, 0, 0).await.0, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked() {
    let a = TestNode::start().await;
    write(&a, 3, 1, vec![], &payload(100, 6)).await.unwrap();
    let read_token = secret().block_token(3, 1, AccessMode::Read);
    let mut msgs = vec![header(3, 2, vec![])];
    if let Some(Msg::Header(h)) = &mut msgs[0].msg {
        h.access_token = read_token.clone(); // a read token does not allow writes
    }
    let err = a
        .client()
        .write_block(futures::stream::iter(msgs))
        .await
        .unwrap_err();
    assert_eq!(ErrorKind::of(&err), ErrorKind::PermissionDenied);
    let other_block = ReadBlockRequest {
        block_id: 3,
        generation: 1,
        offset: 0,
        len: 0,
        access_token: secret().block_token(4, 1, AccessMode::Read),
        client_verifies: false,
    };
    let err = a.client().read_block(other_block).await.unwrap_err();
    assert_eq!(ErrorKind::of(&err), ErrorKind::PermissionDenied);
    let forged = ReadBlockRequest {
        block_id: 3,
        generation: 1,
        offset: 0,
        len: 0,
        access_token: Secret::new(b"other").block_token(3, 1, AccessMode::Read),
        client_verifies: false,
    };
    assert_eq!(
        ErrorKind::of(&a.client().read_block(forged).await.unwrap_err()),
        ErrorKind::PermissionDenied
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_replica_is_never_served_past_the_bad_chunk() {
    let a = TestNode::start().await;
    let data = payload(2 * PACKET_SIZE, 7);
    write(&a, 20, 1, vec![], &data).await.unwrap();
    let path = a.dir().join("blocks/14/20_1.data");
    let mut raw = std::fs::read(&path).unwrap();
    raw[PACKET_SIZE + 4 * CHUNK_SIZE + 9] ^= 0x40; // chunk 20
    std::fs::write(&path, &raw).unwrap();
    let (got, r) = read(&a, 20, 1, 0, 0).await;
    let err = r.unwrap_err();
    assert_eq!(err.code(), Code::DataLoss);
    assert!(
        err.message().contains("block 20") && err.message().contains("chunk 20"),
        "{}",
        err.message()
    );
    assert!(
        got.len() <= PACKET_SIZE + 4 * CHUNK_SIZE,
        "bytes of the bad chunk were sent"
    );
    assert_eq!(got, data[..got.len()]);
    // A range that avoids the bad chunk still reads.
    let (got, r) = read(&a, 20, 1, 0, PACKET_SIZE as u64).await;
    r.unwrap();
    assert_eq!(got, data[..PACKET_SIZE]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifying_reader_gets_the_stored_hashes_so_a_bad_chunk_fails_its_check() {
    // With client_verifies the datanode does not re-hash: it sends the hashes of its meta file, so
    // the reader's own check still catches a damaged chunk (and only that one).
    let a = TestNode::start().await;
    let data = payload(2 * PACKET_SIZE, 8);
    write(&a, 21, 1, vec![], &data).await.unwrap();
    let path = a.dir().join("blocks/15/21_1.data");
    let mut raw = std::fs::read(&path).unwrap();
    raw[PACKET_SIZE + 4 * CHUNK_SIZE + 9] ^= 0x40; // chunk 20
    std::fs::write(&path, &raw).unwrap();
    let req = ReadBlockRequest {
        block_id: 21,
        generation: 1,
        offset: 0,
        len: 0,
        access_token: secret().block_token(21, 1, AccessMode::Read),
        client_verifies: true,
    };
    let mut stream = a.client().read_block(req).await.unwrap().into_inner();
    let mut bad = Vec::new();
    let mut offset = 0;
    while let Some(p) = stream.message().await.unwrap() {
        assert_eq!(p.offset, offset, "packets are contiguous");
        assert_eq!(p.chunk_hashes.len(), p.data.len().div_ceil(CHUNK_SIZE));
        for (i, (c, h)) in p.data.chunks(CHUNK_SIZE).zip(&p.chunk_hashes).enumerate() {
            if blake3::hash(c).as_bytes().as_slice() != h.as_slice() {
                bad.push(p.offset / CHUNK_SIZE as u64 + i as u64);
            }
        }
        offset += p.data.len() as u64;
    }
    assert_eq!(offset, data.len() as u64);
    assert_eq!(
        bad,
        vec![20],
        "only the damaged chunk fails the reader's check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_writer_leaves_tmp_replicas_that_lease_recovery_finalizes() {
    let (a, b) = (TestNode::start().await, TestNode::start().await);
    let data = payload(3 * PACKET_SIZE, 8);
    // A writer that sends two packets, then dies (its call is cancelled, the stream never ends cleanly).
    let (tx, rx) = mpsc::channel::<WriteBlockMessage>(16);
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Some(m) => Some((m, rx)),
            None => futures::future::pending().await,
        }
    });
    let mut client = a.client();
    let call = tokio::spawn(async move { client.write_block(stream).await });
    tx.send(header(30, 1, vec![b.info()])).await.unwrap();
    for p in packets(&data).into_iter().take(2) {
        tx.send(p).await.unwrap();
    }
    let token = secret().block_token(30, 1, AccessMode::Write);
    let probe = |n: &TestNode, finalize_len: Option<u64>| {
        let req = RecoverReplicaRequest {
            block_id: 30,
            generation: 1,
            new_generation: 2,
            finalize_len,
            access_token: token.clone(),
        };
        let mut c = n.client();
        async move { c.recover_replica(req).await.map(|r| r.into_inner()) }
    };
    // Both replicas reach two packets while the call is open (they are still being written).
    for n in [&a, &b] {
        wait_until("two packets on disk", || async {
            std::fs::metadata(n.dir().join("tmp/30_1.data"))
                .map(|m| m.len())
                .unwrap_or(0)
                == 2 * PACKET_SIZE as u64
        })
        .await;
    }
    call.abort();
    drop(tx);
    for n in [&a, &b] {
        wait_until("the broken write to release the replica", || async {
            probe(n, None).await.is_ok()
        })
        .await;
        let r = probe(n, None).await.unwrap();
        assert_eq!((r.len, r.finalized), (2 * PACKET_SIZE as u64, false));
        assert_eq!(
            read(n, 30, 1, 0, 0).await.1.unwrap_err().code(),
            Code::NotFound,
            "a broken write was finalized on {}",
            n.addr
        );
    }
    // Lease recovery: finalize both at an agreed length as generation 2.
    let len = PACKET_SIZE as u64 + 12345;
    for n in [&a, &b] {
        let r = probe(n, Some(len)).await.unwrap();
        assert_eq!((r.len, r.finalized), (len, true));
        // A retried request is answered the same way.
        assert_eq!(probe(n, Some(len)).await.unwrap().len, len);
        let (got, _) = read(n, 30, 2, 0, 0).await;
        assert_eq!(got, data[..len as usize]);
        assert!(!n.dir().join("tmp/30_1.data").exists());
    }
    // Past the verified length is refused.
    let req = RecoverReplicaRequest {
        block_id: 30,
        generation: 2,
        new_generation: 3,
        finalize_len: Some(len + 1),
        access_token: secret().block_token(30, 2, AccessMode::Write),
    };
    assert!(a.client().recover_replica(req).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_survive_a_restart_and_the_dir_is_locked() {
    let a = TestNode::start().await;
    let data = payload(PACKET_SIZE + 1, 9);
    write(&a, 40, 1, vec![], &data).await.unwrap();
    // A second datanode on the same dir is refused while the first runs.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = Config {
        data_dir: a.dir().to_path_buf(),
        namenode: closed_port().await,
        ..Config::default()
    };
    let err = run(config, listener, async {}).await.unwrap_err();
    assert!(
        matches!(err, ringfs_datanode::DatanodeError::Locked(_)),
        "{err}"
    );
    let id = std::fs::read_to_string(a.dir().join("datanode_id")).unwrap();
    let dir = a.stop().await;
    let a = TestNode::start_in(dir).await;
    assert_eq!(read(&a, 40, 1, 0, 0).await.0, data);
    assert_eq!(
        std::fs::read_to_string(a.dir().join("datanode_id")).unwrap(),
        id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_with_a_different_length_is_refused() {
    let (a, b) = (TestNode::start().await, TestNode::start().await);
    let data = payload(PACKET_SIZE + 10, 10);
    let mut msgs = vec![header(50, 1, vec![b.info()])];
    msgs.extend(packets(&data));
    msgs.push(end(data.len() as u64 + 1));
    let err = a
        .client()
        .write_block(futures::stream::iter(msgs))
        .await
        .unwrap_err();
    assert_eq!(ErrorKind::of(&err), ErrorKind::InvalidArgument);
    assert!(err.message().contains("block 50"), "{}", err.message());
    for n in [&a, &b] {
        assert_eq!(
            read(n, 50, 1, 0, 0).await.1.unwrap_err().code(),
            Code::NotFound
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_meant_for_another_datanode_is_refused() {
    // A datanode started on an address another one left (same secret, another cluster) must
    // not take writes meant for the node that was there: the replica would be lost.
    let a = TestNode::start().await;
    let mut msgs = vec![header(5, 1, vec![])];
    if let Some(Msg::Header(h)) = &mut msgs[0].msg {
        h.datanode_id = "some-other-datanode".into();
    }
    msgs.extend(packets(&payload(100, 8)));
    msgs.push(end(100));
    let err = a
        .client()
        .write_block(futures::stream::iter(msgs))
        .await
        .unwrap_err();
    assert!(err.message().contains("not some-other-datanode"), "{err:?}");
    // Without an expected id (or with its own) the write is taken.
    write(&a, 5, 1, vec![], &payload(100, 8)).await.unwrap();
}
