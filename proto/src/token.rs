//! Block access tokens and node authentication: a blake3 keyed hash with the cluster secret, so
//! knowing a block id is not enough to read or write it.
//!
//! Token format (text, fits a gRPC string): `<expiry_unix_secs>.<mode>.<hex mac>` where the MAC
//! covers block id, generation, mode and expiry.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessMode {
    Read,
    Write,
}

impl AccessMode {
    fn as_char(self) -> char {
        match self {
            AccessMode::Read => 'r',
            AccessMode::Write => 'w',
        }
    }
}

/// The cluster secret, stretched to a blake3 key.
#[derive(Clone)]
pub struct Secret {
    key: [u8; 32],
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The built-in secret used when a node is configured with an empty secret (development clusters
/// on one machine). Anyone can read it: set a real secret for anything shared.
pub const DEV_SECRET: &str = "ringfs-insecure-dev-secret";

/// How long a freshly issued block token stays valid.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("malformed block access token")]
    Malformed,
    #[error("block access token expired")]
    Expired,
    #[error("block access token does not grant {0:?} on this block")]
    Invalid(AccessMode),
}

impl Secret {
    /// Derives the key from any secret bytes (a file's content or an env var).
    pub fn new(secret: &[u8]) -> Secret {
        Secret {
            key: blake3::derive_key("ringfs cluster secret v1", secret),
        }
    }

    fn mac(&self, block_id: u64, generation: u64, mode: AccessMode, expiry: u64) -> String {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(b"block");
        h.update(&block_id.to_le_bytes());
        h.update(&generation.to_le_bytes());
        h.update(&[mode.as_char() as u8]);
        h.update(&expiry.to_le_bytes());
        h.finalize().to_hex()[..32].to_string()
    }

    /// Issues a token for one block generation.
    pub fn block_token(&self, block_id: u64, generation: u64, mode: AccessMode) -> String {
        let expiry = now_secs() + TOKEN_LIFETIME.as_secs();
        format!(
            "{expiry}.{}.{}",
            mode.as_char(),
            self.mac(block_id, generation, mode, expiry)
        )
    }

    /// Checks a token; a write token also allows reads.
    pub fn check_block_token(
        &self,
        token: &str,
        block_id: u64,
        generation: u64,
        want: AccessMode,
    ) -> Result<(), TokenError> {
        let mut parts = token.splitn(3, '.');
        let (Some(exp), Some(mode), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(TokenError::Malformed);
        };
        let expiry: u64 = exp.parse().map_err(|_| TokenError::Malformed)?;
        let mode = match mode {
            "r" => AccessMode::Read,
            "w" => AccessMode::Write,
            _ => return Err(TokenError::Malformed),
        };
        if want == AccessMode::Write && mode != AccessMode::Write {
            return Err(TokenError::Invalid(want));
        }
        if !constant_time_eq(
            mac.as_bytes(),
            self.mac(block_id, generation, mode, expiry).as_bytes(),
        ) {
            return Err(TokenError::Invalid(want));
        }
        if expiry < now_secs() {
            return Err(TokenError::Expired);
        }
        Ok(())
    }

    /// Proof that a datanode knows the cluster secret, bound to its id.
    pub fn node_auth(&self, node_id: &str) -> String {
        let mut h = blake3::Hasher::new_keyed(&self.key);
        h.update(b"node");
        h.update(node_id.as_bytes());
        h.finalize().to_hex().to_string()
    }

    pub fn check_node_auth(&self, node_id: &str, auth: &str) -> bool {
        constant_time_eq(self.node_auth(node_id).as_bytes(), auth.as_bytes())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_bind_block_generation_and_mode() {
        let s = Secret::new(b"secret");
        let t = s.block_token(7, 3, AccessMode::Read);
        assert_eq!(s.check_block_token(&t, 7, 3, AccessMode::Read), Ok(()));
        assert!(s.check_block_token(&t, 8, 3, AccessMode::Read).is_err());
        assert!(s.check_block_token(&t, 7, 4, AccessMode::Read).is_err());
        assert!(s.check_block_token(&t, 7, 3, AccessMode::Write).is_err());
        let w = s.block_token(7, 3, AccessMode::Write);
        assert_eq!(s.check_block_token(&w, 7, 3, AccessMode::Read), Ok(()));
        assert!(Secret::new(b"other")
            .check_block_token(&w, 7, 3, AccessMode::Write)
            .is_err());
        assert_eq!(
            s.check_block_token("junk", 7, 3, AccessMode::Read),
            Err(TokenError::Malformed)
        );
        assert!(s.check_node_auth("dn1", &s.node_auth("dn1")));
        assert!(!s.check_node_auth("dn2", &s.node_auth("dn1")));
    }
}
