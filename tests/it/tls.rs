//! TLS on every connection (`--tls-cert`, `--tls-key`, `--tls-ca`): a cluster whose nodes and
//! clients all use it works end to end (registration, write pipelines, re-replication between
//! datanodes, reads, a mount); a client or datanode without the CA, or trusting another CA, gets
//! nothing and is told what to check. Certificates are made with openssl(1), as an operator would.

use crate::cluster::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// PEM files made for a test.
struct Certs {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl(1) runs (.ci/run installs it)");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A node's TLS flags: `--tls-cert CERT --tls-key KEY --tls-ca CA`.
fn server_args<'a>(cert: &'a Path, key: &'a Path, ca: &'a Path) -> [&'a str; 6] {
    [
        "--tls-cert",
        s(cert),
        "--tls-key",
        s(key),
        "--tls-ca",
        s(ca),
    ]
}

/// A CA (`name`) and a certificate for 127.0.0.1 signed by it, in `dir`.
fn make_certs(dir: &Path, name: &str) -> Certs {
    fs::create_dir_all(dir).unwrap();
    let subject = format!("/CN={name}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", &subject,
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "node.key",
            "-out",
            "node.csr",
            "-subj",
            "/CN=ringfs node",
        ],
    );
    fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "node.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "node.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    Certs {
        ca: dir.join("ca.pem"),
        cert: dir.join("node.pem"),
        key: dir.join("node.key"),
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `ringfs --namenode ADDR [extra...] ls /`, which must fail; its stderr.
fn ls_fails(c: &TestCluster, extra: &[&str]) -> String {
    let mut cmd = Command::new(bin());
    cmd.args(["--namenode", c.namenode_addr()])
        .args(extra)
        .args(["ls", "/"])
        .env_remove("RINGFS_TLS_CA");
    let out = run_with_timeout(cmd, None, "ls", Duration::from_secs(60));
    assert!(!out.status.success(), "ls succeeded with {extra:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_cluster_with_tls_everywhere_serves_the_cli_and_a_mount_and_refuses_plain_text() {
    let scratch = tempfile::tempdir().unwrap();
    let certs = make_certs(&scratch.path().join("ours"), "ringfs test CA");
    let server = server_args(&certs.cert, &certs.key, &certs.ca);
    // Start waits for the datanodes in `report`: registration and the CLI went over TLS.
    let mut c = TestCluster::builder()
        .datanodes(4)
        .replication(3)
        .heartbeat("200ms")
        .dead_after("2s")
        .namenode_arg(&server)
        .datanode_arg(&server)
        .client_arg(&["--tls-ca", s(&certs.ca)])
        .start();
    // Write pipelines (client -> datanode -> datanode) and reads.
    let data = random_bytes(3 * MIB + 77, 5);
    c.put_bytes("/f", &data);
    assert_same_bytes(&c.get_bytes("/f"), &data, "/f over TLS");
    c.wait_healthy("/", 3, Duration::from_secs(30));
    // Re-replication copies from datanode to datanode.
    let victim = block_locations(&stat_blocks(&c.stat_json("/f"))[0])[0].clone();
    c.kill_datanode(c.datanode_index(&victim));
    wait_for(
        Duration::from_secs(60),
        "the dead node's replicas copied again",
        || {
            let f = c.fsck_json("/");
            let copies_elsewhere = stat_blocks(&c.stat_json("/f"))
                .iter()
                .all(|b| !block_locations(b).contains(&victim) && block_locations(b).len() == 3);
            if fsck_is_healthy(&f, 3) && copies_elsewhere {
                Ok(())
            } else {
                Err(f.to_string())
            }
        },
    );
    assert_same_bytes(&c.get_bytes("/f"), &data, "/f after re-replication");
    // A mount takes the same global flag.
    let m = c.client().mount(&[]);
    assert_eq!(fs::read(m.path("f")).unwrap(), data);
    fs::write(m.path("from-mount"), b"written through a TLS mount").unwrap();
    drop(m);
    assert_eq!(c.get_bytes("/from-mount"), b"written through a TLS mount");

    // No CA: refused, with a hint at --tls-ca.
    let err = ls_fails(&c, &[]);
    assert!(err.contains("--tls-ca"), "{err}");
    // A CA that did not sign the cluster's certificate: refused.
    let other = make_certs(&scratch.path().join("other"), "another CA");
    let err = ls_fails(&c, &["--tls-ca", s(&other.ca)]);
    assert!(err.contains("certificate"), "{err}");
    // A datanode without TLS never joins.
    let plain = c.add_datanode_with(&[]);
    let log = c.datanode_log(plain).to_path_buf();
    wait_until(
        Duration::from_secs(30),
        "the plain datanode's refusal",
        || log_tail(&log, 50).contains("the server may use TLS"),
    );
    assert_eq!(c.live_datanodes(), 3, "{}", c.report_json());
}

#[test]
fn tls_settings_that_cannot_work_are_refused_at_start_naming_the_file() {
    let scratch = tempfile::tempdir().unwrap();
    let certs = make_certs(&scratch.path().join("ours"), "ringfs test CA");
    let run = |args: &[&str]| {
        let mut cmd = Command::new(bin());
        cmd.args(args).env_remove("RINGFS_TLS_CA");
        let out = run_with_timeout(cmd, None, "ringfs", Duration::from_secs(30));
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed on stdout before failing"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let dir = scratch.path().join("nn");
    let namenode = |tls: &[&str]| {
        let mut args = vec!["namenode", "--data-dir", s(&dir), "--listen", "127.0.0.1:0"];
        args.extend_from_slice(tls);
        run(&args)
    };
    let err = namenode(&["--tls-cert", s(&certs.cert), "--tls-key", s(&certs.key)]);
    assert!(
        err.contains("--tls-cert, --tls-key and --tls-ca together"),
        "{err}"
    );
    // Certificate and key swapped.
    let err = namenode(&server_args(&certs.key, &certs.cert, &certs.ca));
    assert!(
        err.contains("node.key") && err.contains("TLS certificate"),
        "{err}"
    );
    let missing = scratch.path().join("missing.pem");
    let err = run(&["--tls-ca", s(&missing), "ls", "/"]);
    assert!(
        err.contains("cannot read") && err.contains("missing.pem"),
        "{err}"
    );
}
