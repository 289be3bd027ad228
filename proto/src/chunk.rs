//! Chunking and checksums: a replica is verified in 64 KiB chunks, each with its blake3 hash, so a
//! reader can check any range without hashing the whole block.

/// Bytes per checksummed chunk.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Chunks per transfer packet (1 MiB packets keep gRPC framing cheap).
pub const CHUNKS_PER_PACKET: usize = 16;
/// Bytes per transfer packet.
pub const PACKET_SIZE: usize = CHUNK_SIZE * CHUNKS_PER_PACKET;

/// A blake3 hash.
pub type Hash = [u8; 32];

/// blake3 of one chunk.
pub fn hash_chunk(data: &[u8]) -> Hash {
    *blake3::hash(data).as_bytes()
}

/// The hash of every `CHUNK_SIZE` chunk of `data` (the last one may be short).
pub fn hash_chunks(data: &[u8]) -> Vec<Hash> {
    data.chunks(CHUNK_SIZE).map(hash_chunk).collect()
}

/// The hashes as wire bytes.
pub fn hashes_to_wire(hashes: &[Hash]) -> Vec<Vec<u8>> {
    hashes.iter().map(|h| h.to_vec()).collect()
}

/// Where `data` (starting at a chunk boundary) disagrees with `hashes`: `Err(i)` names the first bad
/// chunk, also when the hash count does not match the chunk count.
pub fn verify_chunks(data: &[u8], hashes: &[Vec<u8>]) -> Result<(), usize> {
    let n = data.len().div_ceil(CHUNK_SIZE);
    if hashes.len() != n {
        return Err(n.min(hashes.len()));
    }
    for (i, (chunk, h)) in data.chunks(CHUNK_SIZE).zip(hashes).enumerate() {
        if h.as_slice() != hash_chunk(chunk).as_slice() {
            return Err(i);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_accepts_good_and_names_first_bad_chunk() {
        let data: Vec<u8> = (0..(CHUNK_SIZE * 3 + 100))
            .map(|i| (i % 251) as u8)
            .collect();
        let hashes = hashes_to_wire(&hash_chunks(&data));
        assert_eq!(hashes.len(), 4);
        assert_eq!(verify_chunks(&data, &hashes), Ok(()));
        let mut bad = data.clone();
        bad[CHUNK_SIZE * 2 + 5] ^= 1;
        assert_eq!(verify_chunks(&bad, &hashes), Err(2));
        assert_eq!(verify_chunks(&data, &hashes[..3]), Err(3));
        assert_eq!(verify_chunks(&[], &[]), Ok(()));
    }
}
