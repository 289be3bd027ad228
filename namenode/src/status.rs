//! What the status web page, `/metrics` and `/status.json` show: a [`StatusSnapshot`] taken under
//! the state lock from the functions behind the `Fsck`, `Report` and `Statfs` RPCs, and pure
//! renderings of it (HTML, Prometheus text exposition format 0.0.4, JSON).

use crate::error::{NamenodeError, Result};
use crate::replication::Summary;
use crate::rpc_metrics::RpcCount;
use crate::service::{client, Shared};
use ringfs_proto::pb;
use ringfs_proto::units::format_size;
use ringfs_proto::DatanodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt::{Display, Write};
use std::time::{Duration, Instant};

/// The states a datanode can be in, as `report` names them.
pub const DATANODE_STATES: [&str; 4] = ["live", "dead", "decommissioning", "decommissioned"];

/// The namenode at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusSnapshot {
    /// The namenode's gRPC address.
    pub namenode: String,
    /// ringfs version.
    pub version: String,
    /// Seconds since this namenode started.
    pub uptime_seconds: f64,
    /// Waiting for block reports after a start: no changes yet.
    pub safe_mode: bool,
    pub namespace: NamespaceStatus,
    /// Of the live datanodes.
    pub capacity: CapacityStatus,
    pub blocks: BlockStatus,
    /// Every registered datanode, in the order `report` lists them.
    pub datanodes: Vec<DatanodeStatus>,
    /// The ring of datanodes that take new replicas.
    pub ring: Vec<RingMember>,
    /// gRPC calls answered since the start.
    pub rpcs: Vec<RpcCount>,
}

/// The file tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceStatus {
    pub files: u64,
    pub directories: u64,
    /// Every inode (files, directories, symlinks, ...).
    pub inodes: u64,
    /// Sum of the files' sizes.
    pub file_bytes: u64,
    /// Files open for writing (under a lease).
    pub open_files: u64,
    /// Clients holding the write lease of at least one file.
    pub lease_holders: u64,
    /// Files stored inline in the metadata, and their bytes.
    pub inline_files: u64,
    pub inline_bytes: u64,
    /// Cluster locks (flock and fcntl) held.
    pub locks: u64,
}

/// Space of the live datanodes, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityStatus {
    pub capacity: u64,
    pub used: u64,
    pub remaining: u64,
}

/// Blocks of files and their health (blocks being written are counted but not classified).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStatus {
    /// Counts per health state, as fsck classified them.
    #[serde(flatten)]
    pub health: Summary,
    /// Copies (repairs, moves) scheduled and not done yet.
    pub replications_in_flight: u64,
    /// Short blocks the last replication round could not serve within the stream limits.
    pub repair_backlog: u64,
}

/// One registered datanode.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DatanodeStatus {
    pub id: String,
    pub address: String,
    pub rack: String,
    /// One of [`DATANODE_STATES`].
    pub state: String,
    /// Heartbeating (a decommissioned node may still be).
    pub alive: bool,
    pub capacity: u64,
    pub used: u64,
    pub remaining: u64,
    /// Replicas the namenode knows on it.
    pub blocks: u64,
    pub last_heartbeat_seconds: f64,
    /// Copies it said it was busy with at its last heartbeat.
    pub active_transfers: u64,
    /// Commands queued for it and copies in flight from or to it.
    pub pending_commands: u64,
    /// Blocks still to drain while decommissioning.
    pub decommission_remaining: u64,
    /// Its virtual nodes on the ring (0: not on the ring, so it takes no new replicas).
    pub vnodes: u64,
}

/// A datanode's part of the ring.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RingMember {
    pub address: String,
    pub vnodes: u64,
    /// Its virtual nodes over all virtual nodes (0..=1): the share of new replicas it is expected to take.
    pub share: f64,
}

impl StatusSnapshot {
    /// Takes a snapshot: one pass over the state under its lock (blocking: call it off the async
    /// workers for a large namespace). `namenode` is the gRPC address shown.
    pub fn take(
        shared: &Shared,
        namenode: &str,
        uptime: Duration,
        rpcs: Vec<RpcCount>,
    ) -> Result<StatusSnapshot> {
        let now = Instant::now();
        let st = shared.lock();
        let fsck = client::fsck_of(
            shared,
            &st,
            &pb::FsckRequest {
                creds: None,
                path: "/".into(),
                list_blocks: false,
            },
        )?;
        // The block health fsck classified (blocks of files) is the report's too.
        let health = Summary {
            blocks: fsck.blocks,
            replicas: fsck.replicas,
            healthy: fsck.healthy_blocks,
            under_replicated: fsck.under_replicated,
            over_replicated: fsck.over_replicated,
            misplaced: fsck.misplaced,
            corrupt: fsck.corrupt,
            corrupt_replicas: fsck.corrupt_replicas,
            missing: fsck.missing,
        };
        let report = client::report_with(shared, &st, now, &health);
        let statfs = client::statfs_of(shared, &st);
        let leases = st.ns.leases();
        let lease_holders = leases
            .iter()
            .map(|(_, holder)| holder.as_str())
            .collect::<BTreeSet<_>>()
            .len() as u64;
        let locks = st.ns.locks().len() as u64;
        let datanodes: Vec<DatanodeStatus> = report
            .datanodes
            .iter()
            .map(|d| {
                let id = DatanodeId(d.id.clone());
                let node = st.nodes.get(&id);
                DatanodeStatus {
                    id: d.id.clone(),
                    address: d.address.clone(),
                    rack: d.rack.clone(),
                    state: d.state.clone(),
                    alive: node.is_some_and(|n| n.alive),
                    capacity: d.capacity,
                    used: d.used,
                    remaining: d.remaining,
                    blocks: d.blocks,
                    last_heartbeat_seconds: d.last_heartbeat_ms as f64 / 1000.0,
                    active_transfers: node.map_or(0, |n| n.active_transfers) as u64,
                    pending_commands: d.pending_commands,
                    decommission_remaining: d.decommission_remaining,
                    vnodes: st.nodes.placement().weight(&id).unwrap_or(0) as u64,
                }
            })
            .collect();
        drop(st);
        let ring = ring_shares(&datanodes);
        Ok(StatusSnapshot {
            namenode: namenode.to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_seconds: uptime.as_secs_f64(),
            safe_mode: report.safe_mode,
            namespace: NamespaceStatus {
                files: fsck.files,
                directories: fsck.directories,
                inodes: statfs.inodes,
                file_bytes: fsck.total_bytes,
                open_files: fsck.open_files,
                lease_holders,
                inline_files: fsck.inline_files,
                inline_bytes: fsck.inline_bytes,
                locks,
            },
            capacity: CapacityStatus {
                capacity: statfs.capacity,
                used: statfs.used,
                remaining: statfs.remaining,
            },
            blocks: BlockStatus {
                health,
                replications_in_flight: report.pending_replications,
                repair_backlog: shared
                    .repair_backlog
                    .load(std::sync::atomic::Ordering::Relaxed),
            },
            datanodes,
            ring,
            rpcs,
        })
    }

    /// Datanodes per state, every state listed (0 included).
    pub fn datanodes_by_state(&self) -> [(&'static str, u64); 4] {
        DATANODE_STATES.map(|s| {
            (
                s,
                self.datanodes.iter().filter(|d| d.state == s).count() as u64,
            )
        })
    }

    /// The snapshot as JSON (`/status.json`).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| NamenodeError::FailedPrecondition(format!("status as JSON: {e}")))
    }
}

/// The ring members among `datanodes` (those with virtual nodes) and their shares, which add up
/// to 1 (none when the ring is empty).
pub fn ring_shares(datanodes: &[DatanodeStatus]) -> Vec<RingMember> {
    let total: u64 = datanodes.iter().map(|d| d.vnodes).sum();
    datanodes
        .iter()
        .filter(|d| d.vnodes > 0)
        .map(|d| RingMember {
            address: d.address.clone(),
            vnodes: d.vnodes,
            share: d.vnodes as f64 / total as f64,
        })
        .collect()
}

// ------------------------------------------------------------------------------------- Prometheus

/// Escapes a label value: backslash, double quote and newline.
fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Builds the exposition text one metric family at a time.
struct Exposition {
    out: String,
}

impl Exposition {
    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl Display) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", label_value(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// The snapshot in the Prometheus text exposition format 0.0.4 (`/metrics`): gauges of the
/// namespace, blocks, datanodes and capacity, per-datanode gauges, and the gRPC call counters.
pub fn render_metrics(s: &StatusSnapshot) -> String {
    let mut m = Exposition { out: String::new() };
    let ns = &s.namespace;
    let (b, h) = (&s.blocks, &s.blocks.health);
    m.single(
        "ringfs_namenode_uptime_seconds",
        "gauge",
        "Seconds since the namenode started.",
        s.uptime_seconds,
    );
    m.single(
        "ringfs_namenode_safe_mode",
        "gauge",
        "1 while the namenode is in safe mode (waiting for block reports), else 0.",
        u8::from(s.safe_mode),
    );
    for (name, help, v) in [
        ("files", "Files in the namespace.", ns.files),
        (
            "directories",
            "Directories in the namespace.",
            ns.directories,
        ),
        ("inodes", "Inodes of any kind.", ns.inodes),
        (
            "file_bytes",
            "Sum of the sizes of all files.",
            ns.file_bytes,
        ),
        ("open_files", "Files open for writing.", ns.open_files),
        (
            "lease_holders",
            "Clients holding the write lease of a file.",
            ns.lease_holders,
        ),
        (
            "inline_files",
            "Files stored inline in the namenode's metadata.",
            ns.inline_files,
        ),
        (
            "inline_bytes",
            "Bytes of inline file content.",
            ns.inline_bytes,
        ),
        (
            "locks_held",
            "Cluster locks (flock and fcntl) held.",
            ns.locks,
        ),
        ("blocks", "Blocks of files.", h.blocks),
        (
            "replicas",
            "Good replicas on live in-service datanodes.",
            h.replicas,
        ),
        (
            "corrupt_replicas",
            "Replicas known to be corrupt.",
            h.corrupt_replicas,
        ),
        (
            "replications_in_flight",
            "Replica copies (repairs, moves) scheduled and not done.",
            b.replications_in_flight,
        ),
        (
            "repair_backlog_blocks",
            "Short blocks the last replication round could not serve within its limits.",
            b.repair_backlog,
        ),
        (
            "capacity_bytes",
            "Capacity of the live datanodes.",
            s.capacity.capacity,
        ),
        (
            "used_bytes",
            "Bytes used on the live datanodes.",
            s.capacity.used,
        ),
        (
            "remaining_bytes",
            "Bytes left on the live datanodes.",
            s.capacity.remaining,
        ),
    ] {
        m.single(&format!("ringfs_namenode_{name}"), "gauge", help, v);
    }

    let name = "ringfs_namenode_blocks_by_health";
    m.family(
        name,
        "gauge",
        "Blocks by health (a block may be in several: corrupt and under_replicated).",
    );
    for (health, v) in [
        ("healthy", h.healthy),
        ("under_replicated", h.under_replicated),
        ("over_replicated", h.over_replicated),
        ("misplaced", h.misplaced),
        ("corrupt", h.corrupt),
        ("missing", h.missing),
    ] {
        m.sample(name, &[("health", health)], v);
    }

    let name = "ringfs_namenode_datanodes";
    m.family(name, "gauge", "Registered datanodes by state.");
    for (state, v) in s.datanodes_by_state() {
        m.sample(name, &[("state", state)], v);
    }

    type PerNode = fn(&DatanodeStatus) -> f64;
    let per_node: [(&str, &str, PerNode); 8] = [
        ("capacity_bytes", "Capacity of the datanode.", |d| {
            d.capacity as f64
        }),
        ("used_bytes", "Bytes used on the datanode.", |d| {
            d.used as f64
        }),
        ("remaining_bytes", "Bytes left on the datanode.", |d| {
            d.remaining as f64
        }),
        (
            "blocks",
            "Replicas the namenode knows on the datanode.",
            |d| d.blocks as f64,
        ),
        (
            "heartbeat_age_seconds",
            "Seconds since the datanode's last heartbeat.",
            |d| d.last_heartbeat_seconds,
        ),
        (
            "live",
            "1 if the datanode is alive (heartbeating), else 0.",
            |d| f64::from(u8::from(d.alive)),
        ),
        (
            "active_transfers",
            "Copies the datanode reported busy with.",
            |d| d.active_transfers as f64,
        ),
        (
            "ring_vnodes",
            "Virtual nodes of the datanode on the ring.",
            |d| d.vnodes as f64,
        ),
    ];
    for (suffix, help, value) in per_node {
        let name = format!("ringfs_namenode_datanode_{suffix}");
        m.family(&name, "gauge", help);
        for d in &s.datanodes {
            m.sample(&name, &[("datanode", &d.address)], value(d));
        }
    }

    let name = "ringfs_namenode_rpc_requests_total";
    m.family(
        name,
        "counter",
        "gRPC calls answered, by service, method and outcome (ok or error).",
    );
    for r in &s.rpcs {
        for (outcome, v) in [("ok", r.ok), ("error", r.failed)] {
            m.sample(
                name,
                &[
                    ("service", &r.service),
                    ("method", &r.method),
                    ("outcome", outcome),
                ],
                v,
            );
        }
    }
    m.out
}

// ------------------------------------------------------------------------------------------- HTML

/// Escapes text for HTML content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}\
table{border-collapse:collapse;margin-bottom:1.5em}\
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}\
th{background:#eee}td.n{text-align:right}\
.bad{color:#b00;font-weight:bold}.warn{color:#a60}.ok{color:#070}\
.bar{background:#48c;height:.8em;display:inline-block}";

/// A table row of a label and a value (the value is already HTML).
fn row(out: &mut String, label: &str, value: &str) {
    let _ = writeln!(out, "<tr><th>{label}</th><td class=n>{value}</td></tr>");
}

/// A count in a warning colour when it is not 0.
fn flagged(v: u64, class: &str) -> String {
    if v == 0 {
        "0".to_string()
    } else {
        format!("<span class={class}>{v}</span>")
    }
}

fn state_class(state: &str) -> &'static str {
    match state {
        "live" => "ok",
        "dead" => "bad",
        _ => "warn",
    }
}

/// A duration in whole seconds, e.g. "1h 2m 3s".
fn seconds(s: f64) -> String {
    humantime::format_duration(Duration::from_secs(s.max(0.0) as u64)).to_string()
}

/// The status page (`/`): one self-contained HTML document, refreshed every 5 seconds. Every string
/// that came from outside (addresses, racks, ids) is escaped.
pub fn render_html(s: &StatusSnapshot) -> String {
    let mut out = String::with_capacity(8192);
    let title = format!("ringfs namenode {}", html_escape(&s.namenode));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=utf-8>\
         <meta http-equiv=refresh content=5><title>{title}</title><style>{STYLE}</style></head>\n<body>\n\
         <h1>{title}</h1>\n"
    );

    out.push_str("<h2>Cluster</h2>\n<table>\n");
    row(&mut out, "Namenode", &html_escape(&s.namenode));
    row(&mut out, "Version", &html_escape(&s.version));
    row(&mut out, "Uptime", &seconds(s.uptime_seconds));
    let safe = if s.safe_mode {
        "<span class=warn>on</span>"
    } else {
        "off"
    };
    row(&mut out, "Safe mode", safe);
    let ns = &s.namespace;
    row(&mut out, "Files", &ns.files.to_string());
    row(&mut out, "Directories", &ns.directories.to_string());
    row(&mut out, "Inodes", &ns.inodes.to_string());
    row(&mut out, "File bytes", &format_size(ns.file_bytes));
    row(
        &mut out,
        "Files open for writing",
        &ns.open_files.to_string(),
    );
    row(&mut out, "Lease holders", &ns.lease_holders.to_string());
    row(&mut out, "Locks held", &ns.locks.to_string());
    row(&mut out, "Blocks", &s.blocks.health.blocks.to_string());
    row(&mut out, "Replicas", &s.blocks.health.replicas.to_string());
    let c = &s.capacity;
    row(&mut out, "Capacity", &format_size(c.capacity));
    row(&mut out, "Used", &format_size(c.used));
    row(&mut out, "Remaining", &format_size(c.remaining));
    out.push_str("</table>\n");

    let (b, h) = (&s.blocks, &s.blocks.health);
    out.push_str("<h2>Replication health</h2>\n<table>\n");
    row(&mut out, "Healthy blocks", &h.healthy.to_string());
    row(
        &mut out,
        "Under-replicated",
        &flagged(h.under_replicated, "warn"),
    );
    row(&mut out, "Over-replicated", &h.over_replicated.to_string());
    row(&mut out, "Misplaced", &h.misplaced.to_string());
    row(&mut out, "Corrupt blocks", &flagged(h.corrupt, "bad"));
    row(
        &mut out,
        "Corrupt replicas",
        &flagged(h.corrupt_replicas, "bad"),
    );
    row(&mut out, "Missing blocks", &flagged(h.missing, "bad"));
    row(
        &mut out,
        "Copies in flight",
        &b.replications_in_flight.to_string(),
    );
    row(
        &mut out,
        "Repair backlog",
        &flagged(b.repair_backlog, "warn"),
    );
    out.push_str("</table>\n");

    let counts: Vec<String> = s
        .datanodes_by_state()
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    let _ = writeln!(
        out,
        "<h2>Datanodes</h2>\n<p>{}</p>\n<table>\n<tr><th>Address</th><th>Rack</th><th>State</th>\
         <th>Capacity</th><th>Used</th><th>Remaining</th><th>Blocks</th><th>Last heartbeat</th>\
         <th>Active transfers</th><th>Pending commands</th></tr>",
        counts.join(", ")
    );
    for d in &s.datanodes {
        let mut state = html_escape(&d.state);
        if d.state == "decommissioning" {
            let _ = write!(state, " ({} blocks left)", d.decommission_remaining);
        }
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class={}>{state}</td><td class=n>{}</td><td class=n>{}</td>\
             <td class=n>{}</td><td class=n>{}</td><td class=n>{:.1} s ago</td><td class=n>{}</td>\
             <td class=n>{}</td></tr>",
            html_escape(&d.address),
            html_escape(&d.rack),
            state_class(&d.state),
            format_size(d.capacity),
            format_size(d.used),
            format_size(d.remaining),
            d.blocks,
            d.last_heartbeat_seconds,
            d.active_transfers,
            d.pending_commands,
        );
    }
    out.push_str("</table>\n");

    out.push_str(
        "<h2>Ring</h2>\n<p>Datanodes that take new replicas, with their virtual nodes and share \
         of the ring.</p>\n<table>\n<tr><th>Address</th><th>Virtual nodes</th><th>Share</th><th></th></tr>\n",
    );
    for r in &s.ring {
        let pct = r.share * 100.0;
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=n>{}</td><td class=n>{pct:.1} %</td>\
             <td><span class=bar style=\"width:{:.0}px\"></span></td></tr>",
            html_escape(&r.address),
            r.vnodes,
            pct * 3.0,
        );
    }
    out.push_str("</table>\n");

    out.push_str(
        "<h2>gRPC calls</h2>\n<table>\n<tr><th>Service</th><th>Method</th><th>OK</th><th>Failed</th></tr>\n",
    );
    for r in &s.rpcs {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
            html_escape(&r.service),
            html_escape(&r.method),
            r.ok,
            r.failed
        );
    }
    out.push_str(
        "</table>\n<p><a href=\"/metrics\">/metrics</a> (Prometheus) · \
         <a href=\"/status.json\">/status.json</a></p>\n</body></html>\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn datanode(address: &str, state: &str, vnodes: u64) -> DatanodeStatus {
        DatanodeStatus {
            id: format!("id-{address}"),
            address: address.to_string(),
            rack: "r1".into(),
            state: state.into(),
            alive: state != "dead",
            capacity: 1000,
            used: 100,
            remaining: 900,
            blocks: 7,
            last_heartbeat_seconds: 0.25,
            active_transfers: 2,
            pending_commands: 1,
            decommission_remaining: 0,
            vnodes,
        }
    }

    fn snapshot() -> StatusSnapshot {
        let datanodes = vec![
            datanode("10.0.0.1:9866", "live", 200),
            datanode("10.0.0.2:9866", "live", 600),
            datanode("10.0.0.3:9866", "dead", 0),
            datanode("x\"<b>y\\z:1", "decommissioning", 0),
        ];
        StatusSnapshot {
            namenode: "127.0.0.1:8020".into(),
            version: "0.1.0".into(),
            uptime_seconds: 3725.5,
            safe_mode: true,
            namespace: NamespaceStatus {
                files: 11,
                directories: 4,
                inodes: 16,
                file_bytes: 123_456,
                open_files: 2,
                lease_holders: 1,
                inline_files: 3,
                inline_bytes: 300,
                locks: 5,
            },
            capacity: CapacityStatus {
                capacity: 3000,
                used: 300,
                remaining: 2700,
            },
            blocks: BlockStatus {
                health: Summary {
                    blocks: 20,
                    replicas: 55,
                    healthy: 15,
                    under_replicated: 3,
                    over_replicated: 1,
                    misplaced: 2,
                    corrupt: 1,
                    corrupt_replicas: 1,
                    missing: 1,
                },
                replications_in_flight: 4,
                repair_backlog: 6,
            },
            ring: ring_shares(&datanodes),
            datanodes,
            rpcs: vec![RpcCount {
                service: "ringfs.Namenode".into(),
                method: "Create".into(),
                ok: 9,
                failed: 2,
            }],
        }
    }

    /// Parses exposition text: every sample line as "name{labels}" → value, checking that each
    /// family has HELP and TYPE before its samples.
    fn parse(text: &str) -> BTreeMap<String, f64> {
        let mut typed: BTreeMap<String, String> = BTreeMap::new();
        let mut helped: BTreeSet<String> = BTreeSet::new();
        let mut samples = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(!help.is_empty(), "{line}");
                assert!(helped.insert(name.to_string()), "HELP twice: {line}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["gauge", "counter"].contains(&kind), "{line}");
                assert!(typed.insert(name.into(), kind.into()).is_none(), "{line}");
            } else {
                assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
                let (series, value) = line.rsplit_once(' ').unwrap();
                let name = series.split('{').next().unwrap();
                assert!(name.starts_with("ringfs_namenode_"), "{line}");
                assert!(
                    name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                assert!(typed.contains_key(name) && helped.contains(name), "{line}");
                if typed[name] == "counter" {
                    assert!(name.ends_with("_total"), "{line}");
                }
                let v: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
                assert!(samples.insert(series.to_string(), v).is_none(), "{line}");
            }
        }
        samples
    }

    #[test]
    fn metrics_show_the_snapshot_values() {
        let m = parse(&render_metrics(&snapshot()));
        let want = [
            ("ringfs_namenode_uptime_seconds", 3725.5),
            ("ringfs_namenode_safe_mode", 1.0),
            ("ringfs_namenode_files", 11.0),
            ("ringfs_namenode_directories", 4.0),
            ("ringfs_namenode_inodes", 16.0),
            ("ringfs_namenode_file_bytes", 123456.0),
            ("ringfs_namenode_open_files", 2.0),
            ("ringfs_namenode_lease_holders", 1.0),
            ("ringfs_namenode_locks_held", 5.0),
            ("ringfs_namenode_blocks", 20.0),
            ("ringfs_namenode_replicas", 55.0),
            ("ringfs_namenode_replications_in_flight", 4.0),
            ("ringfs_namenode_repair_backlog_blocks", 6.0),
            ("ringfs_namenode_capacity_bytes", 3000.0),
            ("ringfs_namenode_used_bytes", 300.0),
            ("ringfs_namenode_remaining_bytes", 2700.0),
            ("ringfs_namenode_blocks_by_health{health=\"healthy\"}", 15.0),
            ("ringfs_namenode_blocks_by_health{health=\"under_replicated\"}", 3.0),
            ("ringfs_namenode_blocks_by_health{health=\"over_replicated\"}", 1.0),
            ("ringfs_namenode_blocks_by_health{health=\"misplaced\"}", 2.0),
            ("ringfs_namenode_blocks_by_health{health=\"corrupt\"}", 1.0),
            ("ringfs_namenode_blocks_by_health{health=\"missing\"}", 1.0),
            ("ringfs_namenode_datanodes{state=\"live\"}", 2.0),
            ("ringfs_namenode_datanodes{state=\"dead\"}", 1.0),
            ("ringfs_namenode_datanodes{state=\"decommissioning\"}", 1.0),
            ("ringfs_namenode_datanodes{state=\"decommissioned\"}", 0.0),
            ("ringfs_namenode_datanode_capacity_bytes{datanode=\"10.0.0.1:9866\"}", 1000.0),
            ("ringfs_namenode_datanode_blocks{datanode=\"10.0.0.2:9866\"}", 7.0),
            ("ringfs_namenode_datanode_heartbeat_age_seconds{datanode=\"10.0.0.3:9866\"}", 0.25),
            ("ringfs_namenode_datanode_live{datanode=\"10.0.0.1:9866\"}", 1.0),
            ("ringfs_namenode_datanode_live{datanode=\"10.0.0.3:9866\"}", 0.0),
            ("ringfs_namenode_datanode_ring_vnodes{datanode=\"10.0.0.2:9866\"}", 600.0),
            // A label value with a quote, a backslash and a '<' escaped the Prometheus way.
            ("ringfs_namenode_datanode_live{datanode=\"x\\\"<b>y\\\\z:1\"}", 1.0),
            (
                "ringfs_namenode_rpc_requests_total{service=\"ringfs.Namenode\",method=\"Create\",outcome=\"ok\"}",
                9.0,
            ),
            (
                "ringfs_namenode_rpc_requests_total{service=\"ringfs.Namenode\",method=\"Create\",outcome=\"error\"}",
                2.0,
            ),
        ];
        for (series, v) in want {
            assert_eq!(m.get(series), Some(&v), "{series}");
        }
        // Every per-datanode family has one sample per datanode.
        let per_node = m
            .keys()
            .filter(|k| k.starts_with("ringfs_namenode_datanode_used_bytes{"))
            .count();
        assert_eq!(per_node, 4);
    }

    #[test]
    fn an_empty_cluster_still_lists_every_state_and_health() {
        let m = parse(&render_metrics(&StatusSnapshot::default()));
        for state in DATANODE_STATES {
            let key = format!("ringfs_namenode_datanodes{{state=\"{state}\"}}");
            assert_eq!(m.get(&key), Some(&0.0), "{key}");
        }
        assert_eq!(
            m.get("ringfs_namenode_blocks_by_health{health=\"missing\"}"),
            Some(&0.0)
        );
        assert!(!m.keys().any(|k| k.contains("datanode=")));
    }

    #[test]
    fn html_escapes_what_came_from_outside() {
        assert_eq!(
            html_escape("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        let mut s = snapshot();
        s.datanodes[0].rack = "<script>alert(1)</script>".into();
        s.ring = ring_shares(&s.datanodes);
        let page = render_html(&s);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!page.contains("x\"<b>y"));
        assert!(page.contains("x&quot;&lt;b&gt;y\\z:1"));
        for addr in ["10.0.0.1:9866", "10.0.0.2:9866", "10.0.0.3:9866"] {
            assert!(page.contains(&format!("<td>{addr}</td>")), "{addr}");
        }
        for state in ["live", "dead", "decommissioning"] {
            assert!(page.contains(&format!(">{state}")), "{state}");
        }
        assert!(page.contains("<meta http-equiv=refresh content=5>"));
        assert!(page.contains("1h 2m 5s"), "uptime");
        assert!(page.ends_with("</body></html>\n"));
    }

    #[test]
    fn ring_shares_add_up_and_follow_the_vnodes() {
        let s = snapshot();
        assert_eq!(s.ring.len(), 2, "only nodes on the ring");
        let total: f64 = s.ring.iter().map(|r| r.share).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        assert_eq!(s.ring[0].share, 0.25);
        assert_eq!(s.ring[1].share, 0.75);
        let page = render_html(&s);
        assert!(page.contains("25.0 %") && page.contains("75.0 %"), "{page}");
        assert!(ring_shares(&[datanode("a:1", "dead", 0)]).is_empty());
    }

    #[test]
    fn json_round_trips() {
        let s = snapshot();
        let back: StatusSnapshot = serde_json::from_str(&s.to_json().unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
