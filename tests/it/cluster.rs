//! `TestCluster`: a namenode and N datanodes as real `ringfs` processes on 127.0.0.1 (ephemeral ports,
//! one temp dir per node), a `Cli` that runs `ringfs` client commands against them, and the helpers the
//! tests share (polling with a deadline, random data, replica files on disk).
//!
//! Layout of a cluster's temp dir (kept after a failure when `RINGFS_KEEP_TEST_DIRS=1`):
//! - `namenode/` data dir, `namenode.log` (stderr and stdout of every start, appended)
//! - `datanode-<i>/` data dir, `datanode-<i>.log`
//! - `scratch/` local files the CLI reads and writes

#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The `ringfs` binary cargo built for this test run (see [`bin`] for the copy the tests run).
pub const BIN: &str = env!("CARGO_BIN_EXE_ringfs");

/// A private copy of [`BIN`], made once per test process (and removed when it exits): others rebuilding
/// the shared `target/` while tests run must not swap the binary under a running cluster (or make a
/// spawn fail with ETXTBSY).
pub fn bin() -> &'static Path {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    extern "C" fn remove_copy() {
        if let Some(p) = COPY.get() {
            let _ = fs::remove_file(p);
        }
    }
    COPY.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ringfs-bin");
        fs::create_dir_all(&dir).unwrap();
        // Remove copies left by earlier test processes that were killed.
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let pid = e
                .file_name()
                .to_string_lossy()
                .strip_prefix("ringfs-")
                .and_then(|p| p.parse::<i32>().ok());
            // SAFETY: kill(pid, 0) only checks whether the process exists.
            if pid.is_some_and(|p| unsafe { libc::kill(p, 0) } != 0) {
                let _ = fs::remove_file(e.path());
            }
        }
        let copy = dir.join(format!("ringfs-{}", std::process::id()));
        let tmp = copy.with_extension("tmp");
        fs::copy(BIN, &tmp).unwrap_or_else(|e| panic!("copy {BIN}: {e}"));
        fs::rename(&tmp, &copy).unwrap();
        // SAFETY: registers a plain extern "C" function with no captured state.
        unsafe { libc::atexit(remove_copy) };
        copy
    })
}

/// How long a node may take to print `listening on`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client command may run before the test gives up on it (kills it and fails).
const CLI_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a SIGTERMed node may take to exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

pub const KIB: usize = 1 << 10;
pub const MIB: usize = 1 << 20;

// ------------------------------------------------------------------------------------------ polling

/// Polls `cond` every 50 ms until it is true; fails the test after `timeout`, naming `what`.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(timeout, what, || {
        if cond() {
            Ok(())
        } else {
            Err(String::new())
        }
    })
}

/// Sends `sig` (`-STOP`, `-CONT`, ...) to `pid` with kill(1).
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "kill {sig} {pid}");
}

thread_local! {
    /// This thread's panic message, repeated after the process logs a failing test dumps: CI keeps
    /// only the end of a failing test's output, and the logs pushed the message out of it.
    static PANIC_MESSAGE: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs (once) a panic hook that keeps the message for [`repeat_panic_message`].
fn keep_panic_messages() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANIC_MESSAGE.with(|m| *m.borrow_mut() = Some(info.to_string()));
            default(info);
        }));
    });
}

/// Prints the failing test's panic message again (after a log dump).
fn repeat_panic_message() {
    if let Some(msg) = PANIC_MESSAGE.with(|m| m.borrow().clone()) {
        eprintln!("===== the test failed ({msg})");
    }
}

/// Polls `f` every 50 ms until it returns `Ok`; fails the test after `timeout` with `what` and the last
/// `Err` (a description of the state that was seen, so a timeout says what was wrong).
#[track_caller]
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(e) => e,
        };
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ------------------------------------------------------------------------------------------ data

/// `len` pseudo-random bytes, the same for the same `seed` (blake3 output stream).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof()
        .fill(&mut buf);
    buf
}

/// Writes `len` pseudo-random bytes (seeded) to `path` without holding them in memory; returns their hash.
pub fn write_random_file(path: &Path, len: u64, seed: u64) -> blake3::Hash {
    let mut out = std::io::BufWriter::new(
        File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display())),
    );
    let mut xof = blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof();
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; MIB];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        xof.fill(&mut buf[..n]);
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        left -= n as u64;
    }
    out.flush()
        .unwrap_or_else(|e| panic!("flush {}: {e}", path.display()));
    hasher.finalize()
}

/// blake3 of a local file, streamed.
pub fn hash_file(path: &Path) -> blake3::Hash {
    let mut f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; MIB];
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if n == 0 {
            return hasher.finalize();
        }
        hasher.update(&buf[..n]);
    }
}

/// Compares two byte strings without printing megabytes on a mismatch.
#[track_caller]
pub fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: contents differ: got {} bytes, want {} bytes, first difference at {:?}",
            got.len(),
            want.len(),
            first
        );
    }
}

/// Parses a human size ("4MiB") the way the binary does.
pub fn size(s: &str) -> u64 {
    ringfs_proto::units::parse_size(s).unwrap_or_else(|e| panic!("bad size {s:?}: {e}"))
}

/// A tmpfs of `size` (e.g. "8m") mounted on an existing directory, a full disk in miniature;
/// unmounted (lazily) when dropped, also when the test fails.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Tmpfs {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap();
        assert!(status.success(), "mount a tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

// ------------------------------------------------------------------------------------------ replicas on disk

/// One replica data file found under a datanode's `blocks/` directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaFile {
    pub block_id: u64,
    pub generation: u64,
    pub path: PathBuf,
    pub len: u64,
}

/// Every `blocks/**/<id>_<gen>.data` under a datanode data dir (temp files and `.meta` are skipped).
pub fn replica_files(data_dir: &Path) -> Vec<ReplicaFile> {
    fn walk(dir: &Path, out: &mut Vec<ReplicaFile>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                walk(&path, out);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".data") else {
                continue;
            };
            let Some((id, gen)) = stem.split_once('_') else {
                continue;
            };
            let (Ok(block_id), Ok(generation)) = (id.parse(), gen.parse()) else {
                continue;
            };
            // A file may vanish between listing and stat (deletion commands): skip it.
            let Ok(meta) = e.metadata() else { continue };
            out.push(ReplicaFile {
                block_id,
                generation,
                path,
                len: meta.len(),
            });
        }
    }
    let mut out = Vec::new();
    walk(&data_dir.join("blocks"), &mut out);
    out.sort_by_key(|r| (r.block_id, r.generation));
    out
}

/// Overwrites `len` bytes at `offset` of a file with their complement (guaranteed different bytes).
pub fn corrupt_file(path: &Path, offset: u64, len: usize) {
    use std::io::{Seek, SeekFrom};
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut buf = vec![0u8; len];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("read {} at {offset}: {e}", path.display()));
    for b in &mut buf {
        *b = !*b;
    }
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&buf).unwrap();
    f.sync_all().unwrap();
}

// ------------------------------------------------------------------------------------------ JSON views

/// The datanode entries of `report --json` (an array, or an object with `datanodes`).
pub fn report_datanodes(report: &Value) -> Vec<Value> {
    match report {
        Value::Array(a) => a.clone(),
        other => other
            .get("datanodes")
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("report --json has no datanodes list: {other}"))
            .clone(),
    }
}

/// `u64` field of a JSON object, failing the test with the object when it is missing.
#[track_caller]
pub fn field_u64(v: &Value, name: &str) -> u64 {
    v.get(name)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no unsigned field {name:?} in {v}"))
}

/// String field of a JSON object, failing the test with the object when it is missing.
#[track_caller]
pub fn field_str<'a>(v: &'a Value, name: &str) -> &'a str {
    v.get(name)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string field {name:?} in {v}"))
}

/// The blocks of `stat --json`.
#[track_caller]
pub fn stat_blocks(stat: &Value) -> Vec<Value> {
    stat.get("blocks")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("stat --json has no blocks: {stat}"))
        .clone()
}

/// The datanode addresses of a block (strings, or objects with `address`).
#[track_caller]
pub fn block_locations(block: &Value) -> Vec<String> {
    block
        .get("locations")
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("block has no locations: {block}"))
        .iter()
        .map(|l| match l {
            Value::String(s) => s.clone(),
            other => field_str(other, "address").to_string(),
        })
        .collect()
}

/// Whether a `stat --json` object says the file is still being written (missing field = not).
pub fn under_construction(stat: &Value) -> bool {
    stat.get("under_construction")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

// ------------------------------------------------------------------------------------------ CLI

/// Runs `ringfs` client commands against one namenode. Cheap to clone: threads get their own.
#[derive(Clone, Debug)]
pub struct Cli {
    namenode: String,
    /// Global flags for every command and mount (e.g. `--tls-ca FILE`).
    global_args: Vec<String>,
    scratch: PathBuf,
    counter: Arc<AtomicU64>,
}

/// A command that must have failed: its exit code and stderr.
#[derive(Debug)]
pub struct Failure {
    pub code: Option<i32>,
    pub stderr: String,
}

impl Cli {
    pub fn new(namenode: &str, scratch: &Path) -> Cli {
        Cli {
            namenode: namenode.to_string(),
            global_args: Vec::new(),
            scratch: scratch.to_path_buf(),
            counter: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The same client with `args` (global flags such as `--tls-ca FILE`) on every command and mount.
    pub fn with_global_args(mut self, args: &[String]) -> Cli {
        self.global_args = args.to_vec();
        self
    }

    pub fn namenode(&self) -> &str {
        &self.namenode
    }

    /// A fresh path in the scratch dir (not created).
    pub fn scratch_path(&self, hint: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.scratch.join(format!("{n}-{hint}"))
    }

    /// Runs a command that must fail with `needles` in its message and must leave the tree unchanged.
    #[track_caller]
    pub fn fails_and_changes_nothing(&self, args: &[&str], needles: &[&str]) {
        let before = self.tree("/");
        self.fails(args).says(needles);
        assert_eq!(
            self.tree("/"),
            before,
            "`ringfs {}` failed but changed the tree",
            args.join(" ")
        );
    }

    /// `ringfs --namenode ADDR ARGS...` (stdin null, stdout and stderr piped).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("--namenode")
            .arg(&self.namenode)
            .args(&self.global_args)
            .args(args);
        cmd.env_remove("RINGFS_NAMENODE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs a client command to completion (killed and failing the test after `CLI_TIMEOUT`).
    pub fn run(&self, args: &[&str]) -> Output {
        run_command(
            self.command(args),
            None,
            &format!("ringfs {}", args.join(" ")),
        )
    }

    /// Runs a client command with `stdin` as its standard input.
    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped());
        run_command(
            cmd,
            Some(stdin.to_vec()),
            &format!("ringfs {}", args.join(" ")),
        )
    }

    /// Runs a client command that must succeed; returns its stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        expect_success(&out, args)
    }

    /// Runs a client command that must fail; returns its exit code and stderr.
    #[track_caller]
    pub fn fails(&self, args: &[&str]) -> Failure {
        let out = self.run(args);
        expect_failure(out, args)
    }

    /// Starts a client command in the background (stdout/stderr to files in scratch).
    pub fn spawn(&self, args: &[&str], stdin: Stdio) -> Child {
        let out = File::create(self.scratch_path("bg.stdout")).unwrap();
        let err = File::create(self.scratch_path("bg.stderr")).unwrap();
        let mut cmd = self.command(args);
        cmd.stdin(stdin).stdout(out).stderr(err);
        cmd.spawn()
            .unwrap_or_else(|e| panic!("spawn ringfs {args:?}: {e}"))
    }

    /// `put [EXTRA...] LOCAL REMOTE` of `data` via a scratch file.
    #[track_caller]
    pub fn put_bytes_with(&self, remote: &str, data: &[u8], extra: &[&str]) {
        let local = self.scratch_path("put");
        fs::write(&local, data).unwrap();
        let local_s = local.to_str().unwrap();
        let mut args = vec!["put"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[local_s, remote]);
        self.ok(&args);
        let _ = fs::remove_file(&local);
    }

    /// `put LOCAL REMOTE` of `data` via a scratch file.
    #[track_caller]
    pub fn put_bytes(&self, remote: &str, data: &[u8]) {
        self.put_bytes_with(remote, data, &[]);
    }

    /// `put LOCAL REMOTE` of a local file.
    #[track_caller]
    pub fn put_file(&self, local: &Path, remote: &str, extra: &[&str]) {
        let mut args = vec!["put"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[local.to_str().unwrap(), remote]);
        self.ok(&args);
    }

    /// `get REMOTE LOCAL` into a scratch file; returns the local path.
    #[track_caller]
    pub fn get_file(&self, remote: &str) -> PathBuf {
        let local = self.scratch_path("get");
        self.ok(&["get", remote, local.to_str().unwrap()]);
        local
    }

    /// `get REMOTE LOCAL`; returns the bytes.
    #[track_caller]
    pub fn get_bytes(&self, remote: &str) -> Vec<u8> {
        let local = self.get_file(remote);
        let data = fs::read(&local).unwrap();
        let _ = fs::remove_file(&local);
        data
    }

    /// `get REMOTE -` with short-circuit reads off (`RINGFS_SHORT_CIRCUIT=0`): every byte comes
    /// over gRPC, as for a client on another host.
    #[track_caller]
    pub fn get_bytes_over_network(&self, remote: &str) -> Vec<u8> {
        let args = ["get", remote, "-"];
        let mut cmd = self.command(&args);
        cmd.env("RINGFS_SHORT_CIRCUIT", "0");
        let out = run_command(cmd, None, &format!("ringfs get {remote} - (network only)"));
        expect_success(&out, &args);
        out.stdout
    }

    /// blake3 of `get REMOTE` (the local copy is removed).
    #[track_caller]
    pub fn get_hash(&self, remote: &str) -> blake3::Hash {
        let local = self.get_file(remote);
        let h = hash_file(&local);
        let _ = fs::remove_file(&local);
        h
    }

    /// Runs a client command that must succeed and print JSON.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("ringfs {args:?} printed invalid JSON ({e}): {out}"))
    }

    #[track_caller]
    pub fn stat_json(&self, path: &str) -> Value {
        self.json(&["stat", "--json", path])
    }

    #[track_caller]
    pub fn fsck_json(&self, path: &str) -> Value {
        // Exit code 1 when a block is missing (no good replica); the report is printed either way.
        // Tests poll: answer at once even in safe mode.
        let out = self.run(&["fsck", "--json", "--no-wait", path]);
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "fsck --json {path} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("fsck --json {path} printed invalid JSON ({e})"));
        let missing = v["missing"].as_u64().unwrap_or(0);
        assert_eq!(
            out.status.code() == Some(1),
            missing > 0,
            "fsck's exit code does not match its report: {v}"
        );
        // CORRUPT means lost data, as the exit code does; a bad replica next to good ones is not.
        assert_eq!(
            v["status"] == "CORRUPT",
            missing > 0,
            "fsck's status does not match its report: {v}"
        );
        v
    }

    #[track_caller]
    pub fn report_json(&self) -> Value {
        self.json(&["report", "--json"])
    }

    #[track_caller]
    pub fn ls_json(&self, path: &str) -> Value {
        self.json(&["ls", "-a", "--json", path])
    }

    /// The entries of `ls -a --json DIR` (an array, or an object with `entries`).
    #[track_caller]
    pub fn ls_entries(&self, path: &str) -> Vec<Value> {
        match self.ls_json(path) {
            Value::Array(a) => a,
            other => other
                .get("entries")
                .and_then(Value::as_array)
                .unwrap_or_else(|| {
                    panic!("ls --json {path} is neither a list nor has entries: {other}")
                })
                .clone(),
        }
    }

    /// Names in a directory, sorted.
    #[track_caller]
    pub fn ls_names(&self, path: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .ls_entries(path)
            .iter()
            .map(|e| field_str(e, "name").to_string())
            .collect();
        names.sort();
        names
    }

    /// Whether `stat PATH` succeeds.
    pub fn exists(&self, path: &str) -> bool {
        self.run(&["stat", "--json", path]).status.success()
    }

    /// Every entry below `root` (recursive `ls --json`): path -> (kind, size). Used to check that a
    /// failed command changed nothing.
    #[track_caller]
    pub fn tree(&self, root: &str) -> BTreeMap<String, (String, u64)> {
        let mut out = BTreeMap::new();
        let mut todo = vec![root.trim_end_matches('/').to_string()];
        while let Some(dir) = todo.pop() {
            let list_path = if dir.is_empty() {
                "/".to_string()
            } else {
                dir.clone()
            };
            for e in self.ls_entries(&list_path) {
                let name = field_str(&e, "name");
                let kind = field_str(&e, "kind").to_string();
                let size = e.get("size").and_then(Value::as_u64).unwrap_or(0);
                let path = format!("{dir}/{name}");
                if kind == "dir" {
                    todo.push(path.clone());
                    // A directory's "size" may count entries; the recursion checks those.
                    out.insert(path, (kind, 0));
                } else {
                    out.insert(path, (kind, size));
                }
            }
        }
        out
    }

    /// The entry of directory `dir` that is still being written (under construction), as `stat --json`
    /// shows it. `put` writes under a temporary name and renames at the end, so tests that act while
    /// a put runs find the file this way.
    pub fn file_being_written(&self, dir: &str) -> Option<Value> {
        let out = self.run(&["ls", "--json", dir]);
        if !out.status.success() {
            return None;
        }
        let entries: Vec<Value> = serde_json::from_slice(&out.stdout).ok()?;
        let e = entries.iter().find(|e| under_construction(e))?;
        let path = e.get("path").and_then(Value::as_str)?;
        let out = self.run(&["stat", "--json", path]);
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Number of datanodes `report --json` shows as live.
    #[track_caller]
    pub fn live_datanodes(&self) -> usize {
        report_datanodes(&self.report_json())
            .iter()
            .filter(|d| d.get("state").and_then(Value::as_str) == Some("live"))
            .count()
    }

    /// Waits until `report` shows `n` live datanodes.
    #[track_caller]
    pub fn wait_live_datanodes(&self, n: usize, timeout: Duration) {
        wait_for(timeout, &format!("{n} live datanodes"), || {
            let out = self.run(&["report", "--json"]);
            if !out.status.success() {
                return Err(format!(
                    "report failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            let report: Value =
                serde_json::from_slice(&out.stdout).map_err(|e| format!("bad JSON: {e}"))?;
            let live = report_datanodes(&report)
                .iter()
                .filter(|d| d.get("state").and_then(Value::as_str) == Some("live"))
                .count();
            if live == n {
                Ok(())
            } else {
                Err(format!("{live} live: {report}"))
            }
        })
    }

    /// Waits until `fsck --json PATH` shows every block healthy at full replication (no under/over-
    /// replicated, corrupt or missing block, replicas = expected_replication × blocks).
    #[track_caller]
    pub fn wait_healthy(&self, path: &str, replication: u64, timeout: Duration) -> Value {
        wait_for(
            timeout,
            &format!("fsck {path}: every block healthy with {replication} replicas"),
            || {
                let out = self.run(&["fsck", "--json", path]);
                if !out.status.success() {
                    return Err(format!(
                        "fsck failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                let f: Value =
                    serde_json::from_slice(&out.stdout).map_err(|e| format!("bad JSON: {e}"))?;
                if fsck_is_healthy(&f, replication) {
                    Ok(f)
                } else {
                    Err(f.to_string())
                }
            },
        )
    }
}

/// Every block healthy, exactly `replication` replicas each, no problem of any kind.
pub fn fsck_is_healthy(f: &Value, replication: u64) -> bool {
    let get = |k: &str| f.get(k).and_then(Value::as_u64).unwrap_or(u64::MAX);
    let zero = |k: &str| f.get(k).and_then(Value::as_u64).unwrap_or(0) == 0;
    let blocks = get("blocks");
    blocks != u64::MAX
        && get("healthy_blocks") == blocks
        && get("replicas") == blocks * replication
        && [
            "under_replicated",
            "over_replicated",
            "misplaced",
            "corrupt",
            "missing",
            "corrupt_replicas",
        ]
        .iter()
        .all(|k| zero(k))
}

/// Runs a client command to completion (see [`run_with_timeout`]) with `CLI_TIMEOUT`.
fn run_command(cmd: Command, stdin: Option<Vec<u8>>, what: &str) -> Output {
    run_with_timeout(cmd, stdin, what, CLI_TIMEOUT)
}

/// Runs a command to completion with stdout and stderr captured, feeding `stdin` if given; kills it and
/// fails the test after `timeout`.
pub fn run_with_timeout(
    mut cmd: Command,
    stdin: Option<Vec<u8>>,
    what: &str,
    timeout: Duration,
) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let pid = child.id();
    let feeder = stdin.map(|data| {
        let mut pipe = child.stdin.take().unwrap();
        // A command that exits early closes the pipe: ignore the write error, the exit status tells.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(timeout) {
        Ok(res) => res.unwrap_or_else(|e| panic!("wait for {what}: {e}")),
        Err(_) => {
            // SAFETY: plain kill(2) of our own child's pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            panic!("{what} did not finish within {timeout:?} (killed)");
        }
    };
    if let Some(f) = feeder {
        let _ = f.join();
    }
    out
}

#[track_caller]
fn expect_success(out: &Output, args: &[&str]) -> String {
    if !out.status.success() {
        panic!(
            "ringfs {} failed ({}):\nstderr: {}\nstdout: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn expect_failure(out: Output, args: &[&str]) -> Failure {
    if out.status.success() {
        panic!(
            "ringfs {} succeeded but should have failed:\nstdout: {}\nstderr: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Failure {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Failure {
    /// The error contract: non-zero exit code, one line on stderr containing every `needle`.
    #[track_caller]
    pub fn says(&self, needles: &[&str]) -> &Self {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "exit code {:?} (stderr: {})",
            self.code,
            self.stderr
        );
        let text = self.stderr.trim();
        assert_eq!(text.lines().count(), 1, "stderr is not one line: {text:?}");
        for n in needles {
            assert!(text.contains(n), "stderr {text:?} does not mention {n:?}");
        }
        self
    }
}

// ------------------------------------------------------------------------------------------ nodes

/// One `ringfs namenode` or `ringfs datanode` process slot: its dir and address survive restarts.
#[derive(Debug)]
struct Node {
    name: String,
    data_dir: PathBuf,
    log: PathBuf,
    /// Arguments after the binary, except the listen flag.
    args: Vec<String>,
    /// `--listen` (`--namenode-listen` for `ringfs up`).
    listen_flag: &'static str,
    /// Address printed by the first start; restarts listen on it again.
    addr: Option<String>,
    /// The `status page at http://ADDR/` address the current process printed (a namenode's).
    status_page: Arc<Mutex<Option<String>>>,
    child: Option<Child>,
}

impl Node {
    fn new(root: &Path, name: &str, args: Vec<String>) -> Node {
        let data_dir = root.join(name);
        fs::create_dir_all(&data_dir).unwrap();
        Node {
            name: name.to_string(),
            log: root.join(format!("{name}.log")),
            data_dir,
            args,
            listen_flag: "--listen",
            addr: None,
            status_page: Arc::default(),
            child: None,
        }
    }

    /// Starts the process and waits for `listening on ADDR` on its stdout; a restart reuses the
    /// address (retrying while the old port is still busy).
    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let listen = self
            .addr
            .clone()
            .unwrap_or_else(|| "127.0.0.1:0".to_string());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.spawn_once(&listen) {
                Ok((child, addr)) => {
                    if let Some(old) = &self.addr {
                        assert_eq!(old, &addr, "{} restarted on another address", self.name);
                    }
                    self.addr = Some(addr);
                    self.child = Some(child);
                    return;
                }
                Err(e) if Instant::now() < deadline && self.addr.is_some() => {
                    // The previous incarnation's port may not be free yet: try again shortly.
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!(
                    "{} did not start: {e}\n--- log tail ---\n{}",
                    self.name,
                    log_tail(&self.log, 40)
                ),
            }
        }
    }

    fn spawn_once(&self, listen: &str) -> Result<(Child, String), String> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| e.to_string())?;
        let _ = writeln!(
            log,
            "=== {} start: ringfs {} {} {listen}",
            self.name,
            self.args.join(" "),
            self.listen_flag
        );
        let mut cmd = Command::new(bin());
        cmd.args(&self.args).arg(self.listen_flag).arg(listen);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.try_clone().map_err(|e| e.to_string())?);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        // A namenode's status page on a free port, not the fixed default (a flag overrides it).
        cmd.env("RINGFS_HTTP_LISTEN", "127.0.0.1:0");
        // SAFETY: prctl in the forked child before exec only sets a process attribute.
        unsafe {
            cmd.pre_exec(|| {
                // Die with the test thread that started us, even if the test process is SIGKILLed.
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin().display()))?;
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let status_page = self.status_page.clone();
        *status_page.lock().unwrap() = None;
        // Reads stdout for the whole life of the process (so it never blocks on a full pipe), sends the
        // `listening on` address and copies every line to the log.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.trim().strip_prefix("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_string());
                    }
                }
                if let Some(url) = line.trim().strip_prefix("status page at http://") {
                    *status_page.lock().unwrap() = Some(url.trim_end_matches('/').to_string());
                }
                let _ = writeln!(log, "[stdout] {line}");
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => Ok((child, addr)),
            Err(_) => {
                let status = match child.try_wait() {
                    Ok(Some(s)) => format!("exited with {s}"),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        format!("printed no `listening on` within {START_TIMEOUT:?}")
                    }
                };
                Err(status)
            }
        }
    }

    /// The `status page at` address the running process printed, waiting up to `timeout` for it.
    fn status_page(&self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let page = self.status_page.lock().unwrap().clone();
            if page.is_some() || Instant::now() >= deadline {
                return page;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn addr(&self) -> &str {
        self.addr
            .as_deref()
            .unwrap_or_else(|| panic!("{} never started", self.name))
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL and reap.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns its status.
    fn stop(&mut self) -> ExitStatus {
        let mut c = self
            .child
            .take()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        // SAFETY: plain kill(2) of our own child's pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "{} did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.name,
                    log_tail(&self.log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The last `n` lines of a log file.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ------------------------------------------------------------------------------------------ cluster

/// Settings of a [`TestCluster`]; defaults are small and fast (see each field).
#[derive(Clone, Debug)]
pub struct Builder {
    datanodes: usize,
    replication: u32,
    block_size: String,
    heartbeat: String,
    dead_after: String,
    namenode_args: Vec<String>,
    datanode_args: Vec<String>,
    client_args: Vec<String>,
    wait_for_datanodes: bool,
}

impl Builder {
    /// Number of datanodes started with the namenode (default 3).
    pub fn datanodes(mut self, n: usize) -> Self {
        self.datanodes = n;
        self
    }
    /// Cluster default replication (default 3).
    pub fn replication(mut self, r: u32) -> Self {
        self.replication = r;
        self
    }
    /// Cluster default block size (default "1MiB").
    pub fn block_size(mut self, s: &str) -> Self {
        self.block_size = s.to_string();
        self
    }
    /// Datanode heartbeat interval (default "200ms").
    pub fn heartbeat(mut self, d: &str) -> Self {
        self.heartbeat = d.to_string();
        self
    }
    /// Silence after which a datanode is dead (default "30s": tests that need detection shorten it).
    pub fn dead_after(mut self, d: &str) -> Self {
        self.dead_after = d.to_string();
        self
    }
    /// Extra namenode arguments (e.g. `["--lease-hard-limit", "2s"]`).
    pub fn namenode_arg(mut self, args: &[&str]) -> Self {
        self.namenode_args
            .extend(args.iter().map(|s| s.to_string()));
        self
    }
    /// Extra arguments for every datanode (e.g. `["--scrub-interval", "1s"]`).
    pub fn datanode_arg(mut self, args: &[&str]) -> Self {
        self.datanode_args
            .extend(args.iter().map(|s| s.to_string()));
        self
    }
    /// Global flags for every client command and mount of the cluster (e.g. `["--tls-ca", FILE]`).
    pub fn client_arg(mut self, args: &[&str]) -> Self {
        self.client_args.extend(args.iter().map(|s| s.to_string()));
        self
    }
    /// Don't wait for the datanodes to show as live in `report` (default: wait).
    pub fn no_wait(mut self) -> Self {
        self.wait_for_datanodes = false;
        self
    }

    /// Starts the namenode, then the datanodes, and waits until `report` shows them all live.
    pub fn start(self) -> TestCluster {
        keep_panic_messages();
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(&base).unwrap();
        let root = tempfile::Builder::new()
            .prefix("ringfs-it-")
            .tempdir_in(&base)
            .unwrap();
        let scratch = root.path().join("scratch");
        fs::create_dir_all(&scratch).unwrap();
        let nn_dir = root.path().join("namenode");
        let mut nn_args: Vec<String> = vec![
            "namenode".into(),
            "--data-dir".into(),
            nn_dir.to_str().unwrap().into(),
            "--replication".into(),
            self.replication.to_string(),
            "--block-size".into(),
            self.block_size.clone(),
            "--heartbeat-interval".into(),
            self.heartbeat.clone(),
            "--dead-after".into(),
            self.dead_after.clone(),
        ];
        nn_args.extend(self.namenode_args.iter().cloned());
        let namenode = Node::new(root.path(), "namenode", nn_args);
        let mut cluster = TestCluster {
            cli: Cli::new("127.0.0.1:0", &scratch),
            namenode,
            datanodes: Vec::new(),
            builder: self.clone(),
            root: Some(root),
        };
        cluster.namenode.start();
        cluster.cli =
            Cli::new(cluster.namenode.addr(), &scratch).with_global_args(&self.client_args);
        for _ in 0..self.datanodes {
            cluster.spawn_datanode();
        }
        if self.wait_for_datanodes {
            cluster
                .cli
                .wait_live_datanodes(self.datanodes, Duration::from_secs(30));
        }
        cluster
    }
}

/// A running namenode + datanodes; every process is killed when it is dropped.
pub struct TestCluster {
    cli: Cli,
    namenode: Node,
    datanodes: Vec<Node>,
    builder: Builder,
    /// Holds every node's dir; `None` once kept for debugging.
    root: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestCluster {
    type Target = Cli;
    fn deref(&self) -> &Cli {
        &self.cli
    }
}

impl TestCluster {
    pub fn builder() -> Builder {
        Builder {
            datanodes: 3,
            replication: 3,
            block_size: "1MiB".into(),
            heartbeat: "200ms".into(),
            dead_after: "30s".into(),
            namenode_args: Vec::new(),
            datanode_args: Vec::new(),
            client_args: Vec::new(),
            wait_for_datanodes: true,
        }
    }

    /// A client for another thread (same namenode, same scratch dir).
    pub fn client(&self) -> Cli {
        self.cli.clone()
    }

    /// Runs `ringfs --namenode ADDR ARGS...`.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli.run(args)
    }

    /// The cluster's temp dir.
    pub fn root(&self) -> &Path {
        self.root
            .as_ref()
            .map(|r| r.path())
            .unwrap_or_else(|| Path::new("/nonexistent"))
    }

    pub fn namenode_addr(&self) -> &str {
        self.namenode.addr()
    }

    /// The namenode's status page address (host:port) once it printed `status page at`; `None` if
    /// it printed none within `timeout` (it serves no page).
    pub fn namenode_status_page(&self, timeout: Duration) -> Option<String> {
        self.namenode.status_page(timeout)
    }

    pub fn namenode_dir(&self) -> &Path {
        &self.namenode.data_dir
    }

    pub fn datanode_count(&self) -> usize {
        self.datanodes.len()
    }

    pub fn datanode_dir(&self, i: usize) -> &Path {
        &self.datanodes[i].data_dir
    }

    pub fn datanode_addr(&self, i: usize) -> &str {
        self.datanodes[i].addr()
    }

    /// Index of the datanode listening on `addr`.
    #[track_caller]
    pub fn datanode_index(&self, addr: &str) -> usize {
        self.datanodes
            .iter()
            .position(|d| d.addr.as_deref() == Some(addr))
            .unwrap_or_else(|| panic!("no datanode at {addr}"))
    }

    pub fn datanode_running(&mut self, i: usize) -> bool {
        self.datanodes[i].is_running()
    }

    pub fn datanode_pid(&self, i: usize) -> Option<u32> {
        self.datanodes[i].pid()
    }

    pub fn namenode_pid(&self) -> Option<u32> {
        self.namenode.pid()
    }

    fn spawn_datanode(&mut self) -> usize {
        let i = self.datanodes.len();
        let name = format!("datanode-{i}");
        let dir = self.root().join(&name);
        let mut args: Vec<String> = vec![
            "datanode".into(),
            "--data-dir".into(),
            dir.to_str().unwrap().into(),
            "--namenode".into(),
            self.namenode.addr().into(),
        ];
        args.extend(self.builder.datanode_args.iter().cloned());
        let root = self.root().to_path_buf();
        let mut node = Node::new(&root, &name, args);
        node.start();
        self.datanodes.push(node);
        i
    }

    /// Starts one more datanode and waits until it is live; returns its index.
    pub fn add_datanode(&mut self) -> usize {
        let i = self.spawn_datanode();
        let live = self
            .datanodes
            .iter_mut()
            .map(Node::is_running)
            .filter(|&r| r)
            .count();
        self.cli.wait_live_datanodes(live, Duration::from_secs(30));
        i
    }

    /// Starts one more datanode with `args` in place of the builder's datanode arguments (e.g.
    /// `--capacity`, `--rack`, another `--secret-file`); does not wait for it to be live.
    pub fn add_datanode_with(&mut self, args: &[&str]) -> usize {
        let saved = std::mem::replace(
            &mut self.builder.datanode_args,
            args.iter().map(|s| s.to_string()).collect(),
        );
        let i = self.spawn_datanode();
        self.builder.datanode_args = saved;
        i
    }

    /// SIGKILL datanode `i` (its dir and address stay for a restart).
    pub fn kill_datanode(&mut self, i: usize) {
        self.datanodes[i].kill();
    }

    /// SIGTERM datanode `i` and wait for it to exit.
    pub fn stop_datanode(&mut self, i: usize) -> ExitStatus {
        self.datanodes[i].stop()
    }

    /// Starts datanode `i` again on the same dir and address (does not wait for it to register).
    pub fn restart_datanode(&mut self, i: usize) {
        self.datanodes[i].start();
    }

    /// SIGKILL the namenode.
    pub fn kill_namenode(&mut self) {
        self.namenode.kill();
    }

    /// SIGTERM the namenode and wait for it to exit.
    pub fn stop_namenode(&mut self) -> ExitStatus {
        self.namenode.stop()
    }

    /// Starts the namenode again on the same dir and address (datanodes re-register by themselves).
    pub fn restart_namenode(&mut self) {
        self.namenode.start();
    }

    /// Log file of the namenode / a datanode.
    pub fn namenode_log(&self) -> &Path {
        &self.namenode.log
    }

    pub fn datanode_log(&self, i: usize) -> &Path {
        &self.datanodes[i].log
    }

    /// Replica data files on datanode `i`'s disk.
    pub fn replicas_on(&self, i: usize) -> Vec<ReplicaFile> {
        replica_files(self.datanode_dir(i))
    }

    /// Every replica file on every datanode's disk, with the datanode index.
    pub fn all_replicas(&self) -> Vec<(usize, ReplicaFile)> {
        (0..self.datanodes.len())
            .flat_map(|i| self.replicas_on(i).into_iter().map(move |r| (i, r)))
            .collect()
    }

    /// Prints the tail of every node's log (called on failure).
    pub fn dump_logs(&self, lines: usize) {
        eprintln!(
            "===== namenode {} ({}) =====\n{}",
            self.namenode.addr.as_deref().unwrap_or("?"),
            self.namenode.log.display(),
            log_tail(&self.namenode.log, lines)
        );
        for d in &self.datanodes {
            eprintln!(
                "===== {} {} =====\n{}",
                d.name,
                d.addr.as_deref().unwrap_or("?"),
                log_tail(&d.log, lines)
            );
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for d in &mut self.datanodes {
            d.kill();
        }
        self.namenode.kill();
        if std::thread::panicking() {
            self.dump_logs(40);
            if std::env::var_os("RINGFS_KEEP_TEST_DIRS").is_some() {
                if let Some(root) = self.root.take() {
                    eprintln!("kept test dir {}", root.keep().display());
                }
            }
            repeat_panic_message();
        }
    }
}

// ------------------------------------------------------------------------------------------ ringfs up

/// `ringfs up` (namenode + datanodes in one process) on an ephemeral port in a temp dir; killed on drop.
pub struct UpCluster {
    node: Node,
    cli: Cli,
    root: tempfile::TempDir,
}

impl std::ops::Deref for UpCluster {
    type Target = Cli;
    fn deref(&self) -> &Cli {
        &self.cli
    }
}

impl UpCluster {
    /// Runs `ringfs up --data-dir DIR --datanodes N --namenode-listen 127.0.0.1:0` and waits for its
    /// `listening on` line (printed once every datanode is live).
    pub fn start(datanodes: usize) -> UpCluster {
        keep_panic_messages();
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(&base).unwrap();
        let root = tempfile::Builder::new()
            .prefix("ringfs-up-")
            .tempdir_in(&base)
            .unwrap();
        let scratch = root.path().join("scratch");
        fs::create_dir_all(&scratch).unwrap();
        let dir = root.path().join("cluster");
        let args = vec![
            "up".to_string(),
            "--data-dir".into(),
            dir.to_str().unwrap().into(),
            "--datanodes".into(),
            datanodes.to_string(),
        ];
        let mut node = Node::new(root.path(), "cluster", args);
        node.listen_flag = "--namenode-listen";
        node.start();
        let cli = Cli::new(node.addr(), &scratch);
        UpCluster { node, cli, root }
    }

    /// The status page address `up` printed, if any within `timeout`.
    pub fn status_page(&self, timeout: Duration) -> Option<String> {
        self.node.status_page(timeout)
    }

    /// The data dir given to `up`.
    pub fn data_dir(&self) -> &Path {
        &self.node.data_dir
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.node.stop()
    }

    /// Starts `up` again on the same dir and namenode address.
    pub fn restart(&mut self) {
        self.node.start();
    }
}

impl Drop for UpCluster {
    fn drop(&mut self) {
        self.node.kill();
        if std::thread::panicking() {
            eprintln!(
                "===== ringfs up ({}) =====\n{}",
                self.root.path().display(),
                log_tail(&self.node.log, 40)
            );
            repeat_panic_message();
        }
    }
}

// ------------------------------------------------------------------------------------------ FUSE mounts
// (Added for tests/it/fuse.rs; kept separate from the cluster code above.)

/// A `ringfs mount` process on its own temp mountpoint. Drop stops it (SIGTERM, then SIGKILL) and
/// detaches the mount if one is left behind, so a failing test never leaves a mount around.
pub struct Mount {
    namenode: String,
    extra: Vec<String>,
    /// The mountpoint.
    pub dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    _root: tempfile::TempDir,
}

impl Cli {
    /// Mounts this cluster with `ringfs mount [extra...] DIR` and waits for `mounted at DIR`.
    pub fn mount(&self, extra: &[&str]) -> Mount {
        // Under the system temp dir, not target/: a unix socket path must fit in 108 bytes
        // (pjdfstest binds sockets deep inside the mount), and a CI checkout path can be long.
        let root = tempfile::Builder::new()
            .prefix("ringfs-mnt-")
            .tempdir()
            .unwrap();
        let dir = root.path().join("mnt");
        fs::create_dir_all(&dir).unwrap();
        let mut m = Mount {
            namenode: self.namenode().to_string(),
            extra: self
                .global_args
                .iter()
                .cloned()
                .chain(extra.iter().map(|s| s.to_string()))
                .collect(),
            dir,
            log: root.path().join("mount.log"),
            child: None,
            _root: root,
        };
        m.start();
        m
    }
}

impl Mount {
    /// `ringfs mount` on the same mountpoint again (after `kill`/`stop`).
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "mount already running");
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(bin());
        cmd.arg("mount")
            .arg("--namenode")
            .arg(&self.namenode)
            .args(&self.extra)
            .arg(&self.dir);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.try_clone().unwrap());
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        // SAFETY: prctl in the forked child before exec only sets a process attribute.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("mounted at ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                    }
                }
                let _ = writeln!(log, "[stdout] {line}");
            }
        });
        if rx.recv_timeout(START_TIMEOUT).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ringfs mount {} did not mount\n{}",
                self.dir.display(),
                log_tail(&self.log, 40)
            );
        }
        self.child = Some(child);
    }

    /// Takes the running mount process out (the caller waits for it), so that [`Mount::start`]
    /// mounts the same path again meanwhile.
    pub fn take_process(&mut self) -> Child {
        self.child.take().expect("mount not running")
    }

    /// A path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("mount not running").id()
    }

    /// SIGKILL the mount process (leaves a stale mountpoint behind).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: the mount commits, unmounts and exits.
    pub fn stop(&mut self) -> ExitStatus {
        signal(self.pid(), "-TERM");
        self.wait_exit()
    }

    /// Waits for the mount process to exit after a signal that stops it cleanly.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("mount not running");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "ringfs mount did not exit after the signal\n{}",
                    log_tail(&self.log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the kernel lists `dir` as a mountpoint.
    pub fn is_mounted(&self) -> bool {
        let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
            return false;
        };
        let want = self.dir.to_string_lossy().replace(' ', "\\040");
        info.lines()
            .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
    }

    pub fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) of our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if self.is_mounted() {
            let p = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: umount2 with a NUL-terminated path that outlives the call.
            unsafe { libc::umount2(p.as_ptr(), libc::MNT_DETACH) };
        }
        if std::thread::panicking() {
            eprintln!(
                "===== ringfs mount {} =====\n{}",
                self.dir.display(),
                log_tail(&self.log, 40)
            );
        }
    }
}
