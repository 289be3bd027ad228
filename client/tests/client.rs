//! The client library against an in-process cluster (namenode + datanodes on 127.0.0.1:0): writes
//! through the pipeline, verified reads, holes, copy-on-write blocks, and failover when a datanode dies.

use bytes::Bytes;
use ringfs_client::{inode_ref, path_ref, Client, ClientConfig, CreateOptions, ErrorKind};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const SECRET: &str = "client-test-secret";

struct Cluster {
    nn_addr: String,
    _stop: watch::Sender<bool>,
    datanodes: Vec<(std::path::PathBuf, JoinHandle<()>)>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start(datanodes: usize, replication: u32, block_size: u64) -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let (stop, rx) = watch::channel(false);
        let on_stop = |rx: &watch::Receiver<bool>| {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let nn = ringfs_namenode::Config {
            data_dir: dir.path().join("nn"),
            replication,
            block_size,
            heartbeat_interval: Duration::from_millis(100),
            dead_after: Duration::from_secs(2),
            secret: SECRET.into(),
            ..Default::default()
        };
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let nn_addr = l.local_addr().unwrap().to_string();
        let s = on_stop(&rx);
        tokio::spawn(async move {
            if let Err(e) = ringfs_namenode::run(nn, l, s).await {
                panic!("namenode: {e}");
            }
        });
        let mut dns = Vec::new();
        for i in 0..datanodes {
            let data_dir = dir.path().join(format!("dn{i}"));
            let c = ringfs_datanode::Config {
                data_dir: data_dir.clone(),
                namenode: nn_addr.clone(),
                capacity: Some(1 << 30),
                secret: SECRET.into(),
                ..Default::default()
            };
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let s = on_stop(&rx);
            let h = tokio::spawn(async move {
                let _ = ringfs_datanode::run(c, l, s).await;
            });
            dns.push((data_dir, h));
        }
        let c = Cluster {
            nn_addr,
            _stop: stop,
            datanodes: dns,
            _dir: dir,
        };
        c.wait_live(datanodes).await;
        c
    }

    async fn client(&self) -> Client {
        Client::connect(ClientConfig {
            namenode: self.nn_addr.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
    }

    async fn wait_live(&self, n: usize) {
        let client = self.client().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let live = match client.report().await {
                Ok(r) => r.datanodes.iter().filter(|d| d.state == "live").count(),
                Err(_) => 0,
            };
            if live == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{live} of {n} datanodes live after 20s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Crashes datanode `i` (its server future is dropped: connections close mid-stream).
    fn crash(&self, i: usize) {
        self.datanodes[i].1.abort();
    }
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut buf);
    buf
}

async fn put(client: &Client, path: &str, bytes: &[u8], piece: usize) -> ringfs_client::pb::Attr {
    let mut w = client.create(path, CreateOptions::default()).await.unwrap();
    for c in bytes.chunks(piece) {
        w.write(c).await.unwrap();
    }
    w.finish().await.unwrap()
}

async fn read_all(client: &Client, path: &str) -> Vec<u8> {
    let mut r = client.open(path_ref(path)).await.unwrap();
    let mut out = Vec::new();
    let n = r.copy_to(&mut out).await.unwrap();
    assert_eq!(n as usize, out.len());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_block_files_round_trip_through_writer_and_reader() {
    // A file of several blocks written in odd pieces reads back whole, by range, and through read_range.
    let c = Cluster::start(3, 3, 256 << 10).await;
    let client = c.client().await;
    let bytes = data((1 << 20) + 12345, 1);
    let attr = put(&client, "/f", &bytes, 100_003).await;
    assert_eq!(attr.size, bytes.len() as u64);
    assert_eq!(read_all(&client, "/f").await, bytes);
    let r = client.open(path_ref("/f")).await.unwrap();
    for (off, len) in [
        (0u64, 10u64),
        (262_140, 10),
        (300_000, 500_000),
        (1 << 20, 1 << 20),
        (5 << 20, 10),
    ] {
        let got = r.read_at(off, len).await.unwrap();
        let end = (off + len).min(bytes.len() as u64) as usize;
        let want = if off as usize >= bytes.len() {
            &[][..]
        } else {
            &bytes[off as usize..end]
        };
        assert_eq!(&got[..], want, "read_at({off}, {len})");
        assert_eq!(
            client.read_range(attr.inode, off, len).await.unwrap(),
            Bytes::copy_from_slice(want)
        );
    }
    let st = client.stat("/f").await.unwrap();
    assert_eq!(
        (st.size, st.under_construction),
        (bytes.len() as u64, false)
    );
    let locs = client.block_locations(path_ref("/f"), 0, 0).await.unwrap();
    assert_eq!(locs.blocks.len(), 5);
    for b in &locs.blocks {
        assert_eq!(b.locations.len(), 3, "block {} replicas", b.id);
    }
    // An empty file.
    let empty = put(&client, "/empty", b"", 1).await;
    assert_eq!(empty.size, 0);
    assert!(read_all(&client, "/empty").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_on_write_blocks_holes_and_size_beyond_blocks_read_as_zeros() {
    // write_new_block + commit_blocks build a file with a hole and a zero tail; reads fill both with zeros.
    let c = Cluster::start(2, 2, 128 << 10).await;
    let client = c.client().await;
    let w = client
        .create("/cow", CreateOptions::default())
        .await
        .unwrap();
    let inode = w.inode();
    let a = data(128 << 10, 2);
    let b = data(1000, 3);
    let ba = client
        .write_new_block(inode, Bytes::from(a.clone()))
        .await
        .unwrap();
    let bb = client
        .write_new_block(inode, Bytes::from(b.clone()))
        .await
        .unwrap();
    let hole = ringfs_client::pb::CommittedBlock {
        id: 0,
        generation: 0,
        len: 128 << 10,
    };
    let size = (128 << 10) * 3 + 5000;
    let attr = client
        .commit_blocks(inode, vec![ba, hole, bb], size, true)
        .await
        .unwrap();
    assert_eq!(attr.size, size);
    let mut want = a.clone();
    want.extend(std::iter::repeat_n(0u8, 128 << 10));
    want.extend(&b);
    want.resize(size as usize, 0);
    assert_eq!(read_all(&client, "/cow").await, want);
    let got = client
        .read_range(inode, (128 << 10) - 10, 20)
        .await
        .unwrap();
    assert_eq!(&got[..], &want[(128 << 10) - 10..(128 << 10) + 10]);
    let tail = client.read_range(inode, size - 100, 1000).await.unwrap();
    assert_eq!(&tail[..], &want[size as usize - 100..]);
    let r = client.open(inode_ref(inode)).await.unwrap();
    assert_eq!(r.attr().size, size);
    drop(w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_calls_report_posix_kinds() {
    // The path calls map namenode errors to kinds with messages naming the path.
    let c = Cluster::start(1, 1, 1 << 20).await;
    let client = c.client().await;
    client.mkdir("/d", false).await.unwrap();
    client.mkdir("/d/e/f", true).await.unwrap();
    put(&client, "/d/file", b"x", 1).await;
    let e = client.stat("/missing").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.to_string().contains("/missing"), "{e}");
    assert_eq!(
        client.mkdir("/d", false).await.unwrap_err().kind(),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        client.remove("/d", false).await.unwrap_err().kind(),
        ErrorKind::DirectoryNotEmpty
    );
    let names: Vec<String> = client
        .list("/d")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["e", "file"]);
    client.rename("/d/file", "/d/e/moved").await.unwrap();
    assert_eq!(read_all(&client, "/d/e/moved").await, b"x");
    let e = client
        .create("/d/e/moved", CreateOptions::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    client.remove("/d", true).await.unwrap();
    assert!(client.list("/").await.unwrap().is_empty());
    assert!(client.open(path_ref("/")).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datanode_crash_during_a_write_is_survived_by_pipeline_recovery() {
    // 4 nodes, R=3: one crashes mid-file; the pipelines it is in are recovered with the spare node
    // as replacement (a pipeline shorter than R is refused); the write completes and reads back.
    let c = Cluster::start(4, 3, 512 << 10).await;
    let client = c.client().await;
    let bytes = data(4 << 20, 4);
    let mut w = client
        .create("/survivor", CreateOptions::default())
        .await
        .unwrap();
    let (first, rest) = bytes.split_at(3 * (256 << 10));
    w.write(first).await.unwrap();
    c.crash(1);
    for piece in rest.chunks(64 << 10) {
        w.write(piece).await.unwrap();
    }
    let attr = w.finish().await.unwrap();
    assert_eq!(attr.size, bytes.len() as u64);
    assert_eq!(read_all(&client, "/survivor").await, bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fall_over_to_another_replica_when_a_datanode_is_dead_or_a_replica_is_corrupt() {
    // A crashed datanode and a corrupted replica file are skipped; the bytes read back are exact.
    let c = Cluster::start(3, 3, 256 << 10).await;
    let client = c.client().await;
    let bytes = data(1 << 20, 5);
    put(&client, "/r", &bytes, 1 << 20).await;
    // Corrupt every replica file of datanode 0 in the middle.
    let mut corrupted = 0;
    for f in walk(&c.datanodes[0].0) {
        if f.extension().is_some_and(|e| e == "data") {
            let mut content = std::fs::read(&f).unwrap();
            if content.len() > 1000 {
                for byte in &mut content[500..600] {
                    *byte = !*byte;
                }
                std::fs::write(&f, content).unwrap();
                corrupted += 1;
            }
        }
    }
    assert!(corrupted > 0, "no replica files found under datanode 0");
    assert_eq!(read_all(&client, "/r").await, bytes);
    c.crash(2);
    assert_eq!(read_all(&client, "/r").await, bytes);
    let r = client.open(path_ref("/r")).await.unwrap();
    assert_eq!(
        &r.read_at(1000, 300_000).await.unwrap()[..],
        &bytes[1000..301_000]
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
