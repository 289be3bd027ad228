//! Compiles `proto/*.proto` with protox (pure Rust: a fresh machine has no `protoc`).
//!
//! Bulk data fields are generated as `bytes::Bytes`, so a packet is decoded as a slice of tonic's
//! receive buffer (no copy into a `Vec`) and can be forwarded, stored or handed out without copying.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/ringfs.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .bytes(".ringfs.DataPacket.data")
        .bytes(".ringfs.ReadBlockPacket.data")
        // Encodes each message into a buffer reserved to its size (see src/codec.rs).
        .codec_path("crate::codec::ProstCodec")
        .compile_fds(fds)?;
    Ok(())
}
