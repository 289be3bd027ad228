//! `ringfs du`: how much a tree holds, like `hdfs dfs -du`: the bytes of its files and the space
//! they take (stored bytes × replication; an inline file's content once, in the namenode), per
//! entry of a directory or summed (`-s`).

use crate::commands::connect;
use crate::commands::exit_code;
use crate::format::{is_dir, join};
use crate::DuArgs;
use ringfs_client::{inode_ref, pb, Client};
use serde::Serialize;
use std::collections::HashSet;
use std::io::Write;
use std::process::ExitCode;

/// What is under one path.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct Usage {
    pub path: String,
    /// Bytes in regular files (a hard-linked file counted once).
    pub size: u64,
    /// Bytes the replicas take: each file's stored bytes (holes are free) × its replication; an
    /// inline file's content is stored once, in the namenode's metadata.
    pub consumed: u64,
    pub files: u64,
    pub dirs: u64,
}

impl Usage {
    /// Adds one node, unless it is a file already counted under another name.
    fn add(&mut self, attr: &pb::Attr, seen: &mut HashSet<u64>) {
        match pb::FileKind::try_from(attr.kind) {
            Ok(pb::FileKind::Directory) => self.dirs += 1,
            Ok(pb::FileKind::File) if seen.insert(attr.inode) => {
                self.files += 1;
                self.size += attr.size;
                let copies = if attr.inline {
                    1
                } else {
                    attr.replication.max(1)
                };
                self.consumed += attr.allocated * u64::from(copies);
            }
            _ => {}
        }
    }
}

pub async fn du(namenode: Option<String>, a: DuArgs) -> anyhow::Result<ExitCode> {
    let client = connect(namenode).await?;
    let mut rows = Vec::new();
    let mut failed = false;
    for p in &a.paths {
        // A directory below that cannot be listed is reported and left out, as du(1) does.
        let mut partial = false;
        let result = async {
            let attr = client.stat(p).await?;
            if a.summary || !is_dir(&attr) {
                return anyhow::Ok(vec![usage(&client, p, &mut partial).await?]);
            }
            let mut children = Vec::new();
            for e in client.list_node(inode_ref(attr.inode)).await? {
                // One row per entry `ls` shows; the totals count everything.
                if !ringfs_proto::is_hidden_dir_entry(&e) {
                    children.push(usage(&client, &join(p, &e.name), &mut partial).await?);
                }
            }
            Ok(children)
        }
        .await;
        failed |= partial;
        match result {
            Ok(r) => rows.extend(r),
            Err(e) => {
                eprintln!("ringfs: {e}");
                failed = true;
            }
        }
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
    } else {
        let show = |n: u64| {
            if a.human {
                ringfs_proto::units::format_size(n)
            } else {
                n.to_string()
            }
        };
        let cells: Vec<(String, String)> = rows
            .iter()
            .map(|r| (show(r.size), show(r.consumed)))
            .collect();
        let w0 = cells.iter().map(|c| c.0.len()).max().unwrap_or(0);
        let w1 = cells.iter().map(|c| c.1.len()).max().unwrap_or(0);
        for (r, (s, c)) in rows.iter().zip(&cells) {
            writeln!(out, "{s:>w0$}  {c:>w1$}  {}", r.path)?;
        }
    }
    out.flush()?;
    Ok(exit_code(failed))
}

async fn usage(client: &Client, path: &str, failed: &mut bool) -> anyhow::Result<Usage> {
    let mut u = Usage {
        path: path.to_string(),
        ..Default::default()
    };
    let mut seen = HashSet::new();
    for (_, attr) in crate::tree::collect_reporting(client, path, failed).await? {
        u.add(&attr, &mut seen);
    }
    Ok(u)
}
