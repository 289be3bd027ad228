//! Namenode configuration: one documented struct, defaults that work, human sizes and durations in TOML.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// Built-in secret used when `secret` is empty (shared with datanodes): fine for a laptop, never for a
/// shared network.
pub use ringfs_proto::token::DEV_SECRET;

/// Everything the namenode can be told. TOML keys are the field names; durations are strings such as
/// `"3s"` or `"150ms"` (or plain seconds), sizes are byte counts or strings such as `"64MiB"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory of the metadata journal (created if missing).
    pub data_dir: PathBuf,
    /// Default replication factor of new files (a create may ask for another).
    pub replication: u32,
    /// Default block size of new files.
    #[serde(with = "size")]
    pub block_size: u64,
    /// How often datanodes heartbeat (sent to them at registration).
    #[serde(with = "duration")]
    pub heartbeat_interval: Duration,
    /// A datanode without a heartbeat for this long is dead: it leaves the ring and its blocks are re-replicated.
    #[serde(with = "duration")]
    pub dead_after: Duration,
    /// How often datanodes send a full block report (sent to them at registration).
    #[serde(with = "duration")]
    pub block_report_interval: Duration,
    /// Cluster secret shared with datanodes (node auth, block access tokens). Empty = the built-in dev secret.
    pub secret: String,
    /// A writer silent for this long loses its locks, and another client may take over its files.
    #[serde(with = "duration")]
    pub lease_soft_limit: Duration,
    /// A writer silent for this long has its open files recovered and closed by the namenode.
    #[serde(with = "duration")]
    pub lease_hard_limit: Duration,
    /// Share of blocks (0..=1) that must have a reported replica before safe mode ends after a start.
    pub safe_mode_threshold: f64,
    /// How long safe mode lasts after the threshold is reached (lets slow datanodes report).
    #[serde(with = "duration")]
    pub safe_mode_extension: Duration,
    /// Most replication/move copies one datanode takes part in at once (as source or target).
    pub replication_max_streams_per_node: u32,
    /// Most replication/move copies in flight in the whole cluster.
    pub replication_max_streams: u32,
    /// Bytes per second the scheduler lets re-replication and rebalancing copy in total; 0 = unlimited.
    #[serde(with = "size")]
    pub replication_bandwidth: u64,
    /// How often the replication scheduler looks for work.
    #[serde(with = "duration")]
    pub replication_interval: Duration,
    /// A scheduled copy not reported done after this long (plus 1 s per 8 MiB of block) is given up and
    /// planned again elsewhere. Copies that fail while their source is otherwise idle are noticed sooner.
    #[serde(with = "duration")]
    pub replication_timeout: Duration,
    /// Move replicas to their ring owners after membership changes (a new node gets its share).
    pub rebalance: bool,
    /// Files whose whole content is at most this long may be stored inline in the metadata store
    /// (journaled with their commit, read without a datanode) instead of in replicated blocks.
    /// 0 turns inline data off. At most 1 MiB (and never more than a file's block size).
    #[serde(with = "size")]
    pub inline_max: u64,
    /// Most bytes of inline content the namenode holds in total (it keeps them in memory with the
    /// namespace); past it, small files go to blocks like any other.
    #[serde(with = "size")]
    pub inline_max_total: u64,
    /// Address (host:port) of the status web page and the Prometheus `/metrics`, or "off". A port
    /// that cannot be bound is logged and the namenode runs without the page.
    pub http_listen: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("ringfs-namenode"),
            replication: 3,
            block_size: 64 << 20,
            heartbeat_interval: Duration::from_secs(3),
            dead_after: Duration::from_secs(30),
            block_report_interval: Duration::from_secs(300),
            secret: String::new(),
            lease_soft_limit: Duration::from_secs(60),
            lease_hard_limit: Duration::from_secs(600),
            safe_mode_threshold: 0.999,
            safe_mode_extension: Duration::from_secs(5),
            replication_max_streams_per_node: 4,
            replication_max_streams: 64,
            replication_bandwidth: 0,
            replication_interval: Duration::from_secs(1),
            replication_timeout: Duration::from_secs(30),
            rebalance: true,
            inline_max: 64 << 10,
            inline_max_total: 512 << 20,
            http_listen: DEFAULT_HTTP_LISTEN.to_string(),
        }
    }
}

/// Where the status page listens by default (HDFS's namenode web UI port).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:9870";

/// A setting that makes no sense.
#[derive(Debug, thiserror::Error)]
#[error("invalid namenode config: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Parses a TOML file's content (unknown keys are errors) and validates it.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    /// Checks ranges and relations between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir is empty".into());
        }
        if !(1..=32).contains(&self.replication) {
            return bad(format!("replication {} is not in 1..=32", self.replication));
        }
        if self.block_size < ringfs_proto::chunk::CHUNK_SIZE as u64
            || !self
                .block_size
                .is_multiple_of(ringfs_proto::chunk::CHUNK_SIZE as u64)
        {
            return bad(format!(
                "block_size {} must be a positive multiple of 64 KiB",
                self.block_size
            ));
        }
        if self.inline_max > 1 << 20 {
            return bad(format!(
                "inline_max {} is larger than 1 MiB",
                self.inline_max
            ));
        }
        if self.block_size > 1 << 40 {
            return bad(format!(
                "block_size {} is larger than 1 TiB",
                self.block_size
            ));
        }
        for (name, d) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("dead_after", self.dead_after),
            ("block_report_interval", self.block_report_interval),
            ("lease_soft_limit", self.lease_soft_limit),
            ("lease_hard_limit", self.lease_hard_limit),
            ("replication_interval", self.replication_interval),
            ("replication_timeout", self.replication_timeout),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be greater than 0"));
            }
        }
        if self.dead_after <= self.heartbeat_interval {
            return bad(format!(
                "dead_after ({}) must be longer than heartbeat_interval ({})",
                humantime::format_duration(self.dead_after),
                humantime::format_duration(self.heartbeat_interval)
            ));
        }
        if self.lease_hard_limit < self.lease_soft_limit {
            return bad("lease_hard_limit must not be shorter than lease_soft_limit".into());
        }
        if !(0.0..=1.0).contains(&self.safe_mode_threshold) {
            return bad(format!(
                "safe_mode_threshold {} is not in 0..=1",
                self.safe_mode_threshold
            ));
        }
        if self.replication_max_streams_per_node == 0 || self.replication_max_streams == 0 {
            return bad("replication stream limits must be at least 1".into());
        }
        if self.http_address().is_none() && self.http_listen != "off" {
            return bad(format!(
                "http_listen {:?} is neither host:port nor \"off\"",
                self.http_listen
            ));
        }
        Ok(())
    }

    /// The status page's address, `None` when it is "off" (or not host:port).
    pub fn http_address(&self) -> Option<&str> {
        let (host, port) = self.http_listen.rsplit_once(':')?;
        (!host.is_empty() && port.parse::<u16>().is_ok()).then_some(self.http_listen.as_str())
    }

    /// The secret to use: the configured one, or the dev secret when none is set.
    pub fn effective_secret(&self) -> &str {
        if self.secret.is_empty() {
            DEV_SECRET
        } else {
            &self.secret
        }
    }
}

/// Durations as humantime strings ("3s", "150ms"); integers are seconds.
mod duration {
    use serde::{de, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a duration such as \"3s\" or a number of seconds")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                ringfs_proto::units::parse_duration(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom("negative duration"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                Duration::try_from_secs_f64(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Sizes as byte counts or strings such as "64MiB".
mod size {
    use serde::{de, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*n)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = u64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a size such as \"64MiB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
                ringfs_proto::units::parse_size(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
                u64::try_from(v).map_err(|_| E::custom("negative size"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_round_trips_through_toml() {
        let c = Config::default();
        c.validate().unwrap();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(Config::from_toml(&text).unwrap(), c);
    }

    #[test]
    fn human_units_parse_and_unknown_keys_fail() {
        let c = Config::from_toml("block_size = \"4MiB\"\nheartbeat_interval = \"200ms\"\ndead_after = 2\nreplication = 1\n").unwrap();
        assert_eq!(c.block_size, 4 << 20);
        assert_eq!(c.heartbeat_interval, Duration::from_millis(200));
        assert_eq!(c.dead_after, Duration::from_secs(2));
        assert_eq!(c.replication, 1);
        assert_eq!(c.lease_hard_limit, Config::default().lease_hard_limit);
        assert_eq!(c.http_listen, "127.0.0.1:9870");
        let off = Config::from_toml("http_listen = \"off\"").unwrap();
        assert_eq!(off.http_address(), None);
        let any = Config::from_toml("http_listen = \"[::1]:0\"").unwrap();
        assert_eq!(any.http_address(), Some("[::1]:0"));
        assert!(Config::from_toml("replicaton = 3").is_err());
        assert!(Config::from_toml("block_size = \"12parsecs\"").is_err());
    }

    #[test]
    fn validate_rejects_nonsense() {
        let bad = [
            Config {
                replication: 0,
                ..Config::default()
            },
            Config {
                block_size: 1000,
                ..Config::default()
            },
            Config {
                dead_after: Duration::from_secs(1),
                ..Config::default()
            },
            Config {
                safe_mode_threshold: 1.5,
                ..Config::default()
            },
            Config {
                lease_hard_limit: Duration::from_secs(1),
                ..Config::default()
            },
            Config {
                http_listen: "9870".into(),
                ..Config::default()
            },
            Config {
                http_listen: "localhost:http".into(),
                ..Config::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
    }
}
