//! Faults against the core: `kill -9` of the namenode during and after a burst of metadata operations,
//! `kill -9` of a datanode before anyone notices, corrupted replica files, live/dead reporting, a mount
//! and a put riding out a namenode restart.

use crate::cluster::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the namespace should hold: path -> None for a directory, Some(contents) for a file.
type Model = BTreeMap<String, Option<Vec<u8>>>;

/// A tiny deterministic generator so a failing burst can be replayed from its seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, v: &'a [String]) -> Option<&'a String> {
        if v.is_empty() {
            None
        } else {
            Some(&v[self.below(v.len())])
        }
    }
}

fn dirs(m: &Model) -> Vec<String> {
    let mut v: Vec<String> = m
        .iter()
        .filter(|(_, c)| c.is_none())
        .map(|(p, _)| p.clone())
        .collect();
    v.push(String::new()); // the root, as the "" prefix
    v
}

fn files(m: &Model) -> Vec<String> {
    m.iter()
        .filter(|(_, c)| c.is_some())
        .map(|(p, _)| p.clone())
        .collect()
}

/// A namespace operation of the burst, applied to the model only once the CLI acknowledged it.
#[derive(Clone, Debug)]
enum Op {
    Mkdir(String),
    Put(String, Vec<u8>),
    MvFile(String, String),
    MvDir(String, String),
    Rm(String),
    RmR(String),
}

impl Op {
    /// Picks a random valid operation for the current model (`with_puts` = data writes allowed).
    fn random(m: &Model, rng: &mut Rng, n: usize, with_puts: bool) -> Op {
        let ds = dirs(m);
        let fs = files(m);
        loop {
            let parent = rng.pick(&ds).unwrap().clone();
            match rng.below(10) {
                0 | 1 => return Op::Mkdir(format!("{parent}/d{n}")),
                2..=4 if with_puts => {
                    let len = rng.below(150 * KIB);
                    return Op::Put(format!("{parent}/f{n}"), random_bytes(len, rng.next()));
                }
                5 | 6 => {
                    if let Some(f) = rng.pick(&fs) {
                        // Half of the time onto another existing file (rename over a target).
                        let to = match rng.pick(&fs) {
                            Some(t) if t != f && rng.below(2) == 0 => t.clone(),
                            _ => format!("{parent}/m{n}"),
                        };
                        return Op::MvFile(f.clone(), to);
                    }
                }
                7 => {
                    let real: Vec<String> = ds.iter().filter(|d| !d.is_empty()).cloned().collect();
                    if let Some(d) = rng.pick(&real) {
                        let to = format!("{parent}/r{n}");
                        if !to.starts_with(&format!("{d}/")) {
                            return Op::MvDir(d.clone(), to);
                        }
                    }
                }
                8 => {
                    if let Some(f) = rng.pick(&fs) {
                        return Op::Rm(f.clone());
                    }
                }
                9 => {
                    let real: Vec<String> = ds.iter().filter(|d| !d.is_empty()).cloned().collect();
                    if let Some(d) = rng.pick(&real) {
                        if rng.below(3) == 0 {
                            return Op::RmR(d.clone());
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Runs it through the CLI; true when acknowledged (exit 0).
    fn run(&self, cli: &Cli) -> bool {
        let out = match self {
            Op::Mkdir(p) => cli.run(&["mkdir", p]),
            Op::Put(p, data) => {
                let local = cli.scratch_path("burst");
                std::fs::write(&local, data).unwrap();
                let out = cli.run(&["put", local.to_str().unwrap(), p]);
                let _ = std::fs::remove_file(&local);
                out
            }
            Op::MvFile(a, b) | Op::MvDir(a, b) => cli.run(&["mv", a, b]),
            Op::Rm(p) => cli.run(&["rm", p]),
            Op::RmR(p) => cli.run(&["rm", "-r", p]),
        };
        out.status.success()
    }

    fn apply(&self, m: &mut Model) {
        match self {
            Op::Mkdir(p) => {
                m.insert(p.clone(), None);
            }
            Op::Put(p, data) => {
                m.insert(p.clone(), Some(data.clone()));
            }
            Op::MvFile(a, b) => {
                let v = m.remove(a).unwrap();
                m.insert(b.clone(), v);
            }
            Op::MvDir(a, b) => {
                let prefix = format!("{a}/");
                let moved: Vec<String> = m
                    .keys()
                    .filter(|k| *k == a || k.starts_with(&prefix))
                    .cloned()
                    .collect();
                for k in moved {
                    let v = m.remove(&k).unwrap();
                    m.insert(format!("{b}{}", &k[a.len()..]), v);
                }
            }
            Op::Rm(p) => {
                m.remove(p);
            }
            Op::RmR(p) => {
                let prefix = format!("{p}/");
                m.retain(|k, _| k != p && !k.starts_with(&prefix));
            }
        }
    }
}

/// The tree as the model says `tree()` should show it.
fn model_tree(m: &Model) -> BTreeMap<String, (String, u64)> {
    m.iter()
        .map(|(p, c)| match c {
            None => (p.clone(), ("dir".to_string(), 0)),
            Some(d) => (p.clone(), ("file".to_string(), d.len() as u64)),
        })
        .collect()
}

/// Waits until the restarted namenode has its datanodes back and knows every block's replicas again.
fn wait_recovered(c: &TestCluster, datanodes: usize) {
    c.wait_live_datanodes(datanodes, Duration::from_secs(30));
    wait_for(
        Duration::from_secs(60),
        "every block reported again after the namenode restart",
        || {
            let f = c.fsck_json("/");
            let missing = f.get("missing").and_then(Value::as_u64).unwrap_or(1);
            let safe = f.get("safe_mode").and_then(Value::as_bool).unwrap_or(false);
            if missing == 0 && !safe {
                Ok(())
            } else {
                Err(f.to_string())
            }
        },
    );
}

/// Every directory and file of the model is there with its contents, and nothing else.
#[track_caller]
fn assert_matches_model(c: &TestCluster, m: &Model) {
    assert_eq!(
        c.tree("/"),
        model_tree(m),
        "namespace after restart differs from every acknowledged change"
    );
    for (p, content) in m {
        if let Some(want) = content {
            assert_same_bytes(&c.get_bytes(p), want, p);
        }
    }
}

#[test]
fn namenode_kill_9_after_a_burst_loses_no_acknowledged_change() {
    // A burst of mkdir/put/mv/rm, then `kill -9` of the namenode and a restart on the same dir: every
    // acknowledged change is there and every file reads back identical.
    let mut c = TestCluster::builder().block_size("64KiB").start();
    let cli = c.client();
    let mut model = Model::new();
    let mut rng = Rng(0x5eed_0001);
    for n in 0..120 {
        let op = Op::random(&model, &mut rng, n, true);
        assert!(op.run(&cli), "burst operation {n} failed: {op:?}");
        op.apply(&mut model);
    }
    c.kill_namenode();
    c.restart_namenode();
    wait_recovered(&c, 3);
    assert_matches_model(&c, &model);
    // The restarted namenode takes new work: ids handed out before the crash are not reused.
    c.put_bytes("/after-restart", b"new");
    assert_eq!(c.get_bytes("/after-restart"), b"new");
    model.insert("/after-restart".into(), Some(b"new".to_vec()));
    assert_matches_model(&c, &model);
}

#[test]
fn a_read_right_after_a_namenode_restart_waits_for_the_block_reports() {
    // Until the datanodes re-register and report (here up to 2 s, their heartbeat), the restarted
    // namenode knows no replica: a get at that moment waits for them instead of failing with
    // "no replica is known" (a mount's read got EIO; sqlite called its database malformed).
    let mut c = TestCluster::builder()
        .heartbeat("2s")
        .dead_after("10s")
        .block_size("256KiB")
        .start();
    let data = random_bytes(1 << 20, 31);
    c.put_bytes("/f", &data);
    c.kill_namenode();
    c.restart_namenode();
    let started = Instant::now();
    assert_same_bytes(&c.get_bytes("/f"), &data, "/f read right after the restart");
    eprintln!("read after the restart took {:?}", started.elapsed());
}

#[test]
fn namenode_kill_9_during_a_burst_keeps_every_acknowledged_change() {
    // Metadata operations run back to back while the namenode is killed -9 and restarted: every operation
    // that was acknowledged is there; the one in flight either happened completely or not at all.
    let mut c = TestCluster::builder().block_size("64KiB").start();
    let cli = c.client();
    let mut model = Model::new();
    let mut rng = Rng(0x5eed_0002);
    // Some files first, so renames and deletes have data to move.
    for n in 0..15 {
        let op = Op::Put(
            format!("/seed{n}"),
            random_bytes(rng.below(100 * KIB), n as u64),
        );
        assert!(op.run(&cli), "{op:?}");
        op.apply(&mut model);
    }
    let acked = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // (model after every acknowledged op, the op in flight when a failure was seen)
    let state = Arc::new(Mutex::new((model.clone(), None::<Op>)));
    let worker = {
        let (acked, stop, state, cli) = (acked.clone(), stop.clone(), state.clone(), cli.clone());
        std::thread::spawn(move || {
            let mut model = model;
            let mut n = 1000;
            while !stop.load(Ordering::SeqCst) {
                let op = Op::random(&model, &mut rng, n, false);
                n += 1;
                if op.run(&cli) {
                    op.apply(&mut model);
                    state.lock().unwrap().0 = model.clone();
                    acked.fetch_add(1, Ordering::SeqCst);
                } else {
                    state.lock().unwrap().1 = Some(op);
                    return;
                }
            }
        })
    };
    wait_until(
        Duration::from_secs(120),
        "40 acknowledged operations before the kill",
        || acked.load(Ordering::SeqCst) >= 40,
    );
    c.kill_namenode();
    c.restart_namenode();
    stop.store(true, Ordering::SeqCst);
    worker.join().unwrap();
    wait_recovered(&c, 3);
    let (model, in_flight) = state.lock().unwrap().clone();
    let got = c.tree("/");
    match in_flight {
        None => assert_eq!(
            got,
            model_tree(&model),
            "namespace differs from the acknowledged operations"
        ),
        Some(op) => {
            let mut after = model.clone();
            op.apply(&mut after);
            assert!(
                got == model_tree(&model) || got == model_tree(&after),
                "namespace is neither before nor after the in-flight {op:?}:\n got {got:?}\n before {:?}",
                model_tree(&model)
            );
            if got == model_tree(&after) {
                assert_matches_model(&c, &after);
                return;
            }
        }
    }
    assert_matches_model(&c, &model);
}

#[test]
fn datanode_kill_9_leaves_every_file_readable() {
    // `kill -9` one of four datanodes (before the namenode notices): get of every file, at R=3 and R=2,
    // still returns identical bytes.
    let mut c = TestCluster::builder()
        .datanodes(4)
        .block_size("256KiB")
        .start();
    let mut files = Vec::new();
    for n in 0..6u64 {
        let data = random_bytes(700 * KIB + n as usize * 1000, n);
        let path = format!("/f{n}");
        let extra: &[&str] = if n % 2 == 0 { &[] } else { &["-r", "2"] };
        c.put_bytes_with(&path, &data, extra);
        files.push((path, data));
    }
    // Kill the datanode holding the most replicas, so reads surely meet it.
    let busiest = (0..4).max_by_key(|&i| c.replicas_on(i).len()).unwrap();
    assert!(!c.replicas_on(busiest).is_empty());
    c.kill_datanode(busiest);
    for (path, data) in &files {
        assert_same_bytes(&c.get_bytes(path), data, path);
        let cat = c.run(&["cat", path]);
        assert!(
            cat.status.success(),
            "cat {path}: {}",
            String::from_utf8_lossy(&cat.stderr)
        );
        assert_same_bytes(&cat.stdout, data, path);
    }
}

#[test]
fn corrupted_replica_is_read_around_and_reported_to_the_namenode() {
    corrupted_replica_is_read_around(false);
}

#[test]
fn corrupted_replica_is_read_around_and_reported_by_a_reader_over_the_network() {
    corrupted_replica_is_read_around(true);
}

/// `get` of `path`, reading over the network when `network_only` (no short-circuit reads).
fn get_bytes_via(c: &TestCluster, path: &str, network_only: bool) -> Vec<u8> {
    if network_only {
        c.get_bytes_over_network(path)
    } else {
        c.get_bytes(path)
    }
}

fn corrupted_replica_is_read_around(network_only: bool) {
    // Overwrite bytes inside replica files on disk: get still returns identical bytes, and fsck shows the
    // bad replica (corrupt count or a problem naming the block). The reader on the datanodes' host
    // reads the replica files itself (short-circuit) unless `network_only`.
    let c = TestCluster::builder()
        .datanodes(3)
        .block_size("256KiB")
        .heartbeat("1s")
        .start();
    let data = random_bytes(1024 * KIB, 42);
    c.put_bytes("/f", &data);
    // Replicas are listed by the active transfers of the nodes' last heartbeats: wait for heartbeats
    // sent after the put, so the order stat shows is still the order when get runs.
    let put_done = Instant::now();
    wait_until(Duration::from_secs(20), "heartbeats after the put", || {
        let since = put_done.elapsed().as_millis() as u64;
        report_datanodes(&c.report_json())
            .iter()
            .all(|d| since > field_u64(d, "last_heartbeat_ms") + 200)
    });
    let st = c.stat_json("/f");
    // For each block, corrupt the replica on the datanode listed first (the one readers try first).
    let mut corrupted = Vec::new();
    let mut corrupted_files = Vec::new();
    for b in stat_blocks(&st) {
        let (id, gen) = (field_u64(&b, "id"), field_u64(&b, "generation"));
        let first = block_locations(&b)[0].clone();
        let dn = c.datanode_index(&first);
        let r = c
            .replicas_on(dn)
            .into_iter()
            .find(|r| r.block_id == id && r.generation == gen)
            .unwrap_or_else(|| panic!("no replica file of block {id}_{gen} on {first}"));
        corrupt_file(&r.path, r.len / 2, 100);
        corrupted.push(id);
        corrupted_files.push((r.path.clone(), hash_file(&r.path)));
    }
    assert_same_bytes(
        &get_bytes_via(&c, "/f", network_only),
        &data,
        "/f with corrupted replicas",
    );
    let reported = |f: &Value| {
        let n = |k: &str| f.get(k).and_then(Value::as_u64).unwrap_or(0);
        let problem = f
            .get("problems")
            .and_then(Value::as_array)
            .is_some_and(|ps| {
                ps.iter().any(|p| {
                    p.get("block_id")
                        .and_then(Value::as_u64)
                        .is_some_and(|b| corrupted.contains(&b))
                })
            });
        n("corrupt_replicas") > 0 || n("corrupt") > 0 || problem
    };
    // The report may race with the repair (issue 4): a bad replica file already deleted or rewritten also
    // proves the namenode was told.
    let repaired = || {
        corrupted_files
            .iter()
            .any(|(path, bad)| match std::fs::read(path) {
                Ok(bytes) => blake3::hash(&bytes) != *bad,
                Err(_) => true,
            })
    };
    wait_for(
        Duration::from_secs(10),
        "fsck to show the bad replicas reported by the reader",
        || {
            let f = c.fsck_json("/");
            if reported(&f) || repaired() {
                Ok(())
            } else {
                Err(f.to_string())
            }
        },
    );
    // Reading again still works (the namenode may already have replaced them).
    assert_same_bytes(
        &get_bytes_via(&c, "/f", network_only),
        &data,
        "/f read again",
    );
}

#[test]
fn report_shows_a_killed_datanode_dead_and_a_restarted_one_live() {
    // A killed datanode turns "dead" after --dead-after; restarted on the same dir and address it is "live" again.
    let mut c = TestCluster::builder()
        .datanodes(3)
        .heartbeat("100ms")
        .dead_after("1s")
        .start();
    let victim = c.datanode_addr(1).to_string();
    let state_of = |c: &TestCluster, addr: &str| -> String {
        let report = c.report_json();
        let dns = report_datanodes(&report);
        let d = dns
            .iter()
            .find(|d| field_str(d, "address") == addr)
            .unwrap_or_else(|| panic!("{addr} not in {report}"));
        field_str(d, "state").to_string()
    };
    c.kill_datanode(1);
    wait_until(
        Duration::from_secs(15),
        "the killed datanode to be reported dead",
        || state_of(&c, &victim) == "dead",
    );
    // The others stay live (polled: with a 1 s dead-after a loaded machine may delay a heartbeat).
    wait_until(
        Duration::from_secs(15),
        "the other two datanodes live",
        || c.live_datanodes() == 2,
    );
    // A restarted namenode still lists it, dead (it forgot it: `report` showed a smaller healthy
    // cluster). Forgetting it drops it for good; a live node cannot be forgotten.
    c.kill_namenode();
    c.restart_namenode();
    wait_until(
        Duration::from_secs(15),
        "the two live datanodes back after the namenode restart",
        || c.live_datanodes() == 2,
    );
    // Listed once it has had dead_after to register again (not at once: every node would
    // flash "dead" right after a restart).
    let listed_as = |c: &TestCluster, addr: &str| -> Option<String> {
        report_datanodes(&c.report_json())
            .iter()
            .find(|d| field_str(d, "address") == addr)
            .map(|d| field_str(d, "state").to_string())
    };
    wait_until(
        Duration::from_secs(15),
        "the node that stayed down listed dead",
        || listed_as(&c, &victim).as_deref() == Some("dead"),
    );
    let live = c.datanode_addr(0).to_string();
    c.fails(&["admin", "forget", &live])
        .says(&[&live, "is alive"]);
    assert_eq!(state_of(&c, &live), "live");
    c.ok(&["admin", "forget", &victim]);
    let listed = |c: &TestCluster| -> Vec<String> {
        report_datanodes(&c.report_json())
            .iter()
            .map(|d| field_str(d, "address").to_string())
            .collect()
    };
    assert!(!listed(&c).contains(&victim), "{:?}", listed(&c));
    c.kill_namenode();
    c.restart_namenode();
    wait_until(
        Duration::from_secs(15),
        "the two live datanodes back after the second restart",
        || c.live_datanodes() == 2,
    );
    assert_eq!(listed(&c).len(), 2, "{:?}", listed(&c));
    c.restart_datanode(1);
    wait_until(
        Duration::from_secs(15),
        "the restarted datanode to be reported live",
        || state_of(&c, &victim) == "live",
    );
    assert_eq!(
        report_datanodes(&c.report_json()).len(),
        3,
        "the restarted datanode appears twice"
    );
}

#[test]
fn report_lists_a_reinstalled_datanode_once() {
    // A datanode reinstalled on the same address (data dir wiped: a new id), before and after the
    // namenode declared the old one dead, is listed once, live; the old id is dropped, not left
    // as a dead node beside it, and the blocks it held are copied back.
    let mut c = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .block_size("64KiB")
        .heartbeat("100ms")
        .dead_after("1s")
        .start();
    let data = random_bytes(300 * KIB, 7);
    c.put_bytes("/f", &data);
    let victim = c.datanode_addr(1).to_string();
    let listed = |c: &TestCluster| -> Vec<(String, String, String)> {
        report_datanodes(&c.report_json())
            .iter()
            .map(|d| {
                let s = |k| field_str(d, k).to_string();
                (s("address"), s("state"), s("id"))
            })
            .collect()
    };
    let id_of = |c: &TestCluster| -> String {
        listed(c)
            .into_iter()
            .find(|(a, _, _)| *a == victim)
            .map(|(_, _, id)| id)
            .unwrap()
    };
    let mut ids = vec![id_of(&c)];
    for wait_dead in [false, true] {
        c.kill_datanode(1);
        if wait_dead {
            wait_until(
                Duration::from_secs(15),
                "the killed datanode to be reported dead",
                || {
                    listed(&c)
                        .iter()
                        .any(|(a, s, _)| *a == victim && s == "dead")
                },
            );
        }
        let dir = c.datanode_dir(1).to_path_buf();
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        c.restart_datanode(1);
        let new_id = wait_for(
            Duration::from_secs(15),
            "the reinstalled datanode to register under a new id",
            || {
                let l = listed(&c);
                let new = l
                    .iter()
                    .find(|(a, s, id)| *a == victim && s == "live" && !ids.contains(id));
                match new {
                    Some((_, _, id)) => Ok(id.clone()),
                    None => Err(format!("{l:?}")),
                }
            },
        );
        // Every listed node live (polled: with a 1 s dead-after a loaded machine may delay a
        // heartbeat); a second entry for the reinstalled node would never be.
        let l = wait_for(
            Duration::from_secs(15),
            "every listed datanode live",
            || {
                let l = listed(&c);
                if l.iter().all(|(_, s, _)| s == "live") {
                    Ok(l)
                } else {
                    Err(format!("{l:?}"))
                }
            },
        );
        assert_eq!(l.len(), 3, "a datanode is listed twice: {l:?}");
        ids.push(new_id);
        c.wait_healthy("/", 3, Duration::from_secs(30));
        assert_same_bytes(&c.get_bytes("/f"), &data, "/f");
    }
}

#[test]
fn a_second_node_on_a_data_dir_in_use_fails_naming_the_dir_and_never_says_listening() {
    // `ringfs namenode` / `ringfs datanode` on a data dir another process uses exits non-zero with
    // one error naming the dir, and prints no "listening on" first (it did, before the lock).
    let c = TestCluster::builder().datanodes(1).replication(1).start();
    let nn_dir = c.namenode_dir().to_str().unwrap().to_string();
    let dn_dir = c.datanode_dir(0).to_str().unwrap().to_string();
    for (role, dir, extra) in [
        ("namenode", &nn_dir, vec![]),
        ("datanode", &dn_dir, vec!["--namenode", c.namenode_addr()]),
    ] {
        let mut args = vec![role, "--data-dir", dir.as_str(), "--listen", "127.0.0.1:0"];
        args.extend(extra);
        let mut cmd = std::process::Command::new(bin());
        cmd.args(&args).env("RUST_LOG", "error");
        let out = run_with_timeout(cmd, None, role, Duration::from_secs(30));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{role}: {stdout} {stderr}");
        assert_eq!(stdout, "", "{role} printed on stdout before failing");
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("ringfs:"))
            .collect();
        assert_eq!(errors.len(), 1, "{role}: {stderr}");
        assert!(
            errors[0].contains(dir.as_str())
                && errors[0].contains("in use by a running namenode or datanode"),
            "{role}: {}",
            errors[0]
        );
    }
    // The running cluster is unharmed.
    c.put_bytes("/f", b"still here");
    assert_eq!(c.get_bytes("/f"), b"still here");
}

#[test]
fn namenode_restart_after_sigterm_keeps_everything() {
    // A clean stop (SIGTERM) and restart of the namenode keeps the namespace and the data readable.
    let mut c = TestCluster::builder().block_size("64KiB").start();
    c.ok(&["mkdir", "-p", "/x/y"]);
    let data = random_bytes(300 * KIB, 3);
    c.put_bytes("/x/y/f", &data);
    let status = c.stop_namenode();
    assert!(
        status.success() || status.code().is_none(),
        "namenode exited with {status} on SIGTERM"
    );
    c.restart_namenode();
    wait_recovered(&c, 3);
    assert_same_bytes(&c.get_bytes("/x/y/f"), &data, "/x/y/f");
    assert_eq!(c.tree("/").len(), 3);
}

#[test]
fn datanode_with_another_cluster_secret_is_refused() {
    // A cluster run with a secret file serves reads and writes; a datanode started with a different secret is
    // refused at registration ("wrong cluster secret") and never shows up in report.
    let base = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(&base).unwrap();
    let secrets = tempfile::tempdir_in(&base).unwrap();
    let (good, bad) = (secrets.path().join("good"), secrets.path().join("bad"));
    std::fs::write(&good, "the-real-cluster-secret\n").unwrap();
    std::fs::write(&bad, "somebody-elses-secret\n").unwrap();
    let (good, bad) = (good.to_str().unwrap(), bad.to_str().unwrap());
    let mut c = TestCluster::builder()
        .namenode_arg(&["--secret-file", good])
        .datanode_arg(&["--secret-file", good])
        .start();
    let data = random_bytes(300 * KIB, 1);
    c.put_bytes("/f", &data);
    assert_same_bytes(&c.get_bytes("/f"), &data, "/f");
    let intruder = c.add_datanode_with(&["--secret-file", bad]);
    let log = c.datanode_log(intruder).to_path_buf();
    wait_until(
        Duration::from_secs(15),
        "the datanode with the wrong secret to be refused",
        || log_tail(&log, 200).contains("wrong cluster secret"),
    );
    let addrs: Vec<String> = report_datanodes(&c.report_json())
        .iter()
        .map(|d| field_str(d, "address").to_string())
        .collect();
    assert_eq!(addrs.len(), 3, "{addrs:?}");
    assert!(!addrs.contains(&c.datanode_addr(intruder).to_string()));
}

#[test]
fn a_put_rides_out_a_namenode_restart_and_the_loss_of_a_pipeline_datanode_at_once() {
    // kill -9 of the namenode and of a datanode in the pipeline of the block being written: the
    // restarted namenode never saw that block's allocation (allocations are not logged), and the
    // writer's pipeline recovery of it was refused ("block N is not a block of it"), so the put (or
    // a mount's close) failed. Now the recovery takes the allocation up again.
    // The CLI reads stdin in 4 MiB pieces and sends each as it comes. With 6 MiB blocks, two pieces
    // fill block 1 and leave block 2 open with 2 MiB in it until more input comes: the pipeline is
    // idle and its datanodes hold the open block in tmp/ for as long as the test needs. (With 4 MiB
    // blocks each piece filled a block and its tmp replica lived only while it streamed: a fast
    // machine never saw one.)
    let mut c = TestCluster::builder()
        .datanodes(4)
        .block_size("6MiB")
        .dead_after("3s")
        .start();
    let mut sent = random_bytes(8 * MIB + 300 * KIB, 91);
    let mut put = c.spawn(&["put", "-", "/f"], Stdio::piped());
    let mut stdin = put.stdin.take().unwrap();
    stdin.write_all(&sent).unwrap();
    // Block 1 is finalized once piece 2 reached it; from then on a 2 MiB tmp replica is block 2's
    // (block 1's was past 4 MiB when piece 2 came). Blocks reach the namenode's file only at close.
    let has_data = |dir: PathBuf, len: Option<u64>| {
        fs::read_dir(dir).is_ok_and(|d| {
            d.flatten().any(|e| {
                e.file_name().to_string_lossy().ends_with(".data")
                    && len.is_none_or(|len| e.metadata().is_ok_and(|m| m.len() == len))
            })
        })
    };
    let in_pipeline = wait_for(
        Duration::from_secs(60),
        "block 1 finalized and a datanode holding the 2 MiB of the open block 2",
        || {
            let finalized = (0..4).any(|i| {
                fs::read_dir(c.datanode_dir(i).join("blocks"))
                    .is_ok_and(|d| d.flatten().any(|sub| has_data(sub.path(), None)))
            });
            if !finalized {
                return Err("no finalized replica yet".to_string());
            }
            (0..4)
                .find(|&i| has_data(c.datanode_dir(i).join("tmp"), Some(2 * MIB as u64)))
                .ok_or_else(|| "no tmp replica of 2 MiB".to_string())
        },
    );
    c.kill_namenode();
    c.kill_datanode(in_pipeline);
    c.restart_namenode();
    let second = random_bytes(2 * MIB + 5, 92);
    stdin.write_all(&second).unwrap();
    drop(stdin);
    let status = put.wait().unwrap();
    let scratch = c.scratch_path("x").parent().unwrap().to_path_buf();
    let err: String = fs::read_dir(&scratch)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("-bg.stderr"))
        .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(status.success(), "put failed: {status}: {err}");
    sent.extend_from_slice(&second);
    assert_same_bytes(&c.get_bytes("/f"), &sent, "/f");
}

#[test]
fn a_mount_and_a_running_put_ride_out_a_namenode_restart() {
    // `kill -9` of the namenode while a mount is in use and a put streams from a pipe: calls made
    // while it is down wait for it (they never reached it, so waiting is safe), and after the
    // restart both finish and every byte reads back.
    let mut c = TestCluster::builder().block_size("1MiB").start();
    let m = c.client().mount(&[]);
    fs::write(m.path("before"), b"written before the restart").unwrap();
    // The CLI reads stdin in 4 MiB pieces: two whole pieces reach the cluster, the rest waits.
    let first = random_bytes(9 * MIB + 300 * KIB, 81);
    let second = random_bytes(2 * MIB, 82);
    let mut put = c.spawn(&["put", "-", "/streamed"], Stdio::piped());
    let mut stdin = put.stdin.take().unwrap();
    stdin.write_all(&first).unwrap();
    // Kill when the put is idle (7 blocks committed; the 8th, full, ends when more input comes), so no
    // call of it is on the wire: those calls have an unknown outcome and fail.
    wait_for(
        Duration::from_secs(30),
        "the put to commit 7 blocks",
        || match c.file_being_written("/") {
            Some(st) if stat_blocks(&st).len() == 7 => Ok(()),
            Some(st) => Err(st.to_string()),
            None => Err(c.ok(&["ls", "-l", "/"])),
        },
    );
    c.kill_namenode();
    // The mount notices (its lease renewer finds the connection gone and starts waiting) before the
    // create below is made: a call sent on the dying connection itself would fail, its outcome unknown.
    wait_until(
        Duration::from_secs(30),
        "the mount to wait for the namenode",
        || fs::read_to_string(m.log()).is_ok_and(|l| l.contains("server not reachable; waiting")),
    );
    // A create through the mount while nothing listens on the namenode's address: it blocks.
    let during = m.path("during");
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn(move || {
        // SAFETY: gettid(2) has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        fs::write(during, b"written while the namenode was down")
    });
    let tid = tid_rx.recv().unwrap();
    let syscall = format!("/proc/self/task/{tid}/syscall");
    wait_until(
        Duration::from_secs(30),
        "the create to block in the kernel (or return)",
        || {
            writer.is_finished()
                || fs::read_to_string(&syscall).is_ok_and(|s| {
                    s.split(' ')
                        .next()
                        .is_some_and(|n| n.parse::<u64>().is_ok())
                })
        },
    );
    assert!(
        !writer.is_finished(),
        "the write returned while the namenode was down"
    );
    c.restart_namenode();
    writer
        .join()
        .unwrap()
        .expect("a write made while the namenode was down failed after it came back");
    stdin.write_all(&second).unwrap();
    drop(stdin);
    let out = put.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "put failed across the namenode restart: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = first;
    want.extend_from_slice(&second);
    assert_same_bytes(&c.get_bytes("/streamed"), &want, "/streamed");
    assert_eq!(
        c.get_bytes("/during"),
        b"written while the namenode was down"
    );
    assert_eq!(
        fs::read(m.path("before")).unwrap(),
        b"written before the restart"
    );
    c.wait_healthy("/", 3, Duration::from_secs(30));
}

#[test]
fn put_fails_rather_than_acknowledge_blocks_on_fewer_replicas_than_asked() {
    // R=3 on exactly three datanodes, one `kill -9`ed in the middle of a put (before the namenode
    // notices): no replacement exists, so the put must fail with a clear message, not succeed with
    // blocks on two replicas, and leave nothing in the namespace.
    let mut c = TestCluster::builder()
        .datanodes(3)
        .replication(3)
        .block_size("4MiB")
        .heartbeat("200ms")
        .dead_after("60s")
        .start();
    let cli = c.client();
    let local = c.scratch_path("300mib");
    write_random_file(&local, 300 * MIB as u64, 41);
    let stderr_path = c.scratch_path("put.stderr");
    let mut put = cli
        .command(&["put", local.to_str().unwrap(), "/big"])
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(120),
        "the put to have committed a block",
        || {
            if let Ok(Some(status)) = put.try_wait() {
                panic!("put ended ({status}) before a datanode could be killed");
            }
            c.file_being_written("/")
                .is_some_and(|st| stat_blocks(&st).len() >= 2)
        },
    );
    c.kill_datanode(1);
    let status = wait_for(Duration::from_secs(300), "the put to finish", || {
        put.try_wait().unwrap().ok_or_else(String::new)
    });
    let stderr = fs::read_to_string(&stderr_path).unwrap();
    if status.success() {
        // Only acceptable if every block really is on three datanodes that are still running.
        let dead = c.datanode_addr(1).to_string();
        for b in stat_blocks(&cli.stat_json("/big")) {
            let locs = block_locations(&b);
            assert!(
                locs.len() == 3 && !locs.contains(&dead),
                "put succeeded but block {b} is not on 3 live datanodes"
            );
        }
        panic!("put succeeded with one of three datanodes dead");
    }
    let text = stderr.trim();
    assert_eq!(text.lines().count(), 1, "stderr is not one line: {text:?}");
    assert!(
        // (How many it counts as left depends on where the pipeline broke: a node cannot tell
        // whether the hops after a failed one stored the replica.)
        text.contains("/big") && text.contains("not enough live datanodes: need 3, have "),
        "unclear error: {text:?}"
    );
    assert_eq!(
        cli.ls_names("/"),
        Vec::<String>::new(),
        "the failed put left files behind"
    );
}

#[test]
fn put_succeeds_with_two_of_five_datanodes_killed_before_the_namenode_notices() {
    // R=3 on five datanodes, two `kill -9`ed and not yet declared dead: three live nodes are
    // enough, so every put must succeed. Pipeline recovery must not swap one dead node for the
    // other dead one until it runs out of attempts (it did: the namenode was told only the latest
    // failed node, so it offered the previous one again).
    let mut c = TestCluster::builder()
        .datanodes(5)
        .replication(3)
        .block_size("256KiB")
        .heartbeat("200ms")
        .dead_after("60s")
        .start();
    c.kill_datanode(0);
    c.kill_datanode(3);
    let cli = c.client();
    for n in 0..12u64 {
        let data = random_bytes(5 * 256 * KIB + 1000, 100 + n);
        let path = format!("/f{n}");
        cli.put_bytes(&path, &data);
        assert_same_bytes(&cli.get_bytes(&path), &data, &path);
    }
}

#[test]
fn a_mount_lookup_fails_within_the_reconnect_wait_when_the_namenode_stays_down() {
    // `kill -9` of the namenode, not restarted: a lookup on the mount waits for it (60 s) and then
    // fails with EIO. It was sent again after each 60 s wait, so one `stat` hung for 3-4 minutes
    // (and `find` behind an `rsync` in the same directory for 11).
    let mut c = TestCluster::builder().start();
    let m = c.client().mount(&[]);
    fs::create_dir(m.path("d")).unwrap();
    fs::metadata(m.path("d")).unwrap();
    c.kill_namenode();
    let start = std::time::Instant::now();
    let path = m.path("d/never-looked-up");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(fs::metadata(&path).map(|_| ()));
    });
    let res = rx
        .recv_timeout(Duration::from_secs(110))
        .unwrap_or_else(|_| {
            panic!("stat on the mount still hangs after 110 s with the namenode down")
        });
    let err = res.expect_err("stat succeeded with the namenode down");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        start.elapsed() >= Duration::from_secs(30),
        "gave up before waiting for the namenode"
    );
}

#[test]
fn changes_through_a_mount_survive_a_namenode_kill_9_the_moment_they_return() {
    // The namenode acknowledges a mutation once it is in its log (before the store commit, which
    // it gathers for a few ms): creates, writes, renames, unlinks and chmods made through a mount
    // are all there after a `kill -9` that follows the last of them at once.
    let mut c = TestCluster::builder().start();
    let expected = {
        let m = c.mount(&[]);
        let mut expected: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for d in 0..4 {
            fs::create_dir(m.path(&format!("d{d}"))).unwrap();
            for i in 0..60 {
                let data = random_bytes(1 + (i * 97 + d * 13) % 5000, (d * 100 + i) as u64);
                let name = format!("d{d}/f{i}");
                fs::write(m.path(&name), &data).unwrap();
                expected.insert(format!("/{name}"), data);
            }
        }
        for i in (0..60).step_by(3) {
            let (from, to) = (format!("d0/f{i}"), format!("d1/moved{i}"));
            fs::rename(m.path(&from), m.path(&to)).unwrap();
            let data = expected.remove(&format!("/{from}")).unwrap();
            expected.insert(format!("/{to}"), data);
        }
        for i in (1..60).step_by(4) {
            let name = format!("d2/f{i}");
            fs::remove_file(m.path(&name)).unwrap();
            expected.remove(&format!("/{name}"));
        }
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(m.path("d3/f7"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::rename(m.path("d3"), m.path("last")).unwrap();
        c.kill_namenode();
        expected
            .into_iter()
            .map(|(k, v)| (k.replacen("/d3/", "/last/", 1), v))
            .collect::<BTreeMap<_, _>>()
    };
    c.restart_namenode();
    c.wait_live_datanodes(3, Duration::from_secs(30));
    let replayed = fs::read_to_string(c.namenode_log()).unwrap_or_default();
    eprintln!(
        "log replayed at restart: {}",
        replayed.contains("log replayed into the store")
    );
    let tree = c.tree("/");
    let files: Vec<&String> = tree
        .iter()
        .filter(|(_, (kind, _))| kind == "file")
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        files,
        expected.keys().collect::<Vec<_>>(),
        "files after the restart"
    );
    for (path, data) in &expected {
        assert_eq!(&c.get_bytes(path), data, "{path} after the restart");
    }
    let st = c.stat_json("/last/f7");
    assert_eq!(field_u64(&st, "mode") & 0o777, 0o600, "{st}");
}

#[test]
fn a_mount_keeps_writing_while_one_of_three_datanodes_is_down_and_the_blocks_heal_after() {
    // R=3 on three datanodes. One is killed in the middle of a write through the mount: the
    // write goes on with the two live nodes (no third node can replace it), as do new files once
    // it is declared dead, like HDFS and MooseFS. `put` still refuses (its contract: every block
    // on R replicas or fail). Everything reads back, and when the node returns every block gets
    // its third replica.
    let mut c = TestCluster::builder().dead_after("2s").start();
    let m = c.mount(&[]);
    let first = random_bytes(6 << 20, 61);
    let second = random_bytes(5 << 20, 62);
    let later = random_bytes(3 << 20, 63);
    {
        let mut f = fs::File::create(m.path("during")).unwrap();
        f.write_all(&first[..3 << 20]).unwrap();
        f.sync_all().unwrap();
        c.kill_datanode(0);
        f.write_all(&first[3 << 20..]).unwrap();
        f.sync_all().expect("fsync with a datanode just killed");
    }
    c.wait_live_datanodes(2, Duration::from_secs(30));
    fs::write(m.path("after"), &later).expect("write with one datanode dead");
    {
        // An overwrite in the middle of an existing block (copy-on-write) too.
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new()
            .write(true)
            .open(m.path("during"))
            .unwrap();
        f.write_all_at(&second[..4096], 1 << 20).unwrap();
    }
    let mut want = first.clone();
    want[1 << 20..(1 << 20) + 4096].copy_from_slice(&second[..4096]);
    c.fails(&["put", "-", "/p"])
        .says(&["not enough live datanodes: need 3, have 2"]);
    assert_same_bytes(
        &fs::read(m.path("during")).unwrap(),
        &want,
        "during (mount)",
    );
    assert_same_bytes(&c.get_bytes("/during"), &want, "during (get)");
    assert_same_bytes(&c.get_bytes("/after"), &later, "after (get)");
    let f = c.fsck_json("/");
    assert!(
        field_u64(&f, "under_replicated") > 0 && field_u64(&f, "missing") == 0,
        "blocks written on two nodes should be under-replicated, none missing: {f}"
    );
    c.restart_datanode(0);
    c.wait_healthy("/", 3, Duration::from_secs(60));
    assert_same_bytes(&c.get_bytes("/during"), &want, "during after healing");
    assert_same_bytes(&c.get_bytes("/after"), &later, "after after healing");
}

#[test]
fn a_mount_writes_on_the_datanode_with_room_when_the_others_are_full() {
    // Three datanodes nearly full and a fourth with room: a block the ring places on full nodes
    // has its pipeline recovered onto the node with room. Recovery offered the full nodes back
    // (as "may be fine") until the mount gave up with EIO, though the fourth node held the data.
    let mut c = TestCluster::builder()
        .datanode_arg(&["--capacity", "3MiB"])
        .start();
    c.put_bytes("/filler", &random_bytes(2 * 1024 * 1024, 1));
    c.add_datanode_with(&["--capacity", "1GiB"]);
    c.wait_live_datanodes(4, Duration::from_secs(30));
    let m = c.mount(&[]);
    let data = random_bytes(6 * 1024 * 1024, 2);
    // fsync, not just close: std's File drops close errors.
    let mut f = fs::File::create(m.path("big")).unwrap();
    f.write_all(&data).unwrap();
    f.sync_all()
        .expect("fsync with three full datanodes and one with room");
    drop(f);
    assert_same_bytes(&c.get_bytes("/big"), &data, "/big");
}

#[test]
fn a_mount_keeps_serving_when_its_log_cannot_be_written() {
    // stderr on a full device: a log line that cannot be written is dropped. tracing's fallback
    // (eprintln! of the write error) panicked on the same stderr and the mount died with every
    // open file ("Transport endpoint is not connected").
    let c = TestCluster::builder().start();
    c.put_bytes("/f", b"hello");
    let dir = std::env::temp_dir().join(format!("ringfs-devfull-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let mut mount = c
        .command(&["mount", dir.to_str().unwrap()])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(
            fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        )
        .spawn()
        .unwrap();
    wait_until(Duration::from_secs(30), "the mount to serve /f", || {
        fs::read(dir.join("f")).is_ok_and(|d| d == b"hello")
    });
    for i in 0..20 {
        fs::write(dir.join(format!("g{i}")), b"logged").unwrap();
    }
    assert!(mount.try_wait().unwrap().is_none(), "the mount exited");
    assert_eq!(fs::read(dir.join("g19")).unwrap(), b"logged");
    let _ = c.command(&["umount", dir.to_str().unwrap()]).status();
    let _ = mount.kill();
    let _ = mount.wait();
    let _ = fs::remove_dir(&dir);
}

#[test]
fn a_datanode_dir_of_another_cluster_is_refused() {
    // Two clusters on the same (default) secret whose files have the same block ids. A's datanode
    // dir started against B's namenode was taken in: B listed it as a replica of B's block 1 and
    // readers got A's bytes. Each data dir now keeps the cluster id it joined and any other
    // namenode refuses it; a namenode started on a wrong or empty dir likewise gets none of the
    // datanodes (it would have deleted their replicas as unclaimed).
    let mut a = TestCluster::builder().datanodes(1).replication(1).start();
    let b = TestCluster::builder().datanodes(1).replication(1).start();
    let (a_data, b_data) = (random_bytes(2 * MIB, 1), random_bytes(2 * MIB, 2));
    a.put_bytes("/a", &a_data);
    b.put_bytes("/b", &b_data);
    assert_eq!(a.stop_datanode(0).code(), Some(0));
    let stray_log = a.scratch_path("stray-datanode.log");
    let mut stray = std::process::Command::new(bin())
        .arg("datanode")
        .arg("--data-dir")
        .arg(a.datanode_dir(0))
        .args(["--namenode", b.namenode_addr(), "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&stray_log).unwrap())
        .spawn()
        .unwrap();
    let said = wait_for(
        Duration::from_secs(30),
        "the stray datanode refused",
        || {
            let log = fs::read_to_string(&stray_log).unwrap_or_default();
            match log.lines().find(|l| l.contains("belongs to cluster")) {
                Some(l) => Ok(l.to_string()),
                None => Err(log),
            }
        },
    );
    assert!(said.contains("cannot register"), "{said}");
    let report = b.report_json();
    assert_eq!(report_datanodes(&report).len(), 1, "{report}");
    assert_eq!(b.get_bytes("/b"), b_data);
    stray.kill().unwrap();
    stray.wait().unwrap();
    // Back with its own namenode, the dir serves A's file as before.
    a.restart_datanode(0);
    a.wait_live_datanodes(1, Duration::from_secs(30));
    assert_eq!(a.get_bytes("/a"), a_data);
}

#[test]
fn a_copy_of_a_live_datanodes_dir_is_refused() {
    // `cp -a dn1 dn2` and a datanode on dn2: both had the same datanode id, and the namenode
    // merged them into one entry (whichever heartbeat came last set its address), so one could
    // die unnoticed. HDFS refuses a duplicate storage id; so does ringfs now.
    // 1 s heartbeats: the refusal holds while the original's last heartbeat is under 3 intervals
    // old, and 600 ms is within what a loaded machine can delay one.
    let c = TestCluster::builder()
        .datanodes(1)
        .replication(1)
        .heartbeat("1s")
        .start();
    c.put_bytes("/f", &random_bytes(MIB, 3));
    let copy = c.scratch_path("dn-copy");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(c.datanode_dir(0))
        .arg(&copy)
        .status()
        .unwrap();
    assert!(st.success());
    let log = c.scratch_path("copy.log");
    let mut clone = std::process::Command::new(bin())
        .arg("datanode")
        .arg("--data-dir")
        .arg(&copy)
        .args(["--namenode", c.namenode_addr(), "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(30), "the copy refused", || {
        let text = fs::read_to_string(&log).unwrap_or_default();
        if text.contains("datanode id is in use by") {
            Ok(())
        } else {
            Err(text)
        }
    });
    clone.kill().unwrap();
    clone.wait().unwrap();
    let report = c.report_json();
    let nodes = report_datanodes(&report);
    assert_eq!(nodes.len(), 1, "{report}");
    assert_eq!(field_str(&nodes[0], "address"), c.datanode_addr(0));
}

#[test]
fn fsck_right_after_a_namenode_restart_waits_for_the_block_reports() {
    // Until the datanodes report, no block has a known replica: fsck said CORRUPT with every
    // block missing and exited 1, a false alarm for a monitoring script. It now waits for safe
    // mode to end (saying so on stderr) and answers for the cluster as it is.
    let mut c = TestCluster::builder().block_size("256KiB").start();
    c.put_bytes("/f", &random_bytes(2 * MIB, 4));
    c.kill_namenode();
    c.restart_namenode();
    let out = c.run(&["fsck", "--json", "/"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{v}");
    assert_eq!(v["status"], "HEALTHY", "{v}");
    assert_eq!(v["missing"], 0, "{v}");
    assert_eq!(v["safe_mode"], false, "{v}");
}

#[test]
fn a_second_datanode_advertising_a_live_ones_address_is_refused() {
    // Two datanodes with one --advertise address took the address from each other at every
    // heartbeat, each time forgetting the other's replicas.
    // 1 s heartbeats, as in the test above.
    let mut c = TestCluster::builder()
        .datanodes(1)
        .replication(1)
        .heartbeat("1s")
        .start();
    c.put_bytes("/f", &random_bytes(MIB, 8));
    let taken = c.datanode_addr(0).to_string();
    let id_before = field_str(&report_datanodes(&c.report_json())[0], "id").to_string();
    let twin = c.add_datanode_with(&["--advertise", &taken]);
    let log = c.datanode_log(twin).to_path_buf();
    wait_until(Duration::from_secs(15), "the twin to be refused", || {
        log_tail(&log, 200).contains("is in use by live datanode")
    });
    c.kill_datanode(twin);
    let report = c.report_json();
    let nodes = report_datanodes(&report);
    assert_eq!(nodes.len(), 1, "{report}");
    assert_eq!(field_str(&nodes[0], "id"), id_before, "{report}");
    assert_eq!(c.get_bytes("/f").len(), MIB);
}

#[test]
fn a_put_rides_out_a_namenode_paused_longer_than_the_keepalive() {
    // SIGSTOP of the namenode for longer than the HTTP/2 keep-alive (10 s interval + 20 s timeout):
    // the put's call in flight failed with "keep-alive timed out" after ~30 s and was not sent
    // again (it had taken longer than a quick failure), so the put failed although the namenode
    // came back well within the 60 s a restart is waited for. A pause is now ridden out as a
    // restart is: the call is sent again (with its retry id) within those 60 s.
    let c = TestCluster::builder().block_size("1MiB").start();
    // The CLI reads stdin in 4 MiB pieces: the first reaches the cluster before the pause, the
    // second is sent while the namenode is stopped, so the put has a namenode call on the wire
    // (a block allocation, the closing commit) when the keep-alive gives up on the connection.
    let first = random_bytes(4 * MIB, 101);
    let second = random_bytes(2 * MIB + 7, 102);
    let mut put = c.spawn(&["put", "-", "/paused"], Stdio::piped());
    let mut stdin = put.stdin.take().unwrap();
    stdin.write_all(&first).unwrap();
    wait_for(
        Duration::from_secs(30),
        "the put to commit 3 blocks",
        || match c.file_being_written("/") {
            Some(st) if stat_blocks(&st).len() >= 3 => Ok(()),
            Some(st) => Err(st.to_string()),
            None => Err(c.ok(&["ls", "-l", "/"])),
        },
    );
    let pid = c.namenode_pid().expect("namenode runs");
    signal(pid, "-STOP");
    let paused = Instant::now();
    let feeder = std::thread::spawn({
        let second = second.clone();
        move || {
            stdin.write_all(&second)?;
            drop(stdin);
            Ok::<_, std::io::Error>(())
        }
    });
    // The pause under test: 35 s, past the keep-alive's ~30 s. The put must not end meanwhile.
    let mut ended = None;
    while paused.elapsed() < Duration::from_secs(35) {
        if let Some(st) = put.try_wait().unwrap() {
            ended = Some((st, paused.elapsed()));
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(pid, "-CONT");
    let stderr_of_put = || -> String {
        let scratch = c.scratch_path("x").parent().unwrap().to_path_buf();
        fs::read_dir(&scratch)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with("-bg.stderr"))
            .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    };
    if let Some((st, after)) = ended {
        panic!(
            "the put ended {after:?} into the namenode's pause: {st}: {}",
            stderr_of_put()
        );
    }
    feeder.join().unwrap().expect("feeding the put");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = put.try_wait().unwrap() {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = put.kill();
            panic!("the put still runs 30 s after the namenode resumed");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "put failed across the namenode's pause: {status}: {}",
        stderr_of_put()
    );
    let mut want = first;
    want.extend_from_slice(&second);
    assert_same_bytes(&c.get_bytes("/paused"), &want, "/paused");
}

#[test]
fn with_every_datanode_down_small_files_are_still_made_and_larger_writes_fail_with_eio() {
    // Empty and small files live in the namespace: a mount (and `touch`) made them while no
    // datanode was up (creates failed with ENOSPC, "need 1, have 0", though nothing was full).
    // A file that needs a block fails with EIO: the storage is unreachable, not full.
    let mut c = TestCluster::builder()
        .datanodes(3)
        .heartbeat("100ms")
        .dead_after("1s")
        .start();
    let m = c.mount(&[]);
    for i in 0..3 {
        c.kill_datanode(i);
    }
    wait_until(Duration::from_secs(15), "every datanode dead", || {
        c.live_datanodes() == 0
    });
    fs::write(m.path("empty"), b"").unwrap();
    fs::write(m.path("small"), b"made with no datanode up\n").unwrap();
    c.ok(&["touch", "/touched"]);
    assert_eq!(c.ok(&["cat", "/small"]), "made with no datanode up\n");
    assert_eq!(fs::metadata(m.path("touched")).unwrap().len(), 0);
    let big = (|| {
        let mut f = fs::File::create(m.path("big"))?;
        f.write_all(&random_bytes(MIB, 3))?;
        f.sync_all()
    })();
    let err = big.expect_err("1 MiB stored with every datanode down");
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    c.fails(&["put", "-", "/refused"])
        .says(&["not enough live datanodes: need 3, have 0"]);
}

#[test]
fn a_read_of_a_block_whose_datanodes_are_all_down_says_so() {
    // It said "no replica is known", which reads as data loss.
    let mut c = TestCluster::builder()
        .datanodes(1)
        .replication(1)
        .heartbeat("100ms")
        .dead_after("1s")
        .start();
    c.put_bytes("/f", &random_bytes(300 * 1024, 1));
    c.kill_datanode(0);
    wait_until(Duration::from_secs(15), "the datanode dead", || {
        c.live_datanodes() == 0
    });
    c.fails(&["cat", "/f"])
        .says(&["/f", "no live datanode holds one", "ringfs fsck"]);
    c.restart_datanode(0);
    wait_until(Duration::from_secs(15), "the datanode back", || {
        c.live_datanodes() == 1
    });
    assert_eq!(c.get_bytes("/f"), random_bytes(300 * 1024, 1));
}
