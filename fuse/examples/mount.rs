//! Mounts a running cluster: `cargo run -p ringfs-fuse --example mount -- NAMENODE MOUNTPOINT [--allow-other]`.
//! (`ringfs mount` is the real entry point; this is for trying the adapter alone.)

use ringfs_client::{Client, ClientConfig};
use ringfs_fuse::{mount, MountOptions};
use std::path::PathBuf;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: mount NAMENODE MOUNTPOINT [--allow-other] [--default-permissions]");
        std::process::exit(2);
    }
    let cfg = ClientConfig {
        namenode: args[1].clone(),
        ..Default::default()
    };
    let client = Client::connect(cfg).await?;
    let opts = MountOptions {
        allow_other: args.iter().any(|a| a == "--allow-other"),
        default_permissions: args.iter().any(|a| a == "--default-permissions"),
        ..Default::default()
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    mount(client, &PathBuf::from(&args[2]), opts, shutdown).await?;
    Ok(())
}
