//! `ringfs setrep`: changing the replication factor of existing files, like `hdfs dfs -setrep`
//! (and MooseFS `mfssetgoal`). A directory means every regular file under it. The namenode records
//! the factor at once and its replication monitor then copies blocks to new replicas or deletes
//! the extra ones; `-w` waits (with a deadline) until every block of the files has exactly that
//! many live replicas.

use crate::commands::exit_code;
use crate::commands::{change_error, connect};
use crate::format::is_dir;
use clap::Args;
use ringfs_client::{pb, Client, ClientError, ErrorKind};
use ringfs_proto::units::parse_duration;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// First pause between two looks at the files' replicas with `-w` (it doubles up to [`POLL_MAX`]).
const POLL_MIN: Duration = Duration::from_millis(100);
/// Longest pause between two looks.
const POLL_MAX: Duration = Duration::from_secs(2);

#[derive(Args, Debug)]
pub struct SetrepArgs {
    /// Wait until every block of the files has exactly N live replicas.
    #[arg(short = 'w', long)]
    pub wait: bool,
    /// How long -w waits before it gives up with an error (e.g. 90s, 10m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m")]
    pub timeout: Duration,
    /// The new replication factor.
    #[arg(value_name = "N")]
    pub replication: u32,
    /// Files, or directories (every regular file under them, recursively).
    #[arg(value_name = "PATH", required = true, value_parser = crate::remote_path::arg)]
    pub paths: Vec<String>,
}

pub async fn setrep(namenode: Option<String>, a: SetrepArgs) -> anyhow::Result<ExitCode> {
    let client = connect(namenode).await?;
    let n = a.replication;
    if a.wait {
        // The replicas of one block are on distinct datanodes: with fewer, -w would never finish.
        let live = live_datanodes(&client).await?;
        if n as usize > live {
            anyhow::bail!(
                "{}: cannot wait for {n} replicas: {live} datanode{} live (without -w the \
                 factor is recorded and the blocks stay under-replicated until enough join)",
                a.paths.join(" "),
                if live == 1 { " is" } else { "s are" }
            );
        }
    }
    let mut failed = false;
    let mut changed: Vec<String> = Vec::new();
    for p in &a.paths {
        let files = match files_of(&client, p, &mut failed).await {
            Ok(f) => f,
            Err(e) => {
                eprintln!("ringfs: {e}");
                failed = true;
                continue;
            }
        };
        for path in files {
            match client.set_replication(&path, n).await {
                Ok((previous, _)) if previous == n => {
                    println!("{path}: replication {n} (unchanged)");
                    changed.push(path);
                }
                Ok((previous, _)) => {
                    println!("{path}: replication {previous} -> {n}");
                    changed.push(path);
                }
                Err(e) => {
                    eprintln!("ringfs: {}", change_error(&path, &e));
                    failed = true;
                    // An out-of-range factor is refused for every file alike: one line is enough.
                    if e.kind() == ErrorKind::InvalidArgument && p != &path {
                        break;
                    }
                }
            }
        }
    }
    if a.wait && !changed.is_empty() {
        let deadline = Instant::now() + a.timeout;
        wait_for_replicas(&client, &changed, n, deadline, a.timeout).await?;
        println!(
            "every block of {} file{} has {n} live replica{}",
            changed.len(),
            if changed.len() == 1 { "" } else { "s" },
            if n == 1 { "" } else { "s" }
        );
    }
    Ok(exit_code(failed))
}

/// The files a PATH argument names: itself unless it is a directory (a symlink too: the namenode
/// refuses it by name), else every regular file under it in path order.
async fn files_of(client: &Client, path: &str, failed: &mut bool) -> anyhow::Result<Vec<String>> {
    let nodes = crate::tree::collect_reporting(client, path, failed).await?;
    if !nodes.first().is_some_and(|(_, attr)| is_dir(attr)) {
        return Ok(vec![path.to_string()]);
    }
    let mut files: Vec<String> = nodes
        .into_iter()
        .filter(|(_, a)| a.kind == pb::FileKind::File as i32)
        .map(|(p, _)| p)
        .collect();
    files.sort();
    Ok(files)
}

/// In-service live datanodes (where replicas count).
async fn live_datanodes(client: &Client) -> Result<usize, ClientError> {
    let r = client.report().await?;
    Ok(r.datanodes.iter().filter(|d| d.state == "live").count())
}

/// Why a file is not done yet: one of its blocks has a live-replica count other than `n` (or
/// none is readable), as fsck sees it. `None`: every block has exactly `n` live replicas.
fn short_block(f: &pb::FsckResponse, path: &str, n: u32) -> Option<String> {
    f.problems
        .iter()
        .find(|p| p.problem == "missing" || p.live_replicas != n)
        .map(|p| {
            format!(
                "{path}: block {} has {} of {n} live replicas ({})",
                p.block_id,
                p.live_replicas,
                p.problem.replace('_', "-")
            )
        })
}

/// Polls fsck of each file until every block of every file has exactly `n` live replicas; a file
/// that got there is not looked at again. Fails at the deadline naming a file and block that is
/// not there yet.
async fn wait_for_replicas(
    client: &Client,
    files: &[String],
    n: u32,
    deadline: Instant,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut pending: Vec<&String> = files.iter().collect();
    let mut pause = POLL_MIN;
    loop {
        let mut last = None;
        let mut still = Vec::new();
        for path in pending {
            let why = match client.fsck(path, false).await {
                Ok(f) => short_block(&f, path, n),
                // Removed meanwhile: nothing left to wait for.
                Err(e) if e.kind() == ErrorKind::NotFound => None,
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = why {
                last = Some(why);
                still.push(path);
            }
        }
        pending = still;
        let Some(why) = last else {
            return Ok(());
        };
        if Instant::now() >= deadline {
            let live = match live_datanodes(client).await {
                Ok(l) => format!("{l} datanodes live"),
                Err(e) => format!("datanodes unknown: {e}"),
            };
            anyhow::bail!(
                "timed out after {} waiting for {n} replicas: {why}; {} file{} not there yet, {live}",
                humantime::format_duration(timeout),
                pending.len(),
                if pending.len() == 1 { "" } else { "s" }
            );
        }
        tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        pause = (pause * 2).min(POLL_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(block: u64, problem: &str, live: u32, expected: u32) -> pb::FsckProblem {
        pb::FsckProblem {
            path: "/f".into(),
            block_id: block,
            problem: problem.into(),
            live_replicas: live,
            expected,
        }
    }

    #[test]
    fn a_file_is_done_when_every_block_has_exactly_n_live_replicas() {
        let mut f = pb::FsckResponse::default();
        assert_eq!(short_block(&f, "/f", 2), None);
        // misplaced, or corrupt with n live: the count is right
        f.problems = vec![problem(1, "misplaced", 2, 2), problem(2, "corrupt", 2, 2)];
        assert_eq!(short_block(&f, "/f", 2), None);
        f.problems.push(problem(3, "over_replicated", 3, 2));
        assert_eq!(
            short_block(&f, "/f", 2).as_deref(),
            Some("/f: block 3 has 3 of 2 live replicas (over-replicated)")
        );
        f.problems = vec![problem(4, "under_replicated", 1, 2)];
        assert!(short_block(&f, "/f", 2).is_some());
        f.problems = vec![problem(5, "missing", 0, 0)];
        assert!(short_block(&f, "/f", 0).is_some());
    }
}
