//! `ringfs`: the one binary. Servers (`namenode`, `datanode`, `up`), the FUSE mount, and the client
//! commands (`put`, `get`, `cat`, `ls`, `mkdir`, `rm`, `mv`, `stat`, `fsck`, `report`, `admin`).
//!
//! - `main.rs`: argument parsing (clap), logging, exit codes
//! - [`server`]: running nodes: flags + TOML config + secret → `run(config, listener, shutdown)`
//! - [`commands`]: the client commands over `ringfs-client`
//! - [`format`]: human and JSON output

mod commands;
mod copy;
mod du;
mod format;
mod mode;
mod perms;
mod remote_path;
mod server;
mod setrep;
mod tree;

use clap::{Args, Parser, Subcommand};
use ringfs_proto::units::{parse_duration, parse_size};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// ringfs: a distributed file system: a namenode, datanodes on a consistent-hash ring, replicated
/// blake3-checksummed blocks.
#[derive(Parser, Debug)]
#[command(name = "ringfs", version, about, propagate_version = true)]
struct Cli {
    /// Namenode address for client commands and datanodes [env: RINGFS_NAMENODE] [default: 127.0.0.1:8020]
    #[arg(
        long,
        global = true,
        env = "RINGFS_NAMENODE",
        hide_env = true,
        value_name = "ADDR"
    )]
    namenode: Option<String>,
    /// CA certificate (PEM) that the namenode's and datanodes' TLS certificates must chain to:
    /// connect over TLS [env: RINGFS_TLS_CA] [default: plain text].
    #[arg(
        long,
        global = true,
        env = "RINGFS_TLS_CA",
        hide_env = true,
        value_name = "FILE"
    )]
    tls_ca: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the namenode (metadata server).
    Namenode(server::NamenodeArgs),
    /// Run a datanode (block storage); registers with --namenode.
    Datanode(server::DatanodeArgs),
    /// Run a whole local cluster (namenode + datanodes) in this process, until Ctrl-C.
    Up(server::UpArgs),
    /// Mount the cluster as a local directory (FUSE), in the foreground; prints `mounted at DIR` when ready.
    Mount(MountArgs),
    /// Unmount a ringfs mount.
    Umount(UmountArgs),
    /// Copy a local file (or stdin, `-`) or directory tree into ringfs.
    Put(PutArgs),
    /// Copy a ringfs file to a local file (or stdout, `-`), or a directory tree to a local directory.
    Get(GetArgs),
    /// Write ringfs files to stdout, one after the other.
    Cat(PathsArg),
    /// Create empty files, or set the access and modification times of existing ones to now.
    Touch(PathsArg),
    /// Show the cluster's capacity, space used and space left.
    Df(DfArgs),
    /// List a directory (or show a file).
    Ls(LsArgs),
    /// Create directories.
    Mkdir(MkdirArgs),
    /// Remove files and directories.
    Rm(RmArgs),
    /// Change permission bits: octal (755) or symbolic (u+x, go-w, a=rX), like chmod(1).
    Chmod(ChmodArgs),
    /// Change the owner and/or group: OWNER, OWNER:GROUP or :GROUP (names or numbers); a symlink
    /// itself changes, never its target.
    Chown(ChownArgs),
    /// Show the bytes under each entry of a directory (or under PATH with -s) and the space
    /// their replicas take.
    Du(DuArgs),
    /// Copy a file or directory tree inside ringfs (like `hdfs dfs -cp`, `cp -r`).
    Cp(CpArgs),
    /// Rename (move) a file or directory atomically; an existing target is replaced like rename(2).
    Mv(MvArgs),
    /// Show a file's or directory's attributes and blocks.
    Stat(StatArgs),
    /// Check the health of the blocks of the files under PATH.
    Fsck(FsckArgs),
    /// Show the datanodes and the cluster's capacity and replication health.
    Report(JsonArg),
    /// Change the replication factor of a file, or of every file under a directory; the namenode
    /// then adds or removes replicas.
    Setrep(setrep::SetrepArgs),
    /// Administrative commands.
    #[command(subcommand)]
    Admin(AdminCmd),
}

#[derive(Subcommand, Debug)]
enum AdminCmd {
    /// Drain a datanode (its blocks are copied elsewhere) before it leaves the cluster.
    Decommission {
        /// The datanode's address (host:port, as `report` shows it).
        address: String,
    },
    /// Put a decommissioning or decommissioned datanode back in service.
    Recommission {
        /// The datanode's address (host:port, as `report` shows it).
        address: String,
    },
    /// Drop a dead datanode from the list for good (dead nodes stay listed, across namenode
    /// restarts, until they come back or are forgotten).
    Forget {
        /// The datanode's address (host:port, as `report` shows it).
        address: String,
    },
}

#[derive(Args, Debug)]
pub struct MountArgs {
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// Let other users access the mount.
    #[arg(long)]
    pub allow_other: bool,
    /// Mount read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Attribute and entry cache time-to-live in the kernel.
    #[arg(long, value_parser = duration_arg, default_value = "1s")]
    pub ttl: Duration,
    /// Read replicas of datanodes on this host over the network too, instead of from their files
    /// (short-circuit reads are on by default; env RINGFS_SHORT_CIRCUIT=0 turns them off for
    /// every client command).
    #[arg(long)]
    pub no_short_circuit: bool,
    /// Replication factor of the files this mount creates (default: the cluster's).
    #[arg(short = 'r', long = "replication", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=32))]
    pub replication: Option<u32>,
    /// Block size of the files this mount creates, e.g. 4MiB (default: the cluster's). A small
    /// write into a file rewrites its block on the next fsync or close: databases that commit
    /// often do better with small blocks.
    #[arg(long, value_parser = block_size_arg, value_name = "SIZE")]
    pub block_size: Option<u64>,
}

#[derive(Args, Debug)]
pub struct UmountArgs {
    /// The mountpoint (a busy mount is detached lazily).
    pub mountpoint: PathBuf,
}

#[derive(Args, Debug)]
pub struct PutArgs {
    /// Replication factor of the new file (default: the cluster's).
    #[arg(short = 'r', long = "replication", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=32))]
    pub replication: Option<u32>,
    /// Block size of the new file, e.g. 4MiB (default: the cluster's).
    #[arg(long, value_parser = block_size_arg, value_name = "SIZE")]
    pub block_size: Option<u64>,
    /// Replace an existing file.
    #[arg(short, long)]
    pub force: bool,
    /// Local files or directories (copied with everything under them), or `-` alone for stdin.
    #[arg(required = true, value_name = "LOCAL")]
    pub sources: Vec<String>,
    /// Target path; an existing directory receives each source under its own name (with several
    /// sources it must be one).
    #[arg(value_parser = remote_path::arg)]
    pub remote: String,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// ringfs files or directories (copied with everything under them).
    #[arg(value_parser = remote_path::arg, required = true, value_name = "REMOTE")]
    pub sources: Vec<String>,
    /// Local target, `-` for stdout; an existing directory receives each source under its own
    /// name (with several sources it must be one).
    pub local: String,
}

#[derive(Args, Debug)]
pub struct PathsArg {
    #[arg(value_parser = remote_path::arg, required = true, value_name = "PATH")]
    pub paths: Vec<String>,
}

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct DfArgs {
    /// Sizes like 1.5 GiB (`df -h`).
    #[arg(short = 'h', long)]
    pub human: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Print JSON (for scripts).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct JsonArg {
    /// Print JSON (for scripts).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct LsArgs {
    /// Long listing: mode, links, owner, group, size, mtime, name (and a symlink's target).
    #[arg(short = 'l')]
    pub long: bool,
    /// Sizes like 1.5 MiB in the long listing (`ls -lh` as in ls(1)).
    #[arg(short = 'h', long)]
    pub human: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Print JSON (an array of entries).
    #[arg(long)]
    pub json: bool,
    /// Also list the hidden names (`.ringfs-open-*`) a mount keeps for files unlinked while open.
    #[arg(short = 'a', long)]
    pub all: bool,
    /// List directories themselves, not their contents.
    #[arg(short = 'd', long)]
    pub directory: bool,
    /// List subdirectories recursively.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Directories or files to list.
    #[arg(value_parser = remote_path::arg, default_value = "/")]
    pub paths: Vec<String>,
}

#[derive(Args, Debug)]
pub struct MkdirArgs {
    /// Create missing parents; an existing directory is fine.
    #[arg(short, long)]
    pub parents: bool,
    #[arg(value_parser = remote_path::arg, required = true)]
    pub paths: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Remove directories and everything below them.
    #[arg(short, short_alias = 'R', long)]
    pub recursive: bool,
    /// A path that does not exist is not an error (rm -f, hdfs dfs -rm -f).
    #[arg(short, long)]
    pub force: bool,
    #[arg(value_parser = remote_path::arg, required = true)]
    pub paths: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ChmodArgs {
    /// Change everything under directories too.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Octal (755) or symbolic (u+x, go-w, a=rX, u=rwx,g=rx,o=).
    #[arg(allow_hyphen_values = true)]
    pub mode: String,
    #[arg(value_parser = remote_path::arg, required = true)]
    pub paths: Vec<String>,
}

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct ChownArgs {
    /// Change everything under directories too.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Accepted for chown(1) habits: a symlink itself is always changed, never its target.
    #[arg(short = 'h', long)]
    pub no_dereference: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// OWNER, OWNER:GROUP, OWNER: (the owner's login group) or :GROUP; names or numbers.
    pub owner: String,
    #[arg(value_parser = remote_path::arg, required = true)]
    pub paths: Vec<String>,
}

#[derive(Args, Debug)]
#[command(disable_help_flag = true)]
pub struct DuArgs {
    /// One line per PATH: its total, instead of one per entry of a directory.
    #[arg(short, long)]
    pub summary: bool,
    /// Sizes like 1.5 MiB instead of bytes (`du -sh` works as in du(1)).
    #[arg(short = 'h', long)]
    pub human: bool,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Print JSON (for scripts): path, size, consumed, files, dirs.
    #[arg(long)]
    pub json: bool,
    #[arg(value_parser = remote_path::arg, required = true)]
    pub paths: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CpArgs {
    /// Replace an existing file.
    #[arg(short, long)]
    pub force: bool,
    /// Files or directories (copied with everything under them).
    #[arg(value_parser = remote_path::arg, required = true, value_name = "SRC")]
    pub sources: Vec<String>,
    /// The copy; an existing directory receives each source under its own name (with several
    /// sources it must be one).
    #[arg(value_parser = remote_path::arg)]
    pub dst: String,
}

#[derive(Args, Debug)]
pub struct MvArgs {
    /// Files or directories to move.
    #[arg(value_parser = remote_path::arg, required = true, value_name = "SRC")]
    pub sources: Vec<String>,
    /// The new path; an existing directory receives each source under its own name (with
    /// several sources it must be one).
    #[arg(value_parser = remote_path::arg)]
    pub to: String,
}

#[derive(Args, Debug)]
pub struct StatArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Files or directories; with several and --json, an array.
    #[arg(value_parser = remote_path::arg, required = true, value_name = "PATH")]
    pub paths: Vec<String>,
}

#[derive(Args, Debug)]
pub struct FsckArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// List every file's blocks and their locations.
    #[arg(long)]
    pub blocks: bool,
    /// Answer at once when the namenode is in safe mode (by default fsck waits up to a minute for
    /// the block reports: until they arrive, blocks not reported yet count as missing).
    #[arg(long)]
    pub no_wait: bool,
    #[arg(value_parser = remote_path::arg, default_value = "/")]
    pub path: String,
}

pub fn size_arg(s: &str) -> Result<u64, String> {
    parse_size(s)
}

/// A file's block size, checked before anything is sent: 0 would silently mean "the cluster's
/// default" on the wire, and the namenode's refusal of other sizes cannot name the file.
pub fn block_size_arg(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    let chunk = ringfs_proto::chunk::CHUNK_SIZE as u64;
    if n == 0 || n % chunk != 0 || n > 1 << 40 {
        return Err(format!(
            "{n} bytes is not a block size: use a positive multiple of 64 KiB, at most 1 TiB"
        ));
    }
    Ok(n)
}

pub fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // A log line that cannot be written (stderr a closed pipe, a full disk) is dropped: by default
    // the subscriber reports that with eprintln!, which panics on the same stderr and took a
    // mount down with every open file.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Keeps the data path's large buffers (1 MiB packets, 4 MiB reads) on the heap and the heap
/// from shrinking. glibc serves allocations above its mmap threshold (128 KiB, raised dynamically
/// only after frees and never above 32 MiB, then lowered again by trimming) with fresh `mmap`s:
/// every packet buffer then costs an mmap, a munmap and a page fault per 4 KiB touched, which
/// was about a tenth of the cluster's CPU per GiB written. A fixed threshold of 32 MiB (glibc's
/// largest) and a trim threshold of 256 MiB make freed buffers come back from the heap instead.
/// The price: up to 256 MiB of freed memory stays mapped until `give_back_free_memory` trims it.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before the runtime's threads exist.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

/// Hands memory freed since the last time back to the kernel, every 30 s, in a process that runs
/// for long: with the trim threshold high (see `tune_malloc`) and an allocator arena per thread,
/// a mount that once held 1 GiB of writes kept it while idle.
async fn give_back_free_memory() {
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim only releases free memory of the allocator's arenas; thread-safe.
        let _ = tokio::task::spawn_blocking(|| unsafe { libc::malloc_trim(0) }).await;
    }
}

/// Stack of the thread that runs a command (the runtime's `block_on`). Trees are walked by
/// recursive futures awaited in place, one poll frame per level: a path of 4 KiB holds 2 048 levels, which
/// overflowed the main thread's 8 MiB at about 1 600 (`put`/`get` of such a tree aborted). The
/// stack is only reserved: pages are used as the walk goes deep.
const STACK_SIZE: usize = 64 << 20;

fn main() -> ExitCode {
    match std::thread::Builder::new()
        .name("ringfs".into())
        .stack_size(STACK_SIZE)
        .spawn(run)
    {
        Ok(t) => t.join().unwrap_or(ExitCode::FAILURE),
        Err(e) => {
            eprintln!("ringfs: cannot start the main thread: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> ExitCode {
    tune_malloc();
    format::init_umask();
    let cli = Cli::parse();
    let is_server = matches!(
        cli.cmd,
        Cmd::Namenode(_) | Cmd::Datanode(_) | Cmd::Up(_) | Cmd::Mount(_)
    );
    // fuser's session warns "Failed to umount filesystem" at every clean `ringfs umount` (the
    // kernel ended the mount already): not worth a WARN line.
    init_tracing(if is_server {
        "info,fuser::session=error"
    } else {
        "error"
    });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ringfs: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(dispatch(cli));
    // Don't wait for lingering background tasks (lease renewers, readahead) at exit.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            let _ = std::io::stdout().flush();
            eprintln!("ringfs: {}", one_line(&chain_text(&e)));
            ExitCode::FAILURE
        }
    }
}

/// Output piped into `head` and the like: stop quietly.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<serde_json::Error>().and_then(|j| j.io_error_kind()) == Some(std::io::ErrorKind::BrokenPipe) ||
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<ringfs_client::ClientError>().is_some_and(
                |ce| matches!(ce, ringfs_client::ClientError::Io(io) if io.kind() == std::io::ErrorKind::BrokenPipe),
            )
    })
}

/// The error and its causes, "a: b: c", leaving out a cause whose text the message before it
/// already shows (an error that prints its source, like "DIR: cannot unmount: No such file or
/// directory", would otherwise repeat it).
fn chain_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let namenode = cli.namenode;
    // `--namenode` is where clients and datanodes connect; a namenode or `up` given it would
    // listen on the default port anyway (RINGFS_NAMENODE in the environment is fine: it is meant
    // for the client commands run next to them).
    let flag_given = std::env::args().any(|a| a == "--namenode" || a.starts_with("--namenode="));
    match &cli.cmd {
        Cmd::Namenode(_) if flag_given => {
            anyhow::bail!(
                "--namenode is the address clients connect to; a namenode listens on --listen ADDR"
            )
        }
        Cmd::Up(_) if flag_given => {
            anyhow::bail!(
                "--namenode is the address clients connect to; `up` takes --namenode-listen ADDR"
            )
        }
        _ => {}
    }
    let tls_ca = cli.tls_ca;
    if !matches!(cli.cmd, Cmd::Namenode(_) | Cmd::Datanode(_) | Cmd::Up(_)) {
        let files = ringfs_proto::tls::TlsFiles {
            ca: tls_ca.clone(),
            ..Default::default()
        };
        server::install_tls(&files, false)?;
    }
    if matches!(
        cli.cmd,
        Cmd::Namenode(_) | Cmd::Datanode(_) | Cmd::Up(_) | Cmd::Mount(_)
    ) {
        tokio::spawn(give_back_free_memory());
    }
    match cli.cmd {
        Cmd::Namenode(a) => server::namenode(a, tls_ca).await,
        Cmd::Datanode(a) => server::datanode(a, namenode, tls_ca).await,
        Cmd::Up(a) => server::up(a, tls_ca).await,
        Cmd::Mount(a) => commands::mount(namenode, a).await,
        Cmd::Umount(a) => commands::umount(a),
        Cmd::Put(a) => commands::put(namenode, a).await,
        Cmd::Get(a) => commands::get(namenode, a).await,
        Cmd::Cat(a) => commands::cat(namenode, a).await,
        Cmd::Touch(a) => commands::touch(namenode, a).await,
        Cmd::Df(a) => commands::df(namenode, a).await,
        Cmd::Ls(a) => commands::ls(namenode, a).await,
        Cmd::Mkdir(a) => commands::mkdir(namenode, a).await,
        Cmd::Rm(a) => commands::rm(namenode, a).await,
        Cmd::Chmod(a) => perms::chmod(namenode, a).await,
        Cmd::Chown(a) => perms::chown(namenode, a).await,
        Cmd::Du(a) => du::du(namenode, a).await,
        Cmd::Cp(a) => copy::cp(namenode, a).await,
        Cmd::Mv(a) => commands::mv(namenode, a).await,
        Cmd::Stat(a) => commands::stat(namenode, a).await,
        Cmd::Fsck(a) => commands::fsck(namenode, a).await,
        Cmd::Report(a) => commands::report(namenode, a).await,
        Cmd::Setrep(a) => setrep::setrep(namenode, a).await,
        Cmd::Admin(AdminCmd::Decommission { address }) => {
            commands::decommission(namenode, &address).await
        }
        Cmd::Admin(AdminCmd::Recommission { address }) => {
            commands::recommission(namenode, &address).await
        }
        Cmd::Admin(AdminCmd::Forget { address }) => commands::forget(namenode, &address).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn an_error_chain_does_not_repeat_a_cause_its_message_shows() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let shown = format!("/m: cannot unmount: {io}");
        #[derive(Debug)]
        struct Shows(String, std::io::Error);
        impl std::fmt::Display for Shows {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::error::Error for Shows {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.1)
            }
        }
        let e = anyhow::Error::new(Shows(shown.clone(), io));
        assert_eq!(chain_text(&e), shown);
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain_text(&e), "outer: inner");
    }

    #[test]
    fn cli_is_consistent_and_namenode_is_global() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "ringfs",
            "--namenode",
            "h:1",
            "put",
            "-r",
            "2",
            "--block-size",
            "4MiB",
            "-f",
            "a",
            "/b",
        ])
        .unwrap();
        assert_eq!(c.namenode.as_deref(), Some("h:1"));
        match c.cmd {
            Cmd::Put(p) => {
                assert_eq!(
                    (p.replication, p.block_size, p.force),
                    (Some(2), Some(4 << 20), true)
                );
                assert_eq!(
                    (p.sources, p.remote),
                    (vec!["a".to_string()], "/b".to_string())
                );
            }
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from([
            "ringfs",
            "datanode",
            "--data-dir",
            "/d",
            "--namenode",
            "n:2",
        ])
        .unwrap();
        assert_eq!(c.namenode.as_deref(), Some("n:2"));
        assert!(Cli::try_parse_from(["ringfs", "ls", "-l", "--json", "/x"]).is_ok());
        assert!(
            Cli::try_parse_from(["ringfs", "namenode"]).is_err(),
            "--data-dir is required"
        );
    }
}
