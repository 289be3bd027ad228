//! The namenode's status web page, `/metrics` and `/status.json` against real processes, fetched
//! with a plain HTTP/1.1 request over a `TcpStream`: they follow datanodes, files, blocks and the
//! loss of a datanode, and a port that is taken costs the page, never the namenode.

use crate::cluster::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// An HTTP response: status code, headers (names lowercase), body.
struct Response {
    status: u16,
    headers: BTreeMap<String, String>,
    body: String,
}

/// One HTTP/1.1 request on a new connection (`Connection: close`, read to the end).
fn http(addr: &str, method: &str, path: &str) -> Result<Response, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8(raw).map_err(|e| format!("not UTF-8: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {text:?}"))?;
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: body.to_string(),
    })
}

#[track_caller]
fn get_ok(addr: &str, path: &str) -> Response {
    let r = http(addr, "GET", path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    r
}

/// `/metrics` as series ("name{labels}") → value; fails on any line that is not a comment or a sample.
pub(crate) fn metrics(addr: &str) -> Result<BTreeMap<String, f64>, String> {
    let r = http(addr, "GET", "/metrics")?;
    if r.status != 200 {
        return Err(format!("/metrics answered {}: {}", r.status, r.body));
    }
    let mut out = BTreeMap::new();
    for line in r.body.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("bad sample line {line:?}"))?;
        let v: f64 = value
            .parse()
            .map_err(|_| format!("bad value in {line:?}"))?;
        out.insert(series.to_string(), v);
    }
    Ok(out)
}

fn series<'a>(m: &'a BTreeMap<String, f64>, s: &str) -> Option<&'a f64> {
    m.get(s)
}

/// Polls `/metrics` until every `(series, value)` holds; returns the metrics that matched.
#[track_caller]
fn wait_metrics(addr: &str, what: &str, want: &[(&str, f64)]) -> BTreeMap<String, f64> {
    wait_for(Duration::from_secs(30), what, || {
        let m = metrics(addr)?;
        for (s, v) in want {
            if series(&m, s) != Some(v) {
                return Err(format!("{s} = {:?}, want {v}", series(&m, s)));
            }
        }
        Ok(m)
    })
}

/// Sum of the namenode's failed client calls.
fn failed_calls(m: &BTreeMap<String, f64>) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            k.starts_with("ringfs_namenode_rpc_requests_total{service=\"ringfs.Namenode\"")
                && k.contains("outcome=\"error\"")
        })
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn the_status_page_and_metrics_follow_the_cluster() {
    // Three datanodes; files are put, then a datanode is killed -9: /metrics, / and /status.json
    // show each step.
    let mut c = TestCluster::builder()
        .dead_after("2s")
        .namenode_arg(&["--http-listen", "127.0.0.1:0"])
        .start();
    let web = c
        .namenode_status_page(Duration::from_secs(10))
        .expect("the namenode printed `status page at`");
    assert_ne!(web, c.namenode_addr(), "a listener of its own");
    let dns: Vec<String> = (0..3).map(|i| c.datanode_addr(i).to_string()).collect();

    let m = wait_metrics(
        &web,
        "3 live datanodes",
        &[
            ("ringfs_namenode_datanodes{state=\"live\"}", 3.0),
            ("ringfs_namenode_datanodes{state=\"dead\"}", 0.0),
            ("ringfs_namenode_files", 0.0),
            ("ringfs_namenode_safe_mode", 0.0),
        ],
    );
    for d in &dns {
        let live = format!("ringfs_namenode_datanode_live{{datanode=\"{d}\"}}");
        assert_eq!(series(&m, &live), Some(&1.0), "{live}");
        let vnodes = format!("ringfs_namenode_datanode_ring_vnodes{{datanode=\"{d}\"}}");
        assert!(series(&m, &vnodes).is_some_and(|v| *v > 0.0), "{vnodes}");
    }
    assert!(series(&m, "ringfs_namenode_capacity_bytes").is_some_and(|v| *v > 0.0));
    let r = http(&web, "GET", "/metrics").unwrap();
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(r
        .body
        .contains("# TYPE ringfs_namenode_rpc_requests_total counter"));

    // Two files in a directory: 2.5 MiB in 1 MiB blocks (3 blocks, 9 replicas) and 10 bytes
    // (inline: no block).
    c.ok(&["mkdir", "/d"]);
    c.put_bytes("/d/a", &random_bytes(5 * MIB / 2, 1));
    c.put_bytes("/d/tiny", b"0123456789");
    let m = wait_metrics(
        &web,
        "the put files",
        &[
            ("ringfs_namenode_files", 2.0),
            ("ringfs_namenode_directories", 2.0),
            ("ringfs_namenode_inline_files", 1.0),
            ("ringfs_namenode_blocks", 3.0),
            ("ringfs_namenode_replicas", 9.0),
            ("ringfs_namenode_blocks_by_health{health=\"healthy\"}", 3.0),
            (
                "ringfs_namenode_blocks_by_health{health=\"under_replicated\"}",
                0.0,
            ),
            ("ringfs_namenode_blocks_by_health{health=\"missing\"}", 0.0),
            ("ringfs_namenode_open_files", 0.0),
        ],
    );
    assert_eq!(
        series(&m, "ringfs_namenode_file_bytes"),
        Some(&((5 * MIB / 2 + 10) as f64))
    );
    let blocks_on_nodes: f64 = dns
        .iter()
        .map(|d| m[&format!("ringfs_namenode_datanode_blocks{{datanode=\"{d}\"}}")])
        .sum();
    assert_eq!(blocks_on_nodes, 9.0, "replicas per datanode add up");
    let creates = "ringfs_namenode_rpc_requests_total{service=\"ringfs.Namenode\",method=\"Create\",outcome=\"ok\"}";
    assert!(
        series(&m, creates).is_some_and(|v| *v >= 2.0),
        "{creates}: {:?}",
        series(&m, creates)
    );

    // A call that fails is counted as an error.
    let failed_before = failed_calls(&m);
    c.fails(&["stat", "/no-such-file"]);
    wait_for(Duration::from_secs(10), "a failed call counted", || {
        let m = metrics(&web)?;
        let now = failed_calls(&m);
        if now > failed_before {
            Ok(())
        } else {
            Err(format!("{now} failed calls, {failed_before} before"))
        }
    });

    // The page names every datanode and its state; the JSON parses and agrees.
    let page = get_ok(&web, "/");
    assert!(page.headers["content-type"].starts_with("text/html"));
    for d in &dns {
        assert!(page.body.contains(d.as_str()), "page lacks {d}");
    }
    assert!(page.body.contains(">live<"), "no live state on the page");
    assert!(page.body.contains(c.namenode_addr()));
    let json: Value = serde_json::from_str(&get_ok(&web, "/status.json").body).unwrap();
    assert_eq!(json["namespace"]["files"], 2);
    assert_eq!(json["blocks"]["blocks"], 3);
    assert_eq!(json["datanodes"].as_array().unwrap().len(), 3);
    let ring = json["ring"].as_array().unwrap();
    assert_eq!(ring.len(), 3);
    let share: f64 = ring.iter().map(|r| r["share"].as_f64().unwrap()).sum();
    assert!((share - 1.0).abs() < 1e-9, "ring shares add up to {share}");

    // HEAD answers GET's headers without a body; unknown paths 404, other methods 405.
    let head = http(&web, "HEAD", "/metrics").unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD sent a body");
    assert!(head.headers["content-length"].parse::<u64>().unwrap() > 0);
    assert_eq!(http(&web, "GET", "/nope").unwrap().status, 404);
    assert_eq!(http(&web, "GET", "/metrics/x").unwrap().status, 404);
    assert_eq!(http(&web, "POST", "/metrics").unwrap().status, 405);

    // kill -9 of a datanode: it turns dead, its blocks are under-replicated (with 2 datanodes
    // left, replication 3 cannot be restored).
    c.kill_datanode(0);
    let dead = format!("ringfs_namenode_datanode_live{{datanode=\"{}\"}}", dns[0]);
    let m = wait_metrics(
        &web,
        "one dead datanode",
        &[
            ("ringfs_namenode_datanodes{state=\"live\"}", 2.0),
            ("ringfs_namenode_datanodes{state=\"dead\"}", 1.0),
            (&dead, 0.0),
            (
                "ringfs_namenode_blocks_by_health{health=\"under_replicated\"}",
                3.0,
            ),
            ("ringfs_namenode_blocks_by_health{health=\"healthy\"}", 0.0),
            ("ringfs_namenode_replicas", 6.0),
        ],
    );
    let age = format!(
        "ringfs_namenode_datanode_heartbeat_age_seconds{{datanode=\"{}\"}}",
        dns[0]
    );
    assert!(series(&m, &age).is_some_and(|v| *v >= 2.0), "{age}");
    let page = get_ok(&web, "/");
    assert!(page.body.contains(">dead<"), "no dead state on the page");
    assert!(page.body.contains(dns[0].as_str()));
    let json: Value = serde_json::from_str(&get_ok(&web, "/status.json").body).unwrap();
    assert_eq!(
        json["ring"].as_array().unwrap().len(),
        2,
        "a dead datanode leaves the ring"
    );
}

#[test]
fn a_namenode_whose_status_port_is_taken_still_serves() {
    // A second namenode told to use the first one's status port: it warns, serves no page and
    // serves gRPC; the first one's page still answers.
    let first = TestCluster::builder()
        .datanodes(0)
        .namenode_arg(&["--http-listen", "127.0.0.1:0"])
        .start();
    let web = first
        .namenode_status_page(Duration::from_secs(10))
        .expect("the first namenode's status page");
    let second = TestCluster::builder()
        .datanodes(1)
        .replication(1)
        .namenode_arg(&["--http-listen", &web])
        .start();
    second.put_bytes("/f", &random_bytes(200 * KIB, 2));
    assert_eq!(second.get_bytes("/f"), random_bytes(200 * KIB, 2));
    let report = second.report_json();
    assert_eq!(report_datanodes(&report).len(), 1);
    assert_eq!(
        second.namenode_status_page(Duration::from_millis(500)),
        None,
        "the second namenode announced a page it cannot serve"
    );
    let log = std::fs::read_to_string(second.namenode_log()).unwrap();
    assert!(
        log.contains("running without the status page") && log.contains(&web),
        "no warning naming {web} in the log:\n{}",
        log_tail(second.namenode_log(), 20)
    );
    // The first namenode's page is its own, not the second's.
    let json: Value = serde_json::from_str(&get_ok(&web, "/status.json").body).unwrap();
    assert_eq!(json["namenode"], first.namenode_addr());
    assert_eq!(json["namespace"]["files"], 0);
}

#[test]
fn http_listen_off_serves_no_page() {
    // --http-listen off: no status line, the namenode serves gRPC as usual.
    let c = TestCluster::builder()
        .datanodes(0)
        .namenode_arg(&["--http-listen", "off"])
        .start();
    assert!(report_datanodes(&c.report_json()).is_empty());
    assert_eq!(c.namenode_status_page(Duration::from_millis(500)), None);
    let log = std::fs::read_to_string(c.namenode_log()).unwrap();
    assert!(!log.contains("status page"), "{log}");
}

#[test]
fn ringfs_up_prints_its_status_page() {
    // `ringfs up` passes its --http-listen (here a free port, from the test env) to its namenode
    // and prints the page's address after `listening on`.
    let up = UpCluster::start(2);
    let web = up
        .status_page(Duration::from_secs(10))
        .expect("`ringfs up` printed `status page at`");
    let m = wait_metrics(
        &web,
        "2 live datanodes",
        &[("ringfs_namenode_datanodes{state=\"live\"}", 2.0)],
    );
    assert_eq!(series(&m, "ringfs_namenode_files"), Some(&0.0));
    let json: Value = serde_json::from_str(&get_ok(&web, "/status.json").body).unwrap();
    assert_eq!(json["namenode"], up.namenode());
}

#[test]
fn a_datanode_without_room_for_a_block_is_left_out_of_new_pipelines() {
    // Three datanodes with room and a fourth with 512 KiB, less than one 1 MiB block: HDFS leaves
    // such a node out of new pipelines. The ring put it in about three of four, and every such
    // write failed at it and was recovered onto another node (an UpdatePipeline call each).
    let mut c = TestCluster::builder()
        .block_size("1MiB")
        .namenode_arg(&["--http-listen", "127.0.0.1:0"])
        .start();
    let web = c
        .namenode_status_page(Duration::from_secs(10))
        .expect("the namenode printed `status page at`");
    let small = c.add_datanode_with(&["--capacity", "512KiB"]);
    c.wait_live_datanodes(4, Duration::from_secs(30));
    let small_addr = c.datanode_addr(small).to_string();
    let files: Vec<Vec<u8>> = (0..8).map(|i| random_bytes(600 << 10, i)).collect();
    for (i, data) in files.iter().enumerate() {
        c.put_bytes(&format!("/f{i}"), data);
    }
    for (i, data) in files.iter().enumerate() {
        assert_eq!(&c.get_bytes(&format!("/f{i}")), data, "/f{i}");
        let st = c.stat_json(&format!("/f{i}"));
        for b in st["blocks"].as_array().unwrap() {
            let on: Vec<&str> = b["locations"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(on.len(), 3, "/f{i}: {b}");
            assert!(
                !on.contains(&small_addr.as_str()),
                "/f{i} on the full node: {b}"
            );
        }
    }
    let m = metrics(&web).unwrap();
    let recoveries: f64 = m
        .iter()
        .filter(|(k, _)| k.contains("method=\"UpdatePipeline\""))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(
        recoveries, 0.0,
        "pipelines recovered away from the full node"
    );
}
