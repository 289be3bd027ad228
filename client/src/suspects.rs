//! Datanodes that failed a read or a write pipeline recently. A replica that stalls (a hung or
//! partitioned datanode still accepts connections, so only a timeout reveals it) costs one stall,
//! not one per block: later reads try such nodes last, and later blocks are allocated without them
//! where the writer can do without, until they are forgiven or answer again (HDFS's `deadNodes` of
//! an input stream and `excludedNodes` of an output stream, shared here by every reader and writer
//! of the client, e.g. every file of a mount).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a failed datanode stays at the back of the line.
const FORGIVE_AFTER: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(crate) struct Suspects {
    failed: Mutex<HashMap<String, Instant>>,
}

impl Suspects {
    pub(crate) fn failed(&self, addr: &str) {
        self.lock().insert(addr.to_string(), Instant::now());
    }

    pub(crate) fn answered(&self, addr: &str) {
        let mut m = self.lock();
        if !m.is_empty() {
            m.remove(addr);
        }
    }

    /// The datanodes that failed within [`FORGIVE_AFTER`]: what a new block's pipeline avoids.
    pub(crate) fn recent(&self) -> Vec<String> {
        let mut m = self.lock();
        if m.is_empty() {
            return Vec::new();
        }
        m.retain(|_, at| at.elapsed() < FORGIVE_AFTER);
        let mut v: Vec<String> = m.keys().cloned().collect();
        v.sort();
        v
    }

    /// `addrs` in the order to try them: as given, recently failed ones last.
    pub(crate) fn order<'a, T>(&self, items: &'a [T], addr: impl Fn(&T) -> &str) -> Vec<&'a T> {
        let mut m = self.lock();
        if m.is_empty() {
            return items.iter().collect();
        }
        m.retain(|_, at| at.elapsed() < FORGIVE_AFTER);
        let (mut good, bad): (Vec<&T>, Vec<&T>) =
            items.iter().partition(|i| !m.contains_key(addr(i)));
        good.extend(bad);
        good
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_nodes_go_last_until_they_answer() {
        let s = Suspects::default();
        let nodes = ["a", "b", "c"];
        let order = |s: &Suspects| {
            s.order(&nodes, |n| n)
                .into_iter()
                .copied()
                .collect::<Vec<_>>()
        };
        assert_eq!(order(&s), ["a", "b", "c"]);
        s.failed("a");
        assert_eq!(order(&s), ["b", "c", "a"]);
        s.failed("c");
        assert_eq!(order(&s), ["b", "a", "c"]);
        assert_eq!(s.recent(), ["a", "c"]);
        s.answered("a");
        assert_eq!(order(&s), ["a", "b", "c"]);
        assert_eq!(s.recent(), ["c"]);
    }
}
