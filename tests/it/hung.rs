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
fn rewrites_and_timestamps_do_not_fail_across_namenode_kills() {
    // Existing files rewritten in place (lease), their mtime set while open (`cp -p` does that:
    // commit + SetAttr) and closed (closing commit) in a loop while the namenode is killed and
    // restarted eight times. These calls set absolute state, so the mount sends them again once the
    // namenode is back (a closing commit that was applied before the kill is answered as done);
    // each failed with EIO before (`cp -a` into a mount: one error per namenode restart).
    // The loop runs in another process: a namenode forked by a process holding files open on the mount
    // would close them at exec, and that close waits for the namenode it is about to become.
    let mut c = TestCluster::builder().start();
    let m = c.client().mount(&[]);
    const FILES: usize = 8;
    for k in 0..FILES {
        fs::write(m.path(&format!("f{k}")), format!("{k:>8}-{:>8}", 0)).unwrap();
    }
    // perl (in every Debian base system): a tight loop without a process per operation.
    let script = r#"
        my ($dir, $stop, $files) = @ARGV;
        chdir $dir or die "$dir: $!";
        $| = 1;
        my $r = 0;
        until (-e $stop) {
            $r++;
            for my $k (0 .. $files - 1) {
                my $f;
                my $ok = open($f, '+<', "f$k")
                    && defined(syswrite($f, sprintf('%8d-%8d', $k, $r)))
                    && utime($r, $r, $f);
                $ok = close($f) && $ok if $f;
                print $ok ? "ok $k $r\n" : "failed $k $r: $!\n";
            }
        }
    "#;
    let stop = c.scratch_path("stop");
    let mut looper = Command::new("perl")
        .args(["-e", script])
        .arg(&m.dir)
        .arg(&stop)
        .arg(FILES.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let out = looper.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut last = [0u64; FILES];
    let mut failed = Vec::new();
    let mut oks = 0usize;
    let mut take = |until: usize, rx: &mpsc::Receiver<String>| {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while oks < until {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the rewrite loop stalled after {oks} rewrites"));
            let w: Vec<&str> = line.split_whitespace().collect();
            match (w.first(), w.get(1), w.get(2)) {
                (Some(&"ok"), Some(k), Some(r)) => {
                    last[k.parse::<usize>().unwrap()] = r.parse().unwrap();
                    oks += 1;
                }
                _ => failed.push(line),
            }
        }
    };
    take(3 * FILES, &rx);
    const KILLS: usize = 8;
    for n in 1..=KILLS {
        // At moments spread over one rewrite (a few ms), not in step with the loop's output.
        std::thread::sleep(Duration::from_micros(700 * n as u64));
        c.kill_namenode();
        // Down for a moment, as a real restart is: calls meet a refused connection meanwhile.
        std::thread::sleep(Duration::from_millis(300));
        c.restart_namenode();
        take((3 + 3 * n) * FILES, &rx);
    }
    fs::write(&stop, b"").unwrap();
    let status = looper.wait().unwrap();
    reader.join().unwrap();
    for line in rx.try_iter() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match (w.first(), w.get(1), w.get(2)) {
            (Some(&"ok"), Some(k), Some(r)) => {
                last[k.parse::<usize>().unwrap()] = r.parse().unwrap()
            }
            _ => failed.push(line),
        }
    }
    let mut err = String::new();
    if let Some(mut e) = looper.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        failed.is_empty() && status.success(),
        "rewrites failed: {failed:?} ({status}); stderr: {err}; mount log:\n{}",
        log_tail(m.log(), 10)
    );
    for (k, round) in last.iter().enumerate() {
        let want = format!("{k:>8}-{round:>8}");
        assert_eq!(c.get_bytes(&format!("/f{k}")), want.as_bytes(), "f{k}");
        let st = c.json(&["stat", "--json", &format!("/f{k}")]);
        assert_eq!(field_u64(&st, "mtime_secs"), *round, "f{k} mtime: {st}");
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
