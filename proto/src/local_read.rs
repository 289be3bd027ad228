//! Short-circuit local reads (like HDFS-347): a client on the same host as a datanode asks the
//! datanode, over a Unix socket, for an open file descriptor of a finalized replica and reads the
//! replica file itself. The bytes then cross no TCP connection and no gRPC framing (two kernel
//! copies and a user-space copy per byte fewer); the client still verifies every chunk against the
//! hashes the datanode stored at write time, so a bad replica is caught and reported as before.
//!
//! The socket lives in the abstract namespace under a name made from the datanode's registered
//! address (`ringfs-datanode/127.0.0.1:9866`): a client knows it from the block locations alone,
//! and it is visible exactly where that address reaches the datanode (the same network
//! namespace), which is where passing a descriptor works. Nothing is left on disk when the
//! datanode dies. Knowing a block id is not enough: every request carries the block access token.
//!
//! Frames on the socket: a little-endian `u32` length, then a prost message. A response that
//! grants the replica carries its data file's descriptor as `SCM_RIGHTS` ancillary data.

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use prost::Message;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

/// Largest frame accepted (the chunk hashes of a 2 GiB block are 1 MiB).
pub const MAX_FRAME: usize = 4 << 20;

/// Asks for a descriptor of the finalized replica `(block_id, generation)`.
#[derive(Clone, PartialEq, Message)]
pub struct LocalReadRequest {
    #[prost(uint64, tag = "1")]
    pub block_id: u64,
    #[prost(uint64, tag = "2")]
    pub generation: u64,
    #[prost(string, tag = "3")]
    pub access_token: String,
}

/// The answer: with an error, no descriptor; else the replica's data file is attached.
#[derive(Clone, PartialEq, Message)]
pub struct LocalReadResponse {
    /// The datanode's registered address: the client checks it reached the datanode it meant.
    #[prost(string, tag = "1")]
    pub datanode: String,
    /// Why the replica is not handed out (empty: granted).
    #[prost(string, tag = "2")]
    pub error: String,
    /// Replica length in bytes.
    #[prost(uint64, tag = "3")]
    pub len: u64,
    /// The chunk hashes stored with the replica, 32 bytes each, in chunk order.
    #[prost(bytes = "vec", tag = "4")]
    pub chunk_hashes: Vec<u8>,
}

/// The abstract socket address of the datanode registered as `datanode` ("host:port").
pub fn socket_addr(datanode: &str) -> io::Result<SocketAddr> {
    SocketAddr::from_abstract_name(format!("ringfs-datanode/{datanode}").as_bytes())
}

/// Binds the local-read socket of the datanode registered as `datanode`.
pub fn bind(datanode: &str) -> io::Result<UnixListener> {
    UnixListener::bind_addr(&socket_addr(datanode)?)
}

/// Connects to the local-read socket of `datanode`; fails (connection refused) when no datanode
/// of that address runs where this process can reach it.
pub fn connect(datanode: &str) -> io::Result<UnixStream> {
    UnixStream::connect_addr(&socket_addr(datanode)?)
}

/// Sends one frame, with `fd` attached when given. Blocking.
pub fn send<M: Message>(
    stream: &mut UnixStream,
    msg: &M,
    fd: Option<&impl AsRawFd>,
) -> io::Result<()> {
    let body = msg.encode_to_vec();
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    let raw = fd.map(|f| [f.as_raw_fd()]);
    let cmsgs: Vec<ControlMessage> = raw.iter().map(|r| ControlMessage::ScmRights(r)).collect();
    let sent = loop {
        match sendmsg::<()>(
            stream.as_raw_fd(),
            &[IoSlice::new(&frame)],
            &cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    // The descriptor went with the first bytes; the rest of a long frame follows as plain data.
    stream.write_all(&frame[sent..])
}

/// Receives one frame and the descriptor attached to it, if any. `Ok(None)`: the peer closed the
/// connection between frames. Blocking.
pub fn recv<M: Message + Default>(
    stream: &mut UnixStream,
) -> io::Result<Option<(M, Option<OwnedFd>)>> {
    let mut head = [0u8; 4];
    let mut cmsg_space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let (got, fd) = loop {
        let mut iov = [IoSliceMut::new(&mut head)];
        match recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => {
                let mut fd = None;
                for c in msg.cmsgs()? {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        for raw in fds {
                            // SAFETY: the kernel just installed `raw` in this process for us;
                            // nothing else owns it.
                            let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                            // More than one descriptor is not part of the protocol: close extras.
                            if fd.is_none() {
                                fd = Some(owned);
                            }
                        }
                    }
                }
                break (msg.bytes, fd);
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    if got == 0 {
        return Ok(None);
    }
    stream.read_exact(&mut head[got..])?;
    let len = u32::from_le_bytes(head) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("local read frame of {len} bytes exceeds {MAX_FRAME}"),
        ));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body)?;
    let msg =
        M::decode(body.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some((msg, fd)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Seek;

    #[test]
    fn a_descriptor_and_a_long_frame_cross_the_socket() {
        let name = format!(
            "test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        );
        let listener = bind(&name).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let (req, fd) = recv::<LocalReadRequest>(&mut s).unwrap().unwrap();
            assert!(fd.is_none());
            let mut file = tempfile_with(b"replica bytes");
            file.rewind().unwrap();
            let resp = LocalReadResponse {
                datanode: format!("block {}", req.block_id),
                error: String::new(),
                len: 13,
                chunk_hashes: vec![7u8; 300_000],
            };
            send(&mut s, &resp, Some(&file)).unwrap();
            // The client closes after one answer: the next receive sees the end.
            assert!(recv::<LocalReadRequest>(&mut s).unwrap().is_none());
        });
        let mut c = connect(&name).unwrap();
        let req = LocalReadRequest {
            block_id: 42,
            generation: 3,
            access_token: "t".into(),
        };
        send(&mut c, &req, None::<&std::fs::File>).unwrap();
        let (resp, fd) = recv::<LocalReadResponse>(&mut c).unwrap().unwrap();
        assert_eq!(resp.datanode, "block 42");
        assert_eq!(resp.chunk_hashes.len(), 300_000);
        let mut file = std::fs::File::from(fd.expect("a descriptor"));
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "replica bytes");
        drop(c);
        server.join().unwrap();
        assert_eq!(
            connect(&name).unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
    }

    fn tempfile_with(data: &[u8]) -> std::fs::File {
        let path = std::env::temp_dir().join(format!(
            "ringfs-local-read-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f.write_all(data).unwrap();
        f
    }
}
