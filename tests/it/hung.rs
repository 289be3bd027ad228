//! A datanode that hangs instead of dying (SIGSTOP: its sockets still accept connections, nothing
//! answers, and the namenode keeps listing it until `dead_after`): readers must not wait out a
//! timeout on every block.

use crate::cluster::*;
use std::fs;
use std::os::unix::fs::FileExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// The client's read timeout (client/src/read.rs `PACKET_TIMEOUT`).
const STALL: Duration = Duration::from_secs(15);

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

#[test]
fn a_hung_datanode_costs_a_mount_one_stall_not_one_per_block() {
    // Blocks larger than the mount's readahead, so each read below waits for its own block only.
    let c = TestCluster::builder()
        .datanodes(4)
        .block_size("8MiB")
        .heartbeat("200ms")
        .dead_after("10m")
        .start();
    let bs = 8 * MIB as u64;
    let data = random_bytes(12 * 8 * MIB, 77);
    c.put_bytes("/f", &data);
    // Readers get the least busy replica first, by the transfer counts of the last heartbeats:
    // wait for heartbeats sent well after the put, so the order seen now is the order the mount
    // will see once the node hangs (its count then stays at 0 like the others').
    let put_done = std::time::Instant::now();
    wait_until(Duration::from_secs(20), "heartbeats after the put", || {
        let since = put_done.elapsed().as_millis() as u64;
        report_datanodes(&c.report_json())
            .iter()
            .all(|d| since > field_u64(d, "last_heartbeat_ms") + 500)
    });
    let firsts: Vec<String> = stat_blocks(&c.stat_json("/f"))
        .iter()
        .map(|b| block_locations(b)[0].clone())
        .collect();
    let hung_addr = (0..4)
        .map(|i| c.datanode_addr(i).to_string())
        .max_by_key(|a| firsts.iter().filter(|f| *f == a).count())
        .unwrap();
    let offsets: Vec<u64> = (0..firsts.len() as u64)
        .filter(|&i| firsts[i as usize] == hung_addr)
        .map(|i| i * bs)
        .collect();
    assert!(offsets.len() >= 3, "12 blocks on 4 nodes: {firsts:?}");
    let pid = c
        .datanode_pid(c.datanode_index(&hung_addr))
        .expect("datanode runs");
    let m = c.mount(&[]);
    let path = m.path("f");

    signal(pid, "-STOP");
    // One read per block whose first replica is on the hung node, one after the other: the first
    // stalls, the others go straight to another replica.
    let (tx, rx) = mpsc::channel();
    let reads = offsets.clone();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        let got: Vec<Vec<u8>> = reads
            .iter()
            .map(|&off| {
                let mut buf = vec![0u8; 64 * KIB];
                f.read_exact_at(&mut buf, off).map(|_| buf)
            })
            .collect::<Result<_, _>>()
            .unwrap_or_default();
        let _ = tx.send(got);
    });
    let limit = STALL * 2 + Duration::from_secs(5);
    let got = rx.recv_timeout(limit);
    signal(pid, "-CONT");
    let got = got.unwrap_or_else(|_| {
        panic!(
            "{} reads from blocks first on a hung datanode took more than {limit:?}",
            offsets.len()
        )
    });
    assert_eq!(got.len(), offsets.len(), "a read failed");
    for (buf, off) in got.iter().zip(&offsets) {
        let off = *off as usize;
        assert_same_bytes(buf, &data[off..off + buf.len()], &format!("/f at {off}"));
    }
}

#[test]
fn lookups_on_a_mount_do_not_fail_across_a_namenode_kill_9() {
    // A loop of stats (no kernel cache: --ttl 0) while the namenode is killed and restarted: the
    // call that was on the wire when it died is read-only, so the mount sends it again once the
    // namenode is back instead of answering EIO.
    let mut c = TestCluster::builder().start();
    let m = c.client().mount(&["--ttl", "0s"]);
    fs::write(m.path("f"), b"x").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let looper = {
        let (stop, ok, failed, path) = (stop.clone(), ok.clone(), failed.clone(), m.path("f"));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match fs::metadata(&path) {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        failed.lock().unwrap().push(e.to_string());
                        0
                    }
                };
            }
        })
    };
    wait_until(Duration::from_secs(10), "stats to run", || {
        ok.load(Ordering::Relaxed) > 100
    });
    c.kill_namenode();
    let before = ok.load(Ordering::Relaxed);
    c.restart_namenode();
    wait_until(
        Duration::from_secs(60),
        "stats to succeed after the restart",
        || ok.load(Ordering::Relaxed) > before + 100,
    );
    stop.store(true, Ordering::Relaxed);
    looper.join().unwrap();
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "stats failed: {failed:?}; mount log:\n{}",
        log_tail(m.log(), 10)
    );
}
