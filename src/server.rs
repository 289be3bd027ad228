//! Running nodes: `namenode`, `datanode` and `up` (a whole local cluster in one process). Each merges
//! an optional TOML file, flags and the cluster secret into the role's `Config`, binds, prints
//! `listening on ADDR` on stdout and runs until Ctrl-C or SIGTERM.

use anyhow::{bail, Context};
use clap::Args;
use ringfs_client::{Client, ClientConfig};
use ringfs_proto::tls::TlsFiles;
use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::{duration_arg, size_arg};

/// TLS flags of a server role (the CA is the global `--tls-ca`; see `ringfs_proto::tls`).
#[derive(Args, Debug, Default, Clone)]
pub struct ServerTlsArgs {
    /// This node's TLS certificate chain, PEM: with --tls-key and --tls-ca every connection of
    /// the cluster is TLS [env: RINGFS_TLS_CERT].
    #[arg(long, env = "RINGFS_TLS_CERT", hide_env = true, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// This node's TLS private key, PEM [env: RINGFS_TLS_KEY].
    #[arg(long, env = "RINGFS_TLS_KEY", hide_env = true, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
}

/// Flags of `ringfs namenode` (each overrides the same key of `--config`).
#[derive(Args, Debug)]
pub struct NamenodeArgs {
    /// TOML file with namenode settings (keys as in the namenode Config: data_dir, replication, ...).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory of the metadata journal.
    #[arg(long, value_name = "DIR", required_unless_present = "config")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on (port 0 = any free port; the real one is printed) [default: 127.0.0.1:8020].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// File holding the cluster secret [default: env RINGFS_SECRET, else the config's, else a built-in dev secret].
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Default replication factor of new files [default: 3].
    #[arg(long)]
    pub replication: Option<u32>,
    /// Default block size of new files [default: 64MiB].
    #[arg(long, value_parser = size_arg, value_name = "SIZE")]
    pub block_size: Option<u64>,
    /// Datanode heartbeat interval [default: 3s].
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    pub heartbeat_interval: Option<Duration>,
    /// A datanode silent this long is dead [default: 30s].
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    pub dead_after: Option<Duration>,
    /// Full block report interval of datanodes [default: 5m].
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    pub block_report_interval: Option<Duration>,
    /// A silent writer loses its locks after this long [default: 60s].
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    pub lease_soft_limit: Option<Duration>,
    /// A silent writer's files are recovered and closed after this long [default: 10m].
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    pub lease_hard_limit: Option<Duration>,
    /// Share of blocks that must be reported before safe mode ends [default: 0.999].
    #[arg(long)]
    pub safe_mode_threshold: Option<f64>,
    /// How long safe mode lasts after the threshold is reached [default: 5s].
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    pub safe_mode_extension: Option<Duration>,
    /// Most re-replication copies one datanode takes part in at once.
    #[arg(long)]
    pub replication_max_streams_per_node: Option<u32>,
    /// Most re-replication copies in flight in the cluster.
    #[arg(long)]
    pub replication_max_streams: Option<u32>,
    /// Bytes/s for re-replication and rebalancing in total (0 = unlimited).
    #[arg(long, value_parser = size_arg, value_name = "SIZE")]
    pub replication_bandwidth: Option<u64>,
    /// How often the replication planner runs [default: 1s].
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    pub replication_interval: Option<Duration>,
    /// A scheduled copy not done after this long is planned again [default: 2m].
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    pub replication_timeout: Option<Duration>,
    /// Move replicas to their ring owners after membership changes [default: true].
    #[arg(long, value_name = "BOOL")]
    pub rebalance: Option<bool>,
    /// Files of at most this many bytes are stored inline in the namenode's metadata, not in
    /// blocks (0 = off; at most 1MiB) [default: 64KiB].
    #[arg(long, value_parser = size_arg, value_name = "SIZE")]
    pub inline_max: Option<u64>,
    /// Most inline file content the namenode holds in total (it is kept in memory) [default: 512MiB].
    #[arg(long, value_parser = size_arg, value_name = "SIZE")]
    pub inline_max_total: Option<u64>,
    /// Address of the status web page and Prometheus /metrics, or "off"; a port in use only
    /// costs the page [env: RINGFS_HTTP_LISTEN] [default: 127.0.0.1:9870].
    #[arg(long, env = "RINGFS_HTTP_LISTEN", hide_env = true, value_name = "ADDR")]
    pub http_listen: Option<String>,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
}

/// Flags of `ringfs datanode` (the namenode address is the global `--namenode`).
#[derive(Args, Debug)]
pub struct DatanodeArgs {
    /// TOML file with datanode settings (keys as in the datanode Config: data_dir, namenode, ...).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for block replicas.
    #[arg(long, value_name = "DIR", required_unless_present = "config")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on for DataTransfer (port 0 = any free port; the real one is printed) [default: 127.0.0.1:9866].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Address to register with the namenode [default: the listening address].
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<String>,
    /// Bytes this node offers [default: the size of the file system holding --data-dir].
    #[arg(long, value_parser = size_arg, value_name = "SIZE")]
    pub capacity: Option<u64>,
    /// Rack or zone name (replicas prefer distinct racks).
    #[arg(long, value_name = "NAME")]
    pub rack: Option<String>,
    /// File holding the cluster secret [default: env RINGFS_SECRET, else the config's, else a built-in dev secret].
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Pause between two scrubber passes [default: 6h].
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    pub scrub_interval: Option<Duration>,
    /// Scrubber read rate, bytes/s (0 = unlimited) [default: 32MiB].
    #[arg(long, value_parser = size_arg, value_name = "SIZE")]
    pub scrub_bandwidth: Option<u64>,
    /// Rate of replication copies this node sends, bytes/s (0 = unlimited).
    #[arg(long, value_parser = size_arg, value_name = "SIZE")]
    pub replication_bandwidth: Option<u64>,
    /// Replication copies this node runs at once.
    #[arg(long)]
    pub replication_concurrency: Option<usize>,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
}

/// Flags of `ringfs up`.
#[derive(Args, Debug)]
pub struct UpArgs {
    /// Directory for everything: namenode/, datanode-N/, the cluster secret (kept across runs:
    /// `up` again on the same directory brings the same cluster back).
    #[arg(long, value_name = "DIR", default_value = "/tmp/ringfs")]
    pub data_dir: PathBuf,
    /// Number of datanodes.
    #[arg(long, default_value_t = 3)]
    pub datanodes: usize,
    /// Namenode address.
    #[arg(long, default_value = "127.0.0.1:8020", value_name = "ADDR")]
    pub namenode_listen: String,
    /// Default replication of new files [default: min(3, datanodes)].
    #[arg(long)]
    pub replication: Option<u32>,
    /// Default block size of new files [default: 64MiB].
    #[arg(long, value_parser = size_arg, value_name = "SIZE")]
    pub block_size: Option<u64>,
    /// Datanode heartbeat interval [default: 1s].
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    pub heartbeat_interval: Option<Duration>,
    /// A datanode silent this long is dead [default: 10s].
    #[arg(long, value_parser = duration_arg, value_name = "DURATION")]
    pub dead_after: Option<Duration>,
    /// Capacity each datanode offers [default: the file system's size].
    #[arg(long, value_parser = size_arg, value_name = "SIZE")]
    pub capacity: Option<u64>,
    /// Also mount the cluster here (FUSE) once it is up.
    #[arg(long, value_name = "DIR")]
    pub mount: Option<PathBuf>,
    /// Address of the namenode's status web page and Prometheus /metrics, or "off"
    /// [env: RINGFS_HTTP_LISTEN].
    #[arg(long, env = "RINGFS_HTTP_LISTEN", hide_env = true, default_value = ringfs_namenode::config::DEFAULT_HTTP_LISTEN, value_name = "ADDR")]
    pub http_listen: String,
    #[command(flatten)]
    pub tls: ServerTlsArgs,
}

/// Resolves when Ctrl-C, SIGTERM or SIGHUP arrives. SIGHUP is what a process in the foreground
/// gets when its terminal or ssh session closes: it stops cleanly too (a mount commits what it
/// holds and unmounts; SIGHUP's default action killed it, dropping the data of files still open
/// and leaving a stale mountpoint).
pub async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    let on = |kind: SignalKind| async move {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = on(SignalKind::terminate()) => {}
        _ = on(SignalKind::hangup()) => {}
    }
}

/// The cluster secret: `--secret-file`, else env `RINGFS_SECRET`, else the config's
/// `secret_file`, else its `secret`, else the built-in dev secret (the same one for every role,
/// so a dev cluster works without setup).
fn secret(
    file: Option<&Path>,
    configured_file: Option<&Path>,
    configured: &str,
) -> anyhow::Result<String> {
    let read = |f: &Path| -> anyhow::Result<String> {
        let s = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read secret file {}", f.display()))?;
        let s = s.trim().to_string();
        if s.is_empty() {
            bail!("secret file {} is empty", f.display());
        }
        Ok(s)
    };
    if let Some(f) = file {
        return read(f);
    }
    if let Ok(s) = std::env::var("RINGFS_SECRET") {
        if !s.trim().is_empty() {
            return Ok(s.trim().to_string());
        }
    }
    if let Some(f) = configured_file {
        return read(f);
    }
    if !configured.is_empty() && configured != ringfs_proto::token::DEV_SECRET {
        return Ok(configured.to_string());
    }
    tracing::warn!(
        "no cluster secret set (--secret-file, RINGFS_SECRET or `secret` in --config): using the \
         built-in development secret, which anyone can use to join this cluster or read its blocks"
    );
    Ok(ringfs_proto::token::DEV_SECRET.to_string())
}

/// A node's TOML file: its config, and `listen` (a setting of the process, not of the node's
/// library config).
/// Keys of a `--config` file that belong to the process rather than to the node's `Config`.
#[derive(Debug, Default)]
struct EdgeKeys {
    listen: Option<String>,
    tls: TlsFiles,
    secret_file: Option<PathBuf>,
}

fn read_toml<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<(T, EdgeKeys)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let shown = || format!("config {}", path.display());
    let mut table: toml::Table = toml::from_str(&text).with_context(shown)?;
    let mut take = |key: &str, example: &str| match table.remove(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(anyhow::anyhow!(
            "{}: {key} must be a string like \"{example}\", not {other}",
            shown()
        )),
    };
    let edge = EdgeKeys {
        listen: take("listen", "127.0.0.1:8020")?,
        tls: TlsFiles {
            ca: take("tls_ca", "/etc/ringfs/ca.pem")?.map(PathBuf::from),
            cert: take("tls_cert", "/etc/ringfs/node.pem")?.map(PathBuf::from),
            key: take("tls_key", "/etc/ringfs/node.key")?.map(PathBuf::from),
        },
        secret_file: take("secret_file", "/etc/ringfs/secret")?.map(PathBuf::from),
    };
    Ok((table.try_into().with_context(shown)?, edge))
}

/// A server role's config from its `--config` file (or the defaults), its listen address (the flag,
/// the file's `listen`, else `default_listen`), its TLS files (flags over the file's keys) and
/// the file's `secret_file`.
fn role_config<T: serde::de::DeserializeOwned + Default>(
    file: Option<&Path>,
    listen: &Option<String>,
    default_listen: &str,
    tls_ca: Option<PathBuf>,
    tls: &ServerTlsArgs,
) -> anyhow::Result<(T, String, TlsFiles, Option<PathBuf>)> {
    let (config, edge): (T, EdgeKeys) = match file {
        Some(p) => read_toml(p)?,
        None => Default::default(),
    };
    let listen = listen
        .clone()
        .or(edge.listen)
        .unwrap_or_else(|| default_listen.to_string());
    let tls = server_tls(tls_ca, tls, edge.tls);
    Ok((config, listen, tls, edge.secret_file))
}

/// The TLS files of a server role: each flag (or its env) over the `--config` key.
fn server_tls(ca: Option<PathBuf>, flags: &ServerTlsArgs, configured: TlsFiles) -> TlsFiles {
    TlsFiles {
        ca: ca.or(configured.ca),
        cert: flags.tls_cert.clone().or(configured.cert),
        key: flags.tls_key.clone().or(configured.key),
    }
}

/// Makes `files` this process's TLS settings (nothing when none is given): a server role needs
/// all three files, a client the CA only.
pub fn install_tls(files: &TlsFiles, server: bool) -> anyhow::Result<()> {
    let loaded = if server {
        files.load_server()
    } else {
        files.load_client()
    };
    if let Some(tls) = loaded.map_err(anyhow::Error::msg)? {
        ringfs_proto::tls::install(tls).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

/// The namenode config, listen address and TLS files from `--config`, the flags and the global
/// `--tls-ca`.
pub fn namenode_config(
    a: &NamenodeArgs,
    tls_ca: Option<PathBuf>,
) -> anyhow::Result<(ringfs_namenode::Config, String, TlsFiles)> {
    let (mut c, listen, tls, secret_file): (ringfs_namenode::Config, _, _, _) = role_config(
        a.config.as_deref(),
        &a.listen,
        ringfs_proto::DEFAULT_NAMENODE,
        tls_ca,
        &a.tls,
    )?;
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { c.$f = v; } )* };
    }
    set!(
        data_dir,
        replication,
        block_size,
        heartbeat_interval,
        dead_after,
        block_report_interval,
        lease_soft_limit,
        lease_hard_limit,
        safe_mode_threshold,
        safe_mode_extension,
        replication_max_streams_per_node,
        replication_max_streams,
        replication_bandwidth,
        replication_interval,
        replication_timeout,
        rebalance,
        inline_max,
        inline_max_total,
        http_listen
    );
    c.secret = secret(a.secret_file.as_deref(), secret_file.as_deref(), &c.secret)?;
    c.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((c, listen, tls))
}

/// The datanode config, listen address and TLS files from `--config`, the flags and the global
/// `--namenode` and `--tls-ca`.
pub fn datanode_config(
    a: &DatanodeArgs,
    namenode: Option<String>,
    tls_ca: Option<PathBuf>,
) -> anyhow::Result<(ringfs_datanode::Config, String, TlsFiles)> {
    let (mut c, listen, tls, secret_file): (ringfs_datanode::Config, _, _, _) = role_config(
        a.config.as_deref(),
        &a.listen,
        "127.0.0.1:9866",
        tls_ca,
        &a.tls,
    )?;
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { c.$f = v; } )* };
    }
    set!(
        data_dir,
        rack,
        scrub_interval,
        scrub_bandwidth,
        replication_bandwidth,
        replication_concurrency
    );
    if a.capacity.is_some() {
        c.capacity = a.capacity;
    }
    if a.advertise.is_some() {
        c.advertise = a.advertise.clone();
    }
    if let Some(n) = namenode {
        c.namenode = n;
    }
    c.secret = secret(a.secret_file.as_deref(), secret_file.as_deref(), &c.secret)?;
    c.validate()
        .map_err(|e| anyhow::anyhow!("invalid datanode config: {e}"))?;
    Ok((c, listen, tls))
}

/// Creates a data dir (and its parents); an existing file there is named as not a directory
/// (create_dir_all said "File exists").
/// `up --mount` must not hide the nodes' own directories: a mount over the data dir (or a
/// directory holding it, or a node's directory in it) makes the datanodes store their replicas
/// in the file system they serve, and the first write waits on itself for ever (Ctrl-C too).
/// A mountpoint elsewhere inside the data dir is fine.
fn check_mount_outside_nodes(mount: &Path, data_dir: &Path) -> anyhow::Result<()> {
    let real = |p: &Path| {
        std::fs::canonicalize(p)
            .or_else(|_| std::path::absolute(p))
            .unwrap_or_else(|_| p.to_path_buf())
    };
    let (m, d) = (real(mount), real(data_dir));
    let node_dir = m.strip_prefix(&d).ok().and_then(|rest| {
        let first = rest.components().next()?.as_os_str().to_str()?.to_string();
        (first == "namenode" || first.starts_with("datanode-")).then_some(first)
    });
    if d.starts_with(&m) || node_dir.is_some() {
        bail!(
            "{}: cannot mount over the data dir {} or the nodes' directories in it: the \
             datanodes would store their blocks in the file system they serve (use another \
             directory, e.g. {})",
            mount.display(),
            data_dir.display(),
            d.join("mnt").display()
        );
    }
    Ok(())
}

fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!("data dir {}: not a directory", dir.display());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))
}

async fn bind(addr: &str, role: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("{role}: cannot listen on {addr}"))
}

pub async fn namenode(a: NamenodeArgs, tls_ca: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let (config, listen, tls) = namenode_config(&a, tls_ca)?;
    install_tls(&tls, true)?;
    create_data_dir(&config.data_dir)?;
    let listener = bind(&listen, "namenode").await?;
    let addr = listener
        .local_addr()
        .context("listener has no local address")?;
    // "listening on" once the data dir is locked and loaded: a namenode that cannot start (its
    // dir in use by another one) prints only its error.
    ringfs_namenode::run_with_ready(config, listener, terminated(), move |ready| {
        print_listening_addr(&addr.to_string());
        if let Some(http) = ready.http {
            print_status_url(&http.to_string());
        }
    })
    .await
    .context("namenode")?;
    Ok(ExitCode::SUCCESS)
}

pub async fn datanode(
    a: DatanodeArgs,
    namenode: Option<String>,
    tls_ca: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let (config, listen, tls) = datanode_config(&a, namenode, tls_ca)?;
    install_tls(&tls, true)?;
    create_data_dir(&config.data_dir)?;
    let listener = bind(&listen, "datanode").await?;
    // "listening on" once the data dir is locked and indexed (see `namenode`).
    ringfs_datanode::run_with_ready(config, listener, terminated(), |addr| {
        print_listening_addr(&addr.to_string())
    })
    .await
    .context("datanode")?;
    Ok(ExitCode::SUCCESS)
}

/// The secret `up` keeps in its data dir (created on the first run, 0600).
fn cluster_secret(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let mut raw = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut raw))
        .context("cannot read /dev/urandom for a cluster secret")?;
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(f, "{hex}")?;
    f.sync_all()?;
    Ok(hex)
}

/// Takes `DIR/up.lock` (flock, released when the process ends) for the life of an `up`.
fn lock_up_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = dir.join("up.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "data dir {} is in use by another `ringfs up` (lock held)",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

fn shutdown_on(rx: &watch::Receiver<bool>) -> impl Future<Output = ()> + Send + 'static {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// `ringfs up`: namenode + N datanodes in this process, until Ctrl-C/SIGTERM.
pub async fn up(a: UpArgs, tls_ca: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    if a.datanodes == 0 {
        bail!("--datanodes must be at least 1");
    }
    let tls = server_tls(tls_ca, &a.tls, TlsFiles::default());
    install_tls(&tls, true)?;
    if let Some(m) = &a.mount {
        crate::commands::check_mountpoint(m)?;
    }
    if let Some(r) = a.replication.filter(|&r| r as usize > a.datanodes) {
        bail!(
            "--replication {r} needs at least {r} datanodes (--datanodes is {}): every put would fail",
            a.datanodes
        );
    }
    create_data_dir(&a.data_dir)?;
    if let Some(m) = &a.mount {
        check_mount_outside_nodes(m, &a.data_dir)?;
    }
    // One `up` per data dir: a second one fails here with one message instead of one per node.
    let _lock = lock_up_dir(&a.data_dir)?;
    let secret = cluster_secret(&a.data_dir)?;

    let nn_config = ringfs_namenode::Config {
        data_dir: a.data_dir.join("namenode"),
        replication: a.replication.unwrap_or(a.datanodes.min(3) as u32),
        block_size: a
            .block_size
            .unwrap_or(ringfs_namenode::Config::default().block_size),
        heartbeat_interval: a.heartbeat_interval.unwrap_or(Duration::from_secs(1)),
        dead_after: a.dead_after.unwrap_or(Duration::from_secs(10)),
        secret: secret.clone(),
        http_listen: a.http_listen.clone(),
        ..ringfs_namenode::Config::default()
    };
    nn_config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    std::fs::create_dir_all(&nn_config.data_dir)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut nodes: JoinSet<(String, anyhow::Result<()>)> = JoinSet::new();

    let nn_listener = bind(&a.namenode_listen, "namenode").await?;
    let nn_addr = nn_listener.local_addr()?.to_string();
    let stop = shutdown_on(&stop_rx);
    // The status page's address, known once the namenode is about to serve.
    let (http_tx, mut http_rx) = tokio::sync::oneshot::channel();
    nodes.spawn(async move {
        let r = ringfs_namenode::run_with_ready(nn_config, nn_listener, stop, move |ready| {
            let _ = http_tx.send(ready.http);
        })
        .await
        .map_err(anyhow::Error::from);
        ("namenode".to_string(), r)
    });

    for i in 0..a.datanodes {
        let name = format!("datanode-{i}");
        let config = ringfs_datanode::Config {
            data_dir: a.data_dir.join(&name),
            namenode: nn_addr.clone(),
            capacity: a.capacity,
            secret: secret.clone(),
            ..ringfs_datanode::Config::default()
        };
        std::fs::create_dir_all(&config.data_dir)?;
        let listener = bind("127.0.0.1:0", &name).await?;
        let stop = shutdown_on(&stop_rx);
        nodes.spawn(async move {
            let r = ringfs_datanode::run(config, listener, stop)
                .await
                .map_err(anyhow::Error::from);
            (name, r)
        });
    }

    // Ready when every datanode is registered and live.
    let ready = wait_live(&nn_addr, a.datanodes);
    let outcome: anyhow::Result<()> = tokio::select! {
        r = ready => r,
        Some(done) = nodes.join_next() => Err(node_exit(done)),
        _ = terminated() => Err(anyhow::anyhow!("interrupted before the cluster was up")),
    };
    if let Err(e) = outcome {
        let _ = stop_tx.send(true);
        drain(&mut nodes).await;
        return Err(e);
    }
    print_listening_addr(&nn_addr);
    // The namenode called `ready` before it served the reports `wait_live` saw.
    let status = match http_rx.try_recv() {
        Ok(Some(http)) => {
            print_status_url(&http.to_string());
            format!(", status page http://{http}/")
        }
        _ => String::new(),
    };
    let tls_env = match &tls.ca {
        Some(ca) if ringfs_proto::tls::enabled() => format!(" RINGFS_TLS_CA={}", ca.display()),
        _ => String::new(),
    };
    // Not eprintln!: a closed stderr must not stop the cluster.
    let _ = writeln!(
        std::io::stderr(),
        "ringfs: cluster up: namenode {nn_addr}{status}, {} datanodes, data in {}\nringfs: try: RINGFS_NAMENODE={nn_addr}{tls_env} ringfs ls /   (Ctrl-C stops the cluster)",
        a.datanodes,
        a.data_dir.display()
    );

    // The mount stops first (it commits what it still holds while the nodes are up).
    let (unmount_tx, unmount_rx) = watch::channel(false);
    let mount = match &a.mount {
        Some(m) => match crate::commands::spawn_mount(&nn_addr, m, &unmount_rx).await {
            Ok(h) => Some(h),
            Err(e) => {
                let _ = stop_tx.send(true);
                drain(&mut nodes).await;
                return Err(e);
            }
        },
        None => None,
    };

    let mut mount = mount;
    let mount_ended = async {
        match mount.as_mut() {
            Some(h) => match h.await {
                Ok(r) => r,
                Err(e) => Err(anyhow::anyhow!("mount task failed: {e}")),
            },
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        _ = terminated() => Ok(()),
        Some(done) = nodes.join_next() => Err(node_exit(done)),
        r = mount_ended => match r {
            // Unmounted from outside: the cluster keeps running until Ctrl-C.
            Ok(()) => {
                tracing::info!("the mount ended; the cluster keeps running until Ctrl-C");
                mount = None;
                terminated().await;
                Ok(())
            }
            Err(e) => {
                mount = None;
                Err(e.context("mount"))
            }
        },
    };
    let _ = unmount_tx.send(true);
    if let Some(m) = mount {
        match tokio::time::timeout(Duration::from_secs(20), m).await {
            Ok(Ok(Err(e))) => tracing::warn!("mount: {e:#}"),
            Ok(_) => {}
            Err(_) => tracing::warn!("the mount did not finish within 20s"),
        }
    }
    tracing::info!("stopping the cluster");
    let _ = stop_tx.send(true);
    drain(&mut nodes).await;
    result.map(|()| ExitCode::SUCCESS)
}

/// The one line test harnesses and scripts wait for (a closed stdout is not an error).
fn print_listening_addr(addr: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {addr}");
    let _ = out.flush();
}

/// The status page's URL, printed after `listening on` when the page is served.
fn print_status_url(addr: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "status page at http://{addr}/");
    let _ = out.flush();
}

fn node_exit(done: Result<(String, anyhow::Result<()>), tokio::task::JoinError>) -> anyhow::Error {
    match done {
        Ok((name, Ok(()))) => anyhow::anyhow!("{name} stopped unexpectedly"),
        Ok((name, Err(e))) => e.context(name),
        Err(e) => anyhow::anyhow!("a node task failed: {e}"),
    }
}

/// Waits (bounded) for every node task to finish after the stop signal.
async fn drain(nodes: &mut JoinSet<(String, anyhow::Result<()>)>) {
    let deadline = tokio::time::sleep(Duration::from_secs(15));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = nodes.join_next() => match next {
                None => return,
                Some(Ok((name, Err(e)))) => tracing::warn!("{name}: {e:#}"),
                Some(_) => {}
            },
            _ = &mut deadline => {
                tracing::warn!("nodes did not stop within 15s; exiting anyway");
                nodes.abort_all();
                return;
            }
        }
    }
}

/// Polls `report` until `n` datanodes are live.
async fn wait_live(nn_addr: &str, n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::from("namenode not reachable yet");
    let mut client: Option<Client> = None;
    loop {
        if client.is_none() {
            match Client::connect(ClientConfig {
                namenode: nn_addr.to_string(),
                ..Default::default()
            })
            .await
            {
                Ok(c) => client = Some(c),
                Err(e) => last = e.to_string(),
            }
        }
        if let Some(c) = &client {
            match c.report().await {
                Ok(r) => {
                    let live = r.datanodes.iter().filter(|d| d.state == "live").count();
                    if live >= n {
                        return Ok(());
                    }
                    last = format!("{live} of {n} datanodes live");
                }
                Err(e) => last = e.to_string(),
            }
        }
        if Instant::now() > deadline {
            bail!("the cluster did not come up within 60s: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_toml_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nn.toml");
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, "from the file's secret_file\n").unwrap();
        std::fs::write(
            &file,
            format!(
                "data_dir = \"/from/file\"\nreplication = 2\nblock_size = \"8MiB\"\n\
                 listen = \"127.0.0.1:1234\"\nsecret_file = {:?}\n",
                secret_file.to_str().unwrap()
            ),
        )
        .unwrap();
        let a = NamenodeArgs {
            config: Some(file),
            data_dir: None,
            listen: None,
            secret_file: None,
            replication: Some(1),
            block_size: None,
            heartbeat_interval: Some(Duration::from_millis(200)),
            dead_after: Some(Duration::from_secs(2)),
            block_report_interval: None,
            lease_soft_limit: None,
            lease_hard_limit: None,
            safe_mode_threshold: None,
            safe_mode_extension: None,
            replication_max_streams_per_node: None,
            replication_max_streams: None,
            replication_bandwidth: None,
            replication_interval: None,
            replication_timeout: None,
            rebalance: None,
            inline_max: None,
            inline_max_total: None,
            http_listen: Some("127.0.0.1:0".into()),
            tls: ServerTlsArgs::default(),
        };
        let (c, listen, _) = namenode_config(&a, None).unwrap();
        assert_eq!(listen, "127.0.0.1:1234", "listen from the file");
        assert_eq!(c.data_dir, PathBuf::from("/from/file"));
        assert_eq!((c.replication, c.block_size), (1, 8 << 20));
        assert_eq!(c.heartbeat_interval, Duration::from_millis(200));
        assert_eq!(c.http_listen, "127.0.0.1:0");
        if std::env::var_os("RINGFS_SECRET").is_none() {
            assert_eq!(c.secret, "from the file's secret_file");
        }
    }

    #[test]
    fn up_keeps_its_secret() {
        let dir = tempfile::tempdir().unwrap();
        let s1 = cluster_secret(dir.path()).unwrap();
        assert_eq!(s1.len(), 64);
        assert_eq!(cluster_secret(dir.path()).unwrap(), s1);
    }
}
