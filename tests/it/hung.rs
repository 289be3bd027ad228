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
    let files = FILES.to_string();
    let (mut looper, rx, reader) = spawn_perl(
        script,
        &[m.dir.as_os_str(), stop.as_os_str(), files.as_ref()],
    );
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

/// `perl -e SCRIPT ARGS...` with stdout and stderr piped; its stdout lines arrive on the channel
/// (read by a thread that ends with the output; join it after waiting for the child).
fn spawn_perl(
    script: &str,
    args: &[&std::ffi::OsStr],
) -> (
    std::process::Child,
    mpsc::Receiver<String>,
    std::thread::JoinHandle<()>,
) {
    let mut child = Command::new("perl")
        .args(["-e", script])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, rx, reader)
}

/// A perl loop (arguments: DIR STOP) until STOP exists, of steps that must each succeed exactly
/// once in round R: mkdir dR, create dR/f (O_EXCL) holding "content R", rename it to g, symlink
/// s -> g, link h to g, unlink g, mkdir and rmdir dR/e. Prints "round R" after each round and
/// "failed R STEP: ERROR" for a step that failed.
const EXACTLY_ONCE_LOOP: &str = r#"
        use Fcntl;
        my ($dir, $stop) = @ARGV;
        chdir $dir or die "$dir: $!";
        $| = 1;
        my $r = 0;
        until (-e $stop) {
            $r++;
            my $d = "d$r";
            my $f;
            my @steps = (
                ['mkdir', sub { mkdir($d, 0755) }],
                ['create', sub {
                    sysopen($f, "$d/f", O_WRONLY | O_CREAT | O_EXCL, 0644)
                        && defined(syswrite($f, "content $r"))
                        && close($f)
                }],
                ['rename', sub { rename("$d/f", "$d/g") }],
                ['symlink', sub { symlink('g', "$d/s") }],
                ['link', sub { link("$d/g", "$d/h") }],
                ['unlink', sub { unlink("$d/g") == 1 }],
                ['mkdir2', sub { mkdir("$d/e", 0700) }],
                ['rmdir', sub { rmdir("$d/e") }],
            );
            for my $s (@steps) {
                my ($name, $step) = @$s;
                print "failed $r $name: $!\n" unless $step->();
            }
            print "round $r\n";
        }
"#;

fn sorted_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// `dir` holds exactly what `rounds` rounds of [`EXACTLY_ONCE_LOOP`] leave: d1..dN, each with h
/// (the round's content, one link) and s -> g.
fn assert_rounds_left_their_tree(dir: &std::path::Path, rounds: u64) {
    use std::os::unix::fs::MetadataExt;
    let mut want: Vec<String> = (1..=rounds).map(|r| format!("d{r}")).collect();
    want.sort();
    assert_eq!(
        sorted_names(dir),
        want,
        "{} after {rounds} rounds",
        dir.display()
    );
    for r in 1..=rounds {
        let d = dir.join(format!("d{r}"));
        assert_eq!(sorted_names(&d), ["h", "s"], "entries of {}", d.display());
        let h = d.join("h");
        assert_eq!(
            fs::read(&h).unwrap(),
            format!("content {r}").as_bytes(),
            "{h:?}"
        );
        assert_eq!(fs::metadata(&h).unwrap().nlink(), 1, "{h:?} links");
        assert_eq!(
            fs::read_link(d.join("s")).unwrap(),
            std::path::Path::new("g")
        );
    }
}

#[test]
fn creates_renames_links_and_removes_do_not_fail_across_namenode_kills() {
    // mkdir, create + write + close, rename, symlink, link, unlink and rmdir in loops on a mount
    // while the namenode is killed and restarted eight times. None of these may simply be sent
    // again (a second mkdir of an applied one is EEXIST, a second unlink ENOENT), so each carries a
    // call id the namenode remembers with the change it made (its retry cache): the mount sends a
    // call that died with the namenode again with the same id and gets the first one's answer.
    // Four loops (other processes, as in `rewrites_and_timestamps_do_not_fail_across_namenode_kills`),
    // so that a kill finds such a call on the wire more often than not. (Measured: the calls a kill
    // catches had mostly not reached the namenode yet, so their repeat just runs; answers lost
    // after the change was logged are the case of the next test.)
    let mut c = TestCluster::builder().start();
    let m = c.client().mount(&[]);
    // Every step has one expected result (success), so each must take effect exactly once.
    let script = EXACTLY_ONCE_LOOP;
    const LOOPS: usize = 4;
    let stop = c.scratch_path("stop");
    let (tx, rx) = mpsc::channel::<(usize, String)>();
    let mut loopers = Vec::new();
    for j in 0..LOOPS {
        fs::create_dir(m.path(&format!("w{j}"))).unwrap();
        let mut looper = Command::new("perl")
            .args(["-e", script])
            .arg(m.path(&format!("w{j}")))
            .arg(&stop)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = looper.stdout.take().unwrap();
        let tx = tx.clone();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send((j, line));
            }
        });
        loopers.push((looper, reader));
    }
    drop(tx);
    // Rounds done per loop, and the failed steps.
    let mut rounds = [0u64; LOOPS];
    let mut failed = Vec::new();
    let mut note =
        |(j, line): (usize, String), rounds: &mut [u64; LOOPS]| match line.strip_prefix("round ") {
            Some(r) => rounds[j] = r.parse().unwrap(),
            None => failed.push(format!("w{j}: {line}")),
        };
    // Until every loop has done two rounds more.
    let mut take = |rounds: &mut [u64; LOOPS]| {
        let until = rounds.map(|r| r + 2);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while rounds.iter().zip(&until).any(|(r, u)| r < u) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("the loops stalled after {rounds:?} rounds"));
            note(line, rounds);
        }
    };
    take(&mut rounds);
    const KILLS: u64 = 8;
    for n in 1..=KILLS {
        // At moments spread over one round (a few ms), not in step with the loops' output.
        std::thread::sleep(Duration::from_micros(900 * n));
        c.kill_namenode();
        // Down for a moment, as a real restart is: calls meet a refused connection meanwhile.
        std::thread::sleep(Duration::from_millis(300));
        c.restart_namenode();
        take(&mut rounds);
    }
    fs::write(&stop, b"").unwrap();
    let mut statuses = Vec::new();
    let mut err = String::new();
    for (mut looper, reader) in loopers {
        statuses.push(looper.wait().unwrap());
        reader.join().unwrap();
        if let Some(mut e) = looper.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
    }
    for (j, line) in rx.try_iter() {
        match line.strip_prefix("round ") {
            Some(r) => rounds[j] = r.parse().unwrap(),
            None => failed.push(format!("w{j}: {line}")),
        }
    }
    let total: u64 = rounds.iter().sum();
    assert!(
        failed.is_empty() && statuses.iter().all(|s| s.success()),
        "{} steps of {total} rounds failed: {failed:?} ({statuses:?}); stderr: {err}; mount log:\n{}",
        failed.len(),
        log_tail(m.log(), 10)
    );
    // The tree is exactly what the steps imply: wJ/dR/{h (the content), s -> g} for every round.
    let want: Vec<String> = (0..LOOPS).map(|j| format!("w{j}")).collect();
    assert_eq!(sorted_names(&m.dir), want, "root entries");
    for (j, &done) in rounds.iter().enumerate() {
        assert_rounds_left_their_tree(&m.path(&format!("w{j}")), done);
    }
    let log = fs::read_to_string(c.namenode_log()).unwrap_or_default();
    let repeats = log.matches("answered from the retry cache").count();
    eprintln!(
        "{total} rounds, {KILLS} namenode kills, {repeats} calls answered from the retry cache"
    );
    // The namenode holds the same after one more restart (the CLI reads it there).
    c.kill_namenode();
    c.restart_namenode();
    for (j, &done) in rounds.iter().enumerate() {
        assert_eq!(c.ls_names(&format!("/w{j}")).len() as u64, done, "/w{j}");
        let h = format!("/w{j}/d{done}/h");
        assert_eq!(c.get_bytes(&h), format!("content {done}").as_bytes(), "{h}");
    }
}

/// A TCP proxy to the namenode that loses answers: once `cut` is set, the next bytes a client sends
/// (or the next that contain `cut_at`) are passed on (the namenode applies that call) and the
/// connection is then closed without passing on the answer, as when the namenode dies after logging
/// a change and before replying.
struct LossyProxy {
    addr: String,
    cut: Arc<AtomicBool>,
    cut_at: Arc<Mutex<Option<Vec<u8>>>>,
    /// Connections closed so.
    cuts: Arc<AtomicUsize>,
}

impl LossyProxy {
    fn start(target: &str) -> LossyProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (cut, cuts) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let cut_at: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let target = target.to_string();
        let (c, n, at) = (cut.clone(), cuts.clone(), cut_at.clone());
        // Runs as long as the test binary: nothing connects once the test is done.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let (Ok(client), Ok(server)) = (client, std::net::TcpStream::connect(&target))
                else {
                    continue;
                };
                let lost = Arc::new(AtomicBool::new(false));
                let (c, n, at, lost2) = (c.clone(), n.clone(), at.clone(), lost.clone());
                let (mut from_client, mut to_server) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(len @ 1..) = from_client.read(&mut buf) {
                        let chunk = &buf[..len];
                        let cut_now = c.swap(false, Ordering::SeqCst) || {
                            let mut at = at.lock().unwrap();
                            let hit = at
                                .as_ref()
                                .is_some_and(|a| chunk.windows(a.len()).any(|w| w == &a[..]));
                            if hit {
                                *at = None;
                            }
                            hit
                        };
                        if cut_now {
                            lost2.store(true, Ordering::SeqCst);
                        }
                        if to_server.write_all(&buf[..len]).is_err() {
                            break;
                        }
                        if cut_now {
                            // Time for the namenode to apply it and answer (into the void).
                            std::thread::sleep(Duration::from_millis(50));
                            n.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                    }
                    let _ = from_client.shutdown(std::net::Shutdown::Both);
                    let _ = to_server.shutdown(std::net::Shutdown::Both);
                });
                let (mut from_server, mut to_client) = (server, client);
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(len @ 1..) = from_server.read(&mut buf) {
                        if !lost.load(Ordering::SeqCst) && to_client.write_all(&buf[..len]).is_err()
                        {
                            break;
                        }
                    }
                    let _ = to_client.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        LossyProxy {
            addr,
            cut,
            cut_at,
            cuts,
        }
    }
}

#[test]
fn calls_whose_answer_was_lost_are_answered_from_the_retry_cache() {
    // The mount talks to the namenode through a proxy that, now and then, passes a call on and
    // drops the connection instead of the answer: the namenode applied the call, the mount sees a
    // transport error and sends it again with its retry id. A loop of mkdir, create, rename,
    // symlink, link, unlink and rmdir (each must succeed once) must see no error, the tree must be
    // exactly what its steps imply, and the namenode must have answered repeats from its cache.
    let c = TestCluster::builder().start();
    let proxy = LossyProxy::start(c.namenode_addr());
    let cli = Cli::new(&proxy.addr, &c.root().join("proxied"));
    fs::create_dir_all(c.root().join("proxied")).unwrap();
    let m = cli.mount(&[]);
    let script = EXACTLY_ONCE_LOOP;
    let stop = c.client().scratch_path("stop");
    let (mut looper, rx, reader) = spawn_perl(script, &[m.dir.as_os_str(), stop.as_os_str()]);
    let (mut rounds, mut failed) = (0u64, Vec::new());
    let mut note = |line: String, rounds: &mut u64| match line.strip_prefix("round ") {
        Some(r) => *rounds = r.parse().unwrap(),
        None => failed.push(line),
    };
    const CUTS: usize = 40;
    'cuts: for n in 1..=CUTS {
        // At moments spread over a round, not in step with the loop's output.
        std::thread::sleep(Duration::from_micros(500 * (n as u64 % 13)));
        proxy.cut.store(true, Ordering::SeqCst);
        wait_until(
            Duration::from_secs(30),
            "the proxy to lose an answer",
            || proxy.cuts.load(Ordering::SeqCst) >= n,
        );
        let until = rounds + 1;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while rounds < until {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => note(line, &mut rounds),
                Err(e) => {
                    note(
                        format!("the loop stalled after {rounds} rounds: {e}"),
                        &mut rounds,
                    );
                    break 'cuts;
                }
            }
        }
    }
    fs::write(&stop, b"").unwrap();
    let status = looper.wait().unwrap();
    reader.join().unwrap();
    for line in rx.try_iter() {
        note(line, &mut rounds);
    }
    let mut err = String::new();
    if let Some(mut e) = looper.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        failed.is_empty() && status.success(),
        "{} steps of {rounds} rounds failed: {failed:?} ({status}); stderr: {err}; mount log:\n{}",
        failed.len(),
        log_tail(m.log(), 60)
    );
    assert_rounds_left_their_tree(&m.dir, rounds);
    let log = fs::read_to_string(c.namenode_log()).unwrap_or_default();
    let repeats = log.matches("answered from the retry cache").count();
    eprintln!(
        "{rounds} rounds, {CUTS} answers lost, {repeats} calls answered from the retry cache"
    );
    assert!(
        repeats > 0,
        "no lost answer was of a call the cache answers"
    );
}

#[test]
fn cli_changes_whose_answer_was_lost_succeed_once() {
    // The CLI's mkdir, put, mv and rm through a proxy that loses the answer of exactly that change
    // (cut on the first bytes naming its path): each command succeeds, its change is made once, and
    // the namenode answered each repeat from its retry cache.
    let c = TestCluster::builder().start();
    let proxy = LossyProxy::start(c.namenode_addr());
    fs::create_dir_all(c.root().join("proxied")).unwrap();
    let cli = Cli::new(&proxy.addr, &c.root().join("proxied"));
    let repeats = || {
        let log = fs::read_to_string(c.namenode_log()).unwrap_or_default();
        log.matches("answered from the retry cache").count()
    };
    let lose_answer_of = |needle: &str, args: &[&str]| {
        let before = (repeats(), proxy.cuts.load(Ordering::SeqCst));
        *proxy.cut_at.lock().unwrap() = Some(needle.as_bytes().to_vec());
        cli.ok(args);
        assert_eq!(
            proxy.cuts.load(Ordering::SeqCst),
            before.1 + 1,
            "{args:?}: no answer lost"
        );
        wait_until(Duration::from_secs(10), "the repeat to be logged", || {
            repeats() > before.0
        });
    };
    lose_answer_of("/cli-made", &["mkdir", "/cli-made"]);
    let local = c.client().scratch_path("local");
    fs::write(&local, b"put through a lossy proxy").unwrap();
    lose_answer_of(
        "ringfs-put",
        &["put", local.to_str().unwrap(), "/cli-made/put"],
    );
    lose_answer_of("/cli-made/put", &["mv", "/cli-made/put", "/cli-made/moved"]);
    lose_answer_of("/cli-made/moved", &["rm", "/cli-made/moved"]);
    assert_eq!(c.ls_names("/"), ["cli-made"]);
    assert!(
        c.ls_names("/cli-made").is_empty(),
        "{:?}",
        c.ls_names("/cli-made")
    );
}

#[test]
fn a_write_through_a_hung_datanode_recovers_around_that_node() {
    // A datanode of the pipeline hangs (SIGSTOP) while the mount writes: the write goes on
    // without it after one stall, and the node named failed in the pipeline recovery is the hung
    // one, wherever it is in the pipeline (the hop above it notices: no HTTP/2 keepalive answer,
    // or no packet taken for 30 s), not the first node of the pipeline.
    let c = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .block_size("1MiB")
        .heartbeat("200ms")
        .dead_after("10m")
        .start();
    let m = c.mount(&[]);
    let hung = 1;
    let hung_addr = c.datanode_addr(hung).to_string();
    let pid = c.datanode_pid(hung).expect("datanode runs");
    let data = random_bytes(3 * MIB, 5);
    signal(pid, "-STOP");
    // Writes `bytes` to `name` and fsyncs it, in a thread; Err(..) when it took more than `limit`.
    let write = |name: &str, bytes: &[u8]| {
        let (tx, rx) = mpsc::channel();
        let path = m.path(name);
        let written = bytes.to_vec();
        std::thread::spawn(move || {
            let r = (|| {
                let mut f = std::fs::File::create(&path)?;
                std::io::Write::write_all(&mut f, &written)?;
                f.sync_all()
            })();
            let _ = tx.send(r);
        });
        // The send timeouts of client/src/write.rs (60 s) and of a datanode (30 s), and slack.
        rx.recv_timeout(Duration::from_secs(100))
    };
    let recoveries_in = |log: &str| {
        log.lines()
            .filter(|l| l.contains("pipeline updated"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let r = write("f", &data);
    let log = fs::read_to_string(c.namenode_log()).unwrap_or_default();
    if r.is_err() {
        signal(pid, "-CONT");
    }
    r.expect("a write with a hung datanode took more than 100 s")
        .expect("write and fsync with one of three datanodes hung");
    // The next file's blocks are placed without the node that just stalled the mount: no second
    // stall and no second recovery (the mount accepts fewer than R replicas and the namenode adds
    // the missing ones later; it used to offer the hung node again for every new block).
    let more = random_bytes(2 * MIB, 6);
    let r = write("g", &more);
    let log_after = fs::read_to_string(c.namenode_log()).unwrap_or_default();
    // Before the node resumes: then the namenode adds the replicas the two files lack, on it.
    let stats = if r.is_ok() {
        vec![("/f", c.stat_json("/f")), ("/g", c.stat_json("/g"))]
    } else {
        Vec::new()
    };
    signal(pid, "-CONT");
    r.expect("a second write with a hung datanode took more than 100 s")
        .expect("second write and fsync with one of three datanodes hung");
    assert_same_bytes(&fs::read(m.path("f")).unwrap(), &data, "f");
    assert_same_bytes(&fs::read(m.path("g")).unwrap(), &more, "g");
    let recoveries = recoveries_in(&log);
    assert_eq!(
        recoveries_in(&log_after),
        recoveries,
        "the second file's write went through the hung node again"
    );
    assert!(
        !recoveries.is_empty(),
        "no pipeline recovery in the namenode log"
    );
    for l in &recoveries {
        let failed = l
            .split("failed=[")
            .nth(1)
            .and_then(|s| s.split(']').next())
            .unwrap_or_default();
        let first = failed
            .split(',')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches('"');
        assert_eq!(first, hung_addr, "the node first named failed: {l}");
    }
    for (f, stat) in &stats {
        for b in stat_blocks(stat) {
            assert!(!block_locations(&b).contains(&hung_addr), "{f}: {b}");
        }
    }
}

#[test]
fn a_paused_namenode_does_not_declare_its_datanodes_dead_when_it_resumes() {
    // SIGSTOP of the namenode for longer than dead_after: at SIGCONT every datanode looked silent
    // and was declared dead at once (the mount's next fsync got ENOSPC: "need 1, have 0"). The
    // time the namenode did not run now does not count against them.
    let c = TestCluster::builder()
        .datanodes(3)
        .heartbeat("200ms")
        .dead_after("2s")
        .start();
    let m = c.mount(&[]);
    let mut f = std::fs::File::create(m.path("f")).unwrap();
    std::io::Write::write_all(&mut f, &random_bytes(MIB, 9)).unwrap();
    let pid = c.namenode_pid().expect("namenode runs");
    signal(pid, "-STOP");
    std::thread::sleep(Duration::from_secs(5)); // the pause under test, not a wait for a condition
    signal(pid, "-CONT");
    f.sync_all().expect("fsync after the namenode resumed");
    // Give its monitors a few ticks after the resume.
    c.put_bytes("/after", b"after the pause");
    wait_until(
        Duration::from_secs(10),
        "the namenode to note the pause",
        || {
            fs::read_to_string(c.namenode_log())
                .unwrap_or_default()
                .contains("did not run for a while")
        },
    );
    let log = fs::read_to_string(c.namenode_log()).unwrap();
    let seen: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("datanode dead: ") || l.contains("did not run"))
        .collect();
    assert!(
        !seen.iter().any(|l| l.contains("datanode dead: ")),
        "datanodes declared dead after the pause: {seen:#?}"
    );
}
