//! Client leases: when each client (a writer, or a mount holding locks) last renewed. Past the soft
//! limit a client loses its locks; past the hard limit its open files are recovered and closed.
//! Which files a client has open is the namespace's business (it persists the lease holder per file).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Last renewal per client id.
#[derive(Debug, Default)]
pub struct Leases {
    renewed: HashMap<String, Instant>,
}

/// Clients whose lease passed a limit.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expired {
    /// Past the soft limit (and not yet reported): release their locks.
    pub soft: Vec<String>,
    /// Past the hard limit: recover their files and forget them.
    pub hard: Vec<String>,
}

impl Leases {
    pub fn new() -> Leases {
        Leases::default()
    }

    /// The client is alive (any RPC that carries its id counts).
    pub fn renew(&mut self, client: &str, now: Instant) {
        match self.renewed.get_mut(client) {
            Some(t) => *t = (*t).max(now),
            None => {
                self.renewed.insert(client.to_string(), now);
            }
        }
    }

    /// When the client last renewed, if it holds a lease.
    pub fn last_renewal(&self, client: &str) -> Option<Instant> {
        self.renewed.get(client).copied()
    }

    /// Whether the client has been silent longer than `limit` (unknown clients count as expired).
    pub fn is_expired(&self, client: &str, now: Instant, limit: Duration) -> bool {
        self.renewed
            .get(client)
            .is_none_or(|t| now.saturating_duration_since(*t) >= limit)
    }

    /// Pushes every renewal back by `by` (not past `now`): the namenode was paused that long,
    /// and no renewal could reach it meanwhile.
    pub fn extend(&mut self, by: Duration, now: Instant) {
        for t in self.renewed.values_mut() {
            *t = (*t + by).min(now);
        }
    }

    /// Every client that renewed within the hard limit.
    pub fn clients(&self) -> impl Iterator<Item = &str> {
        self.renewed.keys().map(String::as_str)
    }

    /// Forget a client (it released everything, or its recovery started).
    pub fn remove(&mut self, client: &str) {
        self.renewed.remove(client);
    }

    /// Clients past the soft limit (they keep their entry until the hard limit) and clients past the
    /// hard limit (removed here).
    pub fn expire(&mut self, now: Instant, soft: Duration, hard: Duration) -> Expired {
        let mut out = Expired::default();
        for (c, t) in &self.renewed {
            let idle = now.saturating_duration_since(*t);
            if idle >= hard {
                out.hard.push(c.clone());
            } else if idle >= soft {
                out.soft.push(c.clone());
            }
        }
        for c in &out.hard {
            self.renewed.remove(c);
        }
        out.soft.sort();
        out.hard.sort();
        out
    }

    pub fn len(&self) -> usize {
        self.renewed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.renewed.is_empty()
    }
}

/// The length lease recovery finalizes a block at: the shortest verified length among the replicas that
/// answered (every one of them holds at least that prefix). `None` when nobody answered.
pub fn agreed_length(lengths: &[u64]) -> Option<u64> {
    lengths.iter().copied().min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_then_hard_expiry() {
        let t0 = Instant::now();
        let (soft, hard) = (Duration::from_secs(1), Duration::from_secs(5));
        let mut l = Leases::new();
        l.renew("a", t0);
        l.renew("b", t0);
        l.renew("b", t0 + Duration::from_secs(3));
        assert_eq!(
            l.expire(t0 + Duration::from_millis(500), soft, hard),
            Expired::default()
        );
        let e = l.expire(t0 + Duration::from_secs(2), soft, hard);
        assert_eq!(e.soft, vec!["a".to_string()]);
        assert!(e.hard.is_empty());
        let e = l.expire(t0 + Duration::from_secs(5), soft, hard);
        assert_eq!(e.hard, vec!["a".to_string()]);
        assert_eq!(e.soft, vec!["b".to_string()]);
        assert!(l.last_renewal("a").is_none());
        assert!(l.is_expired("a", t0, soft));
        assert!(!l.is_expired("b", t0 + Duration::from_secs(3), soft));
        // A renewal never goes back in time.
        l.renew("b", t0);
        assert_eq!(l.last_renewal("b"), Some(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn recovery_takes_the_shortest_answer() {
        assert_eq!(agreed_length(&[10, 7, 9]), Some(7));
        assert_eq!(agreed_length(&[]), None);
    }
}
