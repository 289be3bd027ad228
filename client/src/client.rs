//! `Client`: the connection to a namenode, the caller's credentials, the lease renewer, the
//! datanode channel pool, and the path-level namespace calls used by the CLI.

use crate::error::ClientError;
use crate::read::{FileReader, Layout};
use crate::write::{BlockWriter, FileWriter};
use bytes::Bytes;
use ringfs_proto::net;
use ringfs_proto::pb;
use ringfs_proto::pb::namenode_client::NamenodeClient;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tonic::transport::Channel;

/// Tries of a namenode call that may be repeated that fail quickly in transport (see
/// [`Client::again_in_transport`]): a connection the channel has not yet seen close.
const AGAIN_ATTEMPTS: usize = 4;
/// A failure in transport faster than this is a quick one (a dead connection, a refused port);
/// a slower one waited for the namenode already: for a connection (`ringfs_proto::reconnect`),
/// or for an answer until the HTTP/2 keep-alive gave up on a namenode that does not run (SIGSTOP).
const AGAIN_IF_FASTER: Duration = Duration::from_secs(5);
/// Longest pause between two tries of a call sent again.
const AGAIN_MAX_PAUSE: Duration = Duration::from_secs(1);

/// Longest [`Client::check_live_datanodes`] waits for datanodes to re-register with a namenode
/// that just restarted (the namenode says how long that lasts: its --dead-after).
const RESTART_WAIT: Duration = Duration::from_secs(60);

/// How a [`Client`] connects and who it acts as.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Namenode address, "host:port" (or "http://host:port").
    pub namenode: String,
    /// The caller the namenode checks permissions for. Default: this process's uid, gid and groups.
    pub creds: pb::Credentials,
    /// How often the lease renewer calls `RenewLease(client_id)`.
    pub lease_renew_interval: Duration,
    /// Replication of files this client creates (0 = the cluster default).
    pub replication: u32,
    /// Block size of files this client creates (0 = the cluster default).
    pub block_size: u64,
    /// Once connected, how long a call waits for the namenode to accept connections again after
    /// it went away (a restart), instead of failing at once. Zero: fail at once.
    pub reconnect_wait: Duration,
    /// Read replicas of datanodes on this host from their files, with descriptors the datanodes
    /// hand out (short-circuit reads; `crate::local`). Default: on, unless the environment sets
    /// `RINGFS_SHORT_CIRCUIT` to `0`, `false`, `off` or `no`.
    pub short_circuit: bool,
    /// Fewest live datanodes a write pipeline may have (`AllocateBlockRequest.min_replicas`).
    /// 0 (the default, `put`): every block on the file's R replicas, or the write fails. The mount
    /// uses 1: with datanodes down it keeps writing on the live ones and the namenode adds the
    /// missing replicas when nodes come back.
    pub min_replicas: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            namenode: ringfs_proto::DEFAULT_NAMENODE.to_string(),
            creds: process_credentials(),
            lease_renew_interval: Duration::from_secs(1),
            replication: 0,
            block_size: 0,
            reconnect_wait: Duration::from_secs(60),
            short_circuit: short_circuit_from_env(),
            min_replicas: 0,
        }
    }
}

/// `RINGFS_SHORT_CIRCUIT`: anything but `0`, `false`, `off` or `no` (or unset) means on.
fn short_circuit_from_env() -> bool {
    match std::env::var("RINGFS_SHORT_CIRCUIT") {
        Ok(v) => !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "0" | "false" | "off" | "no"
        ),
        Err(_) => true,
    }
}

/// The uid, gid and supplementary groups of this process.
pub fn process_credentials() -> pb::Credentials {
    // SAFETY: getuid/getgid cannot fail; getgroups writes at most `n` entries into a buffer of `n`.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let mut groups = Vec::new();
    let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if n > 0 {
        let mut buf = vec![0 as libc::gid_t; n as usize];
        let got = unsafe { libc::getgroups(n, buf.as_mut_ptr()) };
        if got > 0 {
            buf.truncate(got as usize);
            groups = buf;
        }
    }
    pb::Credentials { uid, gid, groups }
}

/// Options of [`Client::create`].
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Permission bits (default 0o644).
    pub mode: u32,
    /// 0 = the client's configured replication, then the cluster default.
    pub replication: u32,
    /// 0 = the client's configured block size, then the cluster default.
    pub block_size: u64,
    /// Truncate an existing file (else an existing file is an "already exists" error).
    pub overwrite: bool,
    /// O_EXCL: fail if the entry exists, whatever `overwrite` says.
    pub exclusive: bool,
}

impl Default for CreateOptions {
    fn default() -> Self {
        CreateOptions {
            mode: 0o644,
            replication: 0,
            block_size: 0,
            overwrite: false,
            exclusive: false,
        }
    }
}

/// A `NodeRef` naming an absolute path.
pub fn path_ref(path: &str) -> pb::NodeRef {
    pb::NodeRef {
        target: Some(pb::node_ref::Target::Path(path.to_string())),
    }
}

/// A `NodeRef` naming an inode.
pub fn inode_ref(inode: u64) -> pb::NodeRef {
    pb::NodeRef {
        target: Some(pb::node_ref::Target::Inode(inode)),
    }
}

/// An `EntryRef` naming an absolute path.
pub fn entry_path(path: &str) -> pb::EntryRef {
    pb::EntryRef {
        target: Some(pb::entry_ref::Target::Path(path.to_string())),
    }
}

/// State shared by every clone of a [`Client`] (and by `with_creds` siblings).
pub(crate) struct Shared {
    pub(crate) addr: String,
    pub(crate) client_id: String,
    pub(crate) nn: NamenodeClient<Channel>,
    pub(crate) cfg: ClientConfig,
    /// DataTransfer channels by datanode address: one HTTP/2 connection per datanode, reused by
    /// every block read and write (lazy: connects on first use, reconnects after failures).
    datanodes: Mutex<HashMap<String, Channel>>,
    /// Largest file content the namenode last said it stores inline (`OpenResponse.inline_limit`;
    /// 0 until a create or open for writing told, or when inline data is off or its budget is used up).
    inline_limit: AtomicU64,
    /// Datanodes that failed a read recently (tried last).
    pub(crate) suspects: crate::suspects::Suspects,
    /// Short-circuit reads of replicas on this host.
    pub(crate) local: crate::local::LocalReads,
    /// Number of the last non-idempotent namenode call (see [`Client::retry_id`]).
    last_call: AtomicU64,
    /// Whether the namenode answers (see [`Client::again_in_transport`]).
    silence: Mutex<Silence>,
}

/// When the namenode last answered, and since when it has not (a call failed slowly in
/// transport: it was paused, hung, or gone, and the HTTP/2 keep-alive or the reconnecting channel
/// gave up). Shared by every call of a client, as `ringfs_proto::reconnect` shares its outage:
/// calls made during one silence end at one bound instead of each waiting the whole
/// `reconnect_wait` again (a failed put's cleanup calls, the calls queued in a mount).
#[derive(Debug)]
struct Silence {
    last_answer: std::time::Instant,
    /// Since when, and when a call last failed because of it.
    since: Option<(std::time::Instant, std::time::Instant)>,
}

impl Shared {
    fn silence(&self) -> std::sync::MutexGuard<'_, Silence> {
        self.silence.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The namenode answered (a result or an error of its own).
    fn answered(&self) {
        let mut s = self.silence();
        s.last_answer = std::time::Instant::now();
        s.since = None;
    }

    /// A try started at `started` failed in transport after waiting at least AGAIN_IF_FASTER.
    fn silent(&self, started: std::time::Instant) {
        let now = std::time::Instant::now();
        let mut s = self.silence();
        let since = match s.since {
            Some((since, last))
                if now.saturating_duration_since(last) < self.cfg.reconnect_wait =>
            {
                since
            }
            _ => started.max(s.last_answer),
        };
        s.since = Some((since, now));
    }

    /// When the namenode will have been silent for `reconnect_wait`: calls end then. `None`
    /// when it answers (or its last failure is older than the wait: a new outage, waited again).
    fn silent_until(&self) -> Option<std::time::Instant> {
        let now = std::time::Instant::now();
        let wait = self.cfg.reconnect_wait;
        match self.silence().since {
            Some((since, last)) if now.saturating_duration_since(last) < wait => Some(since + wait),
            _ => None,
        }
    }
}

impl Shared {
    /// A DataTransfer client for `addr`.
    pub(crate) fn datanode(
        &self,
        addr: &str,
    ) -> Result<ringfs_proto::pb::data_transfer_client::DataTransferClient<Channel>, ClientError>
    {
        let mut pool = self.datanodes.lock().unwrap_or_else(|p| p.into_inner());
        let ch = match pool.get(addr) {
            Some(ch) => ch.clone(),
            None => {
                let ch = net::connect_lazy(addr).map_err(|e| {
                    ClientError::Protocol(format!("invalid datanode address {addr:?}: {e}"))
                })?;
                pool.insert(addr.to_string(), ch.clone());
                ch
            }
        };
        Ok(net::data_transfer_client(ch))
    }

    pub(crate) fn nn_err(&self, status: tonic::Status) -> ClientError {
        // TLS on one side only shows as HTTP/2 or record-layer errors: say what to check.
        let text = error_chain(&status);
        match ringfs_proto::tls::mismatch_hint(&text) {
            Some(hint) => ClientError::Connect {
                addr: self.addr.clone(),
                reason: format!("{text} ({hint})"),
            },
            None => ClientError::from_status(status, &format!("namenode {}", self.addr)),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Best effort: give back leases and locks now instead of when they expire.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let mut nn = self.nn.clone();
            let client_id = self.client_id.clone();
            rt.spawn(async move {
                let _ = nn
                    .release_lease(pb::RenewLeaseRequest {
                        client_id,
                        inode: 0,
                    })
                    .await;
            });
        }
    }
}

/// A connection to a ringfs cluster acting as one caller. Cheap to clone; all clones share one
/// namenode connection, one `client_id` (the lease holder name) and one lease renewer, which runs
/// while any clone lives.
#[derive(Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
    creds: Arc<pb::Credentials>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("namenode", &self.shared.addr)
            .field("client_id", &self.shared.client_id)
            .field("uid", &self.creds.uid)
            .finish()
    }
}

impl Client {
    /// Connects to the namenode (fails fast when nobody listens) and starts the lease renewer.
    /// Later calls ride out a namenode restart for up to `cfg.reconnect_wait`.
    pub async fn connect(cfg: ClientConfig) -> Result<Client, ClientError> {
        let addr = cfg.namenode.clone();
        let with_hint = |reason: String| match ringfs_proto::tls::mismatch_hint(&reason) {
            Some(hint) => format!("{reason} ({hint})"),
            None => reason,
        };
        let connect_err = |e: tonic::transport::Error| ClientError::Connect {
            addr: addr.clone(),
            reason: with_hint(error_chain(&e)),
        };
        let mut ch = net::connect(&addr).await.map_err(connect_err)?;
        // Something else at the address (a datanode's port, a web server) answers every call
        // with Unimplemented: say so now instead of at every later call (a mount would mount).
        // A TLS server met in plain text (or the other way round) fails the call: say that too.
        // A namenode that does not answer at once (paused) is waited for by the calls that
        // follow, for `reconnect_wait` from now, not after the keep-alive gave up on this one.
        let probed = std::time::Instant::now();
        let mut prober = net::namenode_client(ch.clone());
        let probe = prober.statfs(pb::StatfsRequest {});
        let refused = match tokio::time::timeout(AGAIN_IF_FASTER, probe).await {
            Ok(r) => r.err(),
            Err(_) => None,
        };
        let silent_since = (probed.elapsed() >= AGAIN_IF_FASTER).then_some(probed);
        if let Some(s) = refused {
            if s.code() == tonic::Code::Unimplemented {
                return Err(ClientError::Connect {
                    addr: addr.clone(),
                    reason: "the server there is not a ringfs namenode".to_string(),
                });
            }
            if ringfs_proto::tls::mismatch_hint(&error_chain(&s)).is_some() {
                return Err(ClientError::Connect {
                    addr: addr.clone(),
                    reason: with_hint(error_chain(&s)),
                });
            }
        }
        if !cfg.reconnect_wait.is_zero() {
            // The address answered: from now on a lost connection is waited for, not an error.
            ch = ringfs_proto::reconnect::connect_lazy_waiting(&addr, cfg.reconnect_wait)
                .map_err(connect_err)?;
        }
        let shared = Arc::new(Shared {
            addr,
            client_id: uuid::Uuid::new_v4().to_string(),
            nn: net::namenode_client(ch),
            cfg: cfg.clone(),
            datanodes: Mutex::new(HashMap::new()),
            suspects: Default::default(),
            local: crate::local::LocalReads::new(cfg.short_circuit),
            inline_limit: AtomicU64::new(0),
            last_call: AtomicU64::new(0),
            silence: Mutex::new(Silence {
                last_answer: probed,
                since: silent_since.map(|since| (since, std::time::Instant::now())),
            }),
        });
        tokio::spawn(renew_leases(
            Arc::downgrade(&shared),
            cfg.lease_renew_interval,
        ));
        Ok(Client {
            shared,
            creds: Arc::new(cfg.creds),
        })
    }

    /// This client's unique id (a uuid): the name of its leases and locks at the namenode.
    pub fn client_id(&self) -> &str {
        &self.shared.client_id
    }

    /// The caller this handle acts as.
    pub fn creds(&self) -> &pb::Credentials {
        &self.creds
    }

    /// The same connection and client id, acting as another caller (FUSE: the request's uid/gid).
    pub fn with_creds(&self, creds: pb::Credentials) -> Client {
        Client {
            shared: self.shared.clone(),
            creds: Arc::new(creds),
        }
    }

    /// The raw namenode RPC client (cheap to clone).
    pub fn namenode(&self) -> NamenodeClient<Channel> {
        self.shared.nn.clone()
    }

    /// The namenode address this client talks to.
    pub fn namenode_addr(&self) -> &str {
        &self.shared.addr
    }

    /// The configuration the client was connected with.
    pub fn config(&self) -> &ClientConfig {
        &self.shared.cfg
    }

    fn creds_msg(&self) -> Option<pb::Credentials> {
        Some((*self.creds).clone())
    }

    pub(crate) fn nn_err(&self, status: tonic::Status) -> ClientError {
        self.shared.nn_err(status)
    }

    /// A fresh name for one non-idempotent namenode call (Create, Mkdir, Mknod, Symlink, Link,
    /// Remove, Rename): this client's id and a number it never used before. Every try of the call
    /// carries the same one, so the namenode answers a repeat of a call it applied as it answered
    /// the first (its retry cache) instead of applying it again.
    pub fn retry_id(&self) -> pb::RetryId {
        pb::RetryId {
            client_id: self.shared.client_id.clone(),
            call_id: self.shared.last_call.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }

    /// Sends a namenode call (`call` with a copy of `req`) again when it failed in transport,
    /// for calls whose repetition is harmless: read-only ones, changes that set absolute state
    /// (SetAttr, CommitBlocks of a whole block list; a closing commit sent again after it was
    /// applied is answered as done by the namenode), and non-idempotent changes (creates, renames,
    /// removes) that carry a [`Client::retry_id`]: the namenode remembers those it applied. A call
    /// on the connection a killed namenode just closed fails before the channel notices; the next
    /// one waits for the namenode to be back (`ringfs_proto::reconnect`).
    ///
    /// Quick failures are sent again up to [`AGAIN_ATTEMPTS`] times. A slow one (the namenode
    /// did not answer until the HTTP/2 keep-alive gave up, ~30 s: it is paused or hung, or the
    /// reconnecting channel waited for it) is sent again until the namenode has been silent for
    /// `reconnect_wait` (60 s), and every try of every call of this client ends at that bound
    /// ([`Silence`]): a paused namenode is ridden out like a restart, and one that stays away
    /// fails the calls waiting for it after those 60 s, not each after its own 60 s (sending a
    /// slow failure again without a bound made one lookup wait 4 x 60 s for a namenode that
    /// stays down, and every call queued behind it in the kernel waited as long).
    pub async fn again_in_transport<R, T, F, Fut>(
        &self,
        req: &R,
        call: F,
    ) -> Result<tonic::Response<T>, tonic::Status>
    where
        R: Clone,
        F: Fn(NamenodeClient<Channel>, R) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let wait = self.shared.cfg.reconnect_wait;
        let mut quick_failures = 0;
        let mut pause = Duration::from_millis(20);
        loop {
            let started = std::time::Instant::now();
            // While the namenode is silent, a try ends when it has been for the wait; once it
            // has, a try gets AGAIN_IF_FASTER (it may be back with nobody having asked yet).
            let end = self
                .shared
                .silent_until()
                .map(|at| at.max(started + AGAIN_IF_FASTER));
            let tried = call(self.namenode(), req.clone());
            let r = match end {
                None => tried.await,
                Some(at) => tokio::time::timeout_at(at.into(), tried)
                    .await
                    .unwrap_or_else(|_| {
                        Err(tonic::Status::unavailable(format!(
                            "did not answer within {wait:?}"
                        )))
                    }),
            };
            let s = match r {
                Err(s) if ringfs_proto::error_kind::is_transport(&s) => s,
                r => {
                    self.shared.answered();
                    return r;
                }
            };
            if started.elapsed() < AGAIN_IF_FASTER {
                quick_failures += 1;
                if quick_failures >= AGAIN_ATTEMPTS {
                    return Err(s);
                }
            } else if wait.is_zero() {
                return Err(s);
            } else {
                self.shared.silent(started);
            }
            if self
                .shared
                .silent_until()
                .is_some_and(|at| std::time::Instant::now() + pause >= at)
            {
                return Err(s);
            }
            // The channel may hand the next call to the same dead connection until it has seen
            // it close: give it a moment.
            tracing::debug!(error = %s, "namenode call failed in transport; again");
            tokio::time::sleep(pause).await;
            pause = (pause * 4).min(AGAIN_MAX_PAUSE);
        }
    }

    // ------------------------------------------------------------------ namespace (paths)

    /// Attributes of `path` (a final symlink is not followed).
    pub async fn stat(&self, path: &str) -> Result<pb::Attr, ClientError> {
        self.getattr(path_ref(path)).await
    }

    /// Attributes of a node given by path or inode.
    pub async fn getattr(&self, node: pb::NodeRef) -> Result<pb::Attr, ClientError> {
        let what = describe(&node);
        let req = pb::GetAttrRequest {
            creds: self.creds_msg(),
            node: Some(node),
            access_mask: 0,
            client_id: String::new(),
        };
        let resp = self
            .again_in_transport(&req, |mut nn, req| async move { nn.get_attr(req).await })
            .await
            .map_err(|s| self.nn_err(s))?;
        attr_of(resp.into_inner().attr, &what)
    }

    /// The target of the symlink `node`.
    pub async fn readlink(&self, node: pb::NodeRef) -> Result<String, ClientError> {
        let req = pb::ReadlinkRequest {
            creds: self.creds_msg(),
            node: Some(node),
        };
        let resp = self
            .again_in_transport(&req, |mut nn, req| async move { nn.readlink(req).await })
            .await
            .map_err(|s| self.nn_err(s))?;
        Ok(resp.into_inner().target)
    }

    /// Every entry of the directory `path`, sorted by name (pages through `ReadDir`).
    pub async fn list(&self, path: &str) -> Result<Vec<pb::DirEntry>, ClientError> {
        self.list_node(path_ref(path)).await
    }

    /// Every entry of a directory given by path or inode.
    pub async fn list_node(&self, dir: pb::NodeRef) -> Result<Vec<pb::DirEntry>, ClientError> {
        let mut out = Vec::new();
        let mut after = String::new();
        loop {
            let page = self.read_dir_page(dir.clone(), &after, 0).await?;
            out.extend(page.entries);
            if !page.more {
                return Ok(out);
            }
            match out.last() {
                Some(e) => after = e.name.clone(),
                None => return Ok(out),
            }
        }
    }

    /// One page of a directory: entries whose names sort after `after` (limit 0 = server default).
    pub async fn read_dir_page(
        &self,
        dir: pb::NodeRef,
        after: &str,
        limit: u32,
    ) -> Result<pb::ReadDirResponse, ClientError> {
        let req = pb::ReadDirRequest {
            creds: self.creds_msg(),
            dir: Some(dir),
            after: after.to_string(),
            limit,
        };
        let resp = self
            .again_in_transport(&req, |mut nn, req| async move { nn.read_dir(req).await })
            .await
            .map_err(|s| self.nn_err(s))?;
        Ok(resp.into_inner())
    }

    /// Waits until every change this namenode acknowledged so far is durable on its disk. Changes
    /// are acknowledged once they survive a crash of the namenode process; the path-level calls of
    /// this library (mkdir, remove, rename, [`FileWriter::finish`]) sync before they return.
    pub async fn sync(&self) -> Result<(), ClientError> {
        // Sent again after a failure in transport: a namenode that restarted meanwhile replayed
        // its log into the store when it opened, so the changes asked about are durable.
        self.again_in_transport(&pb::SyncRequest {}, |mut nn, req| async move {
            nn.sync(req).await
        })
        .await
        .map_err(|s| self.nn_err(s))?;
        Ok(())
    }

    /// Creates a directory (mode 0o755); `parents` = `mkdir -p`.
    pub async fn mkdir(&self, path: &str, parents: bool) -> Result<pb::Attr, ClientError> {
        self.mkdir_mode(path, parents, 0o755).await
    }

    /// Creates a directory with the given permission bits.
    pub async fn mkdir_mode(
        &self,
        path: &str,
        parents: bool,
        mode: u32,
    ) -> Result<pb::Attr, ClientError> {
        let req = pb::MkdirRequest {
            creds: self.creds_msg(),
            entry: Some(entry_path(path)),
            mode,
            parents,
            retry: Some(self.retry_id()),
        };
        let resp = self
            .again_in_transport(&req, |mut nn, req| async move { nn.mkdir(req).await })
            .await
            .map_err(|s| self.nn_err(s))?;
        self.sync().await?;
        attr_of(resp.into_inner().attr, path)
    }

    /// Removes a file, or a directory (recursively with `recursive`, else only when empty).
    pub async fn remove(&self, path: &str, recursive: bool) -> Result<(), ClientError> {
        self.remove_entry(entry_path(path), recursive).await
    }

    /// [`Client::remove`] of the entry `name` of directory `parent` (an inode): wherever that
    /// directory has been moved meanwhile.
    pub async fn remove_child(
        &self,
        parent: u64,
        name: &str,
        recursive: bool,
    ) -> Result<(), ClientError> {
        let child = pb::ChildRef {
            parent,
            name: name.to_string(),
        };
        let entry = pb::EntryRef {
            target: Some(pb::entry_ref::Target::Child(child)),
        };
        self.remove_entry(entry, recursive).await
    }

    async fn remove_entry(&self, entry: pb::EntryRef, recursive: bool) -> Result<(), ClientError> {
        let req = pb::RemoveRequest {
            creds: self.creds_msg(),
            entry: Some(entry),
            recursive,
            directory: false,
            any_kind: true,
            retry: Some(self.retry_id()),
            keep_parent_times: false,
        };
        self.again_in_transport(&req, |mut nn, req| async move { nn.remove(req).await })
            .await
            .map_err(|s| self.nn_err(s))?;
        self.sync().await
    }

    /// Renames `from` to `to` atomically (replacing an existing `to` the way rename(2) does).
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), ClientError> {
        self.rename_with(from, to, false, false).await
    }

    /// Renames with renameat2 flags: `no_replace` fails with "already exists" when `to` exists;
    /// `exchange` swaps the two entries atomically.
    pub async fn rename_with(
        &self,
        from: &str,
        to: &str,
        no_replace: bool,
        exchange: bool,
    ) -> Result<(), ClientError> {
        let req = pb::RenameRequest {
            creds: self.creds_msg(),
            from: Some(entry_path(from)),
            to: Some(entry_path(to)),
            no_replace,
            exchange,
            retry: Some(self.retry_id()),
        };
        self.again_in_transport(&req, |mut nn, req| async move { nn.rename(req).await })
            .await
            .map_err(|s| self.nn_err(s))?;
        self.sync().await
    }

    /// setrep: sets the replication factor of the regular file `path` (a final symlink is not
    /// followed). The namenode then adds or removes replicas in the background; this returns once
    /// the new factor is recorded (and durable), not when the replicas are there. Owner or root;
    /// 1..=the namenode's limit. Returns the factor before the call and the new attributes (a
    /// call sent again after a lost answer may report the new factor as the previous one).
    pub async fn set_replication(
        &self,
        path: &str,
        replication: u32,
    ) -> Result<(u32, pb::Attr), ClientError> {
        let req = pb::SetReplicationRequest {
            creds: self.creds_msg(),
            node: Some(path_ref(path)),
            replication,
        };
        let resp = self
            .again_in_transport(
                &req,
                |mut nn, req| async move { nn.set_replication(req).await },
            )
            .await
            .map_err(|s| self.nn_err(s))?
            .into_inner();
        self.sync().await?;
        Ok((resp.previous, attr_of(resp.attr, path)?))
    }

    /// Creates (or with `overwrite` truncates) a file and opens it for writing under this client's
    /// lease. Write with [`FileWriter::write`], then [`FileWriter::finish`].
    pub async fn create(&self, path: &str, opts: CreateOptions) -> Result<FileWriter, ClientError> {
        let replication = if opts.replication != 0 {
            opts.replication
        } else {
            self.shared.cfg.replication
        };
        let block_size = if opts.block_size != 0 {
            opts.block_size
        } else {
            self.shared.cfg.block_size
        };
        let req = pb::CreateRequest {
            creds: self.creds_msg(),
            entry: Some(entry_path(path)),
            mode: opts.mode,
            replication,
            block_size,
            exclusive: opts.exclusive,
            overwrite: opts.overwrite,
            client_id: self.shared.client_id.clone(),
            open_for_write: true,
            retry: Some(self.retry_id()),
            min_replicas: self.shared.cfg.min_replicas,
        };
        let resp = self
            .again_in_transport(&req, |mut nn, req| async move { nn.create(req).await })
            .await
            .map_err(|s| self.nn_err(s))?;
        let resp = resp.into_inner();
        self.note_inline_limit(resp.inline_limit);
        let attr = attr_of(resp.attr, path)?;
        FileWriter::new(self.clone(), path.to_string(), attr)
    }

    /// Opens a file for reading: fetches its attributes and block locations once.
    pub async fn open(&self, node: pb::NodeRef) -> Result<FileReader, ClientError> {
        let layout = self.layout(node, 0, 0).await?;
        Ok(FileReader::new(self.clone(), layout))
    }

    /// Attributes and block locations of `node` for `[offset, offset+len)` (len 0 = to the end).
    pub async fn block_locations(
        &self,
        node: pb::NodeRef,
        offset: u64,
        len: u64,
    ) -> Result<pb::GetBlockLocationsResponse, ClientError> {
        let req = pb::GetBlockLocationsRequest {
            creds: self.creds_msg(),
            node: Some(node),
            offset,
            len,
        };
        let resp = self
            .again_in_transport(&req, |mut nn, req| async move {
                nn.get_block_locations(req).await
            })
            .await
            .map_err(|s| self.nn_err(s))?;
        Ok(resp.into_inner())
    }

    pub(crate) async fn layout(
        &self,
        node: pb::NodeRef,
        offset: u64,
        len: u64,
    ) -> Result<Layout, ClientError> {
        let what = describe(&node);
        let resp = self.block_locations(node, offset, len).await?;
        let attr = attr_of(resp.attr, &what)?;
        if attr.kind == pb::FileKind::Directory as i32 {
            return Err(ClientError::status(
                ringfs_proto::ErrorKind::IsADirectory,
                format!("{what}: is a directory"),
            ));
        }
        Ok(Layout::new(what, attr, resp.blocks).with_inline(resp.inline_data.into()))
    }

    // ------------------------------------------------------------------ inline data

    /// The largest content the namenode last said it stores inline (0 = none).
    pub fn inline_limit(&self) -> u64 {
        self.shared.inline_limit.load(Ordering::Relaxed)
    }

    /// Records `OpenResponse.inline_limit` from a Create or OpenWrite answer.
    pub fn note_inline_limit(&self, limit: u64) {
        self.shared.inline_limit.store(limit, Ordering::Relaxed);
    }

    /// Commits the whole content of `inode` (whose lease this client holds) inline in the namenode's
    /// metadata instead of in blocks: `data` is bytes `[0, data.len())`, the rest of `size` reads as
    /// zeros, the old blocks are freed, `close` releases the lease. `Ok(None)` when the namenode
    /// does not take it inline (over its limit, or its inline budget is used up): the caller writes
    /// blocks instead, and the limit is 0 until the next create or open tells otherwise.
    pub async fn commit_inline(
        &self,
        inode: u64,
        data: Vec<u8>,
        size: u64,
        close: bool,
        mtime: Option<pb::Time>,
    ) -> Result<Option<pb::Attr>, ClientError> {
        let req = pb::CommitBlocksRequest {
            inode,
            client_id: self.shared.client_id.clone(),
            blocks: Vec::new(),
            size,
            close,
            mtime,
            inline_data: Some(data),
        };
        let r = self
            .again_in_transport(
                &req,
                |mut nn, req| async move { nn.commit_blocks(req).await },
            )
            .await;
        match r {
            Ok(resp) => attr_of(resp.into_inner().attr, &format!("inode {inode}")).map(Some),
            Err(s) if ringfs_proto::ErrorKind::of(&s) == ringfs_proto::ErrorKind::NoSpace => {
                self.note_inline_limit(0);
                Ok(None)
            }
            Err(s) => Err(self.nn_err(s)),
        }
    }

    // ------------------------------------------------------------------ block level

    /// Allocates a fresh block for `inode` (not yet in its block list), writes `data` through the
    /// replica pipeline (with pipeline recovery) and returns it, ready for [`Client::commit_blocks`].
    /// The caller must hold the file's lease (Create/OpenWrite with this client id).
    pub async fn write_new_block(
        &self,
        inode: u64,
        data: Bytes,
    ) -> Result<pb::CommittedBlock, ClientError> {
        let req = pb::AllocateBlockRequest {
            inode,
            client_id: self.shared.client_id.clone(),
            // A node that just failed a pipeline of this client would most likely fail this one
            // too: one stall per hung node, not one per block.
            excluded: self.shared.suspects.recent(),
            min_replicas: self.shared.cfg.min_replicas,
        };
        // Sent again after a failure in transport: a block the first call allocated and nobody
        // writes is freed when the file is committed or closed (and forgotten by a restart).
        let located = self
            .again_in_transport(
                &req,
                |mut nn, req| async move { nn.allocate_block(req).await },
            )
            .await
            .map_err(|s| self.nn_err(s))?
            .into_inner();
        let mut w = BlockWriter::start(self.clone(), inode, format!("inode {inode}"), located);
        let mut off = 0;
        while off < data.len() {
            let end = (off + ringfs_proto::chunk::PACKET_SIZE).min(data.len());
            w.push(data.slice(off..end)).await?;
            off = end;
        }
        w.finish().await
    }

    /// Gives back this client's lease of `inode` alone: the file is closed at its committed content.
    pub async fn release_file_lease(&self, inode: u64) -> Result<(), ClientError> {
        let req = pb::RenewLeaseRequest {
            client_id: self.shared.client_id.clone(),
            inode,
        };
        // Not through `again_in_transport` alone: whether a try failed in transport decides what
        // a refusal means.
        let Err(s) = self.namenode().release_lease(req.clone()).await else {
            return Ok(());
        };
        if !ringfs_proto::error_kind::is_transport(&s) {
            return Err(self.nn_err(s));
        }
        let Err(s) = self
            .again_in_transport(
                &req,
                |mut nn, req| async move { nn.release_lease(req).await },
            )
            .await
        else {
            return Ok(());
        };
        // Refused after a try that failed in transport: if the file is closed, that first try
        // was applied before the connection went.
        match self.getattr(inode_ref(inode)).await {
            Ok(a) if !a.under_construction => Ok(()),
            _ => Err(self.nn_err(s)),
        }
    }

    /// Replaces the block list of `inode` atomically and sets its size; `close` releases the lease.
    pub async fn commit_blocks(
        &self,
        inode: u64,
        blocks: Vec<pb::CommittedBlock>,
        size: u64,
        close: bool,
    ) -> Result<pb::Attr, ClientError> {
        let req = pb::CommitBlocksRequest {
            inode,
            client_id: self.shared.client_id.clone(),
            blocks,
            size,
            close,
            mtime: None,
            inline_data: None,
        };
        let resp = self
            .again_in_transport(
                &req,
                |mut nn, req| async move { nn.commit_blocks(req).await },
            )
            .await
            .map_err(|s| self.nn_err(s))?;
        attr_of(resp.into_inner().attr, &format!("inode {inode}"))
    }

    /// Reads `[offset, offset+len)` of a file: short only at end of file; holes and the part of
    /// the size beyond the last block read as zeros. Every byte is verified against its chunk hash.
    pub async fn read_range(
        &self,
        inode: u64,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, ClientError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let layout = self.layout(inode_ref(inode), offset, len).await?;
        crate::read::read_layout(self, &layout, offset, len).await
    }

    // ------------------------------------------------------------------ admin

    /// The cluster report (datanodes, capacity, replication health).
    pub async fn report(&self) -> Result<pb::ReportResponse, ClientError> {
        let resp = self
            .again_in_transport(&pb::ReportRequest {}, |mut nn, req| async move {
                nn.report(req).await
            })
            .await
            .map_err(|s| self.nn_err(s))?;
        Ok(resp.into_inner())
    }

    /// Health of the files under `path`.
    pub async fn fsck(
        &self,
        path: &str,
        list_blocks: bool,
    ) -> Result<pb::FsckResponse, ClientError> {
        let req = pb::FsckRequest {
            creds: self.creds_msg(),
            path: path.to_string(),
            list_blocks,
        };
        let resp = self
            .again_in_transport(&req, |mut nn, req| async move { nn.fsck(req).await })
            .await
            .map_err(|s| self.nn_err(s))?;
        Ok(resp.into_inner())
    }

    /// Capacity and usage of the cluster.
    pub async fn statfs(&self) -> Result<pb::StatfsResponse, ClientError> {
        let resp = self
            .again_in_transport(&pb::StatfsRequest {}, |mut nn, req| async move {
                nn.statfs(req).await
            })
            .await
            .map_err(|s| self.nn_err(s))?;
        Ok(resp.into_inner())
    }

    /// Starts draining the datanode at `address`.
    pub async fn decommission(&self, address: &str) -> Result<(), ClientError> {
        let req = pb::DecommissionRequest {
            address: address.to_string(),
        };
        let r = self.namenode().decommission(req).await;
        r.map(drop).map_err(|s| self.nn_err(s))
    }

    /// Drops a dead datanode from the namenode's list for good.
    pub async fn forget_datanode(&self, address: &str) -> Result<(), ClientError> {
        let req = pb::DecommissionRequest {
            address: address.to_string(),
        };
        let r = self.namenode().forget_datanode(req).await;
        r.map(drop).map_err(|s| self.nn_err(s))
    }

    /// Puts a decommissioning or decommissioned datanode back in service.
    pub async fn recommission(&self, address: &str) -> Result<(), ClientError> {
        let req = pb::DecommissionRequest {
            address: address.to_string(),
        };
        let r = self.namenode().recommission(req).await;
        r.map(drop).map_err(|s| self.nn_err(s))
    }

    /// Fails with "not enough live datanodes: need N, have M" when fewer than `replication` datanodes
    /// are live (0 = the cluster default). Lets `put` refuse before it creates anything.
    pub async fn check_live_datanodes(&self, replication: u32) -> Result<(), ClientError> {
        // Just after a namenode restart the datanodes are still re-registering (a heartbeat or
        // so): wait for them while the namenode says so, as its writes do, instead of failing.
        let deadline = tokio::time::Instant::now() + RESTART_WAIT;
        loop {
            let report = self.report().await?;
            let need = if replication != 0 {
                replication
            } else if self.shared.cfg.replication != 0 {
                self.shared.cfg.replication
            } else {
                report.default_replication
            };
            let have = report
                .datanodes
                .iter()
                .filter(|d| d.state == "live")
                .count() as u32;
            if have >= need {
                return Ok(());
            }
            if !report.restarting || tokio::time::Instant::now() >= deadline {
                let retiring = report
                    .datanodes
                    .iter()
                    .filter(|d| d.state.starts_with("decommission"))
                    .count() as u32;
                return Err(ClientError::NotEnoughDatanodes {
                    need,
                    have,
                    retiring,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Renews this client's leases every `interval` while any `Client` clone lives.
async fn renew_leases(shared: Weak<Shared>, interval: Duration) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(s) = shared.upgrade() else { return };
        let mut nn = s.nn.clone();
        let client_id = s.client_id.clone();
        // Kept short-circuit descriptors of an idle client would pin the files of replicas
        // deleted since (their disk space, and a datanode's volume from being unmounted).
        s.local.sweep();
        drop(s);
        match nn
            .renew_lease(pb::RenewLeaseRequest {
                client_id,
                inode: 0,
            })
            .await
        {
            Err(e) if ringfs_proto::error_kind::is_transport(&e) => {
                tracing::debug!(error = %e, "lease renewal failed");
            }
            // An answer, even a refusal: the namenode runs (ends the calls' wait bound).
            r => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "lease renewal failed");
                }
                if let Some(s) = shared.upgrade() {
                    s.answered();
                }
            }
        }
    }
}

/// The attr of a response, or a protocol error naming `what`.
pub(crate) fn attr_of(attr: Option<pb::Attr>, what: &str) -> Result<pb::Attr, ClientError> {
    attr.ok_or_else(|| {
        ClientError::Protocol(format!("{what}: namenode answered without attributes"))
    })
}

/// "/a/b" or "inode 7", for messages.
pub(crate) fn describe(node: &pb::NodeRef) -> String {
    match &node.target {
        Some(pb::node_ref::Target::Path(p)) => p.clone(),
        Some(pb::node_ref::Target::Inode(i)) => format!("inode {i}"),
        None => "(no node)".to_string(),
    }
}

pub(crate) use ringfs_proto::error_kind::error_chain;

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[test]
    fn a_status_reads_as_its_message_and_its_sources() {
        // What a read from a killed datanode fails with: message + the transport error as source.
        let refused =
            std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let mut st = tonic::Status::unavailable("tcp connect error");
        st.set_source(std::sync::Arc::new(refused));
        let m = error_chain(&st);
        assert_eq!(m, "tcp connect error: connection refused");
    }
}
