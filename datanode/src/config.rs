//! Datanode configuration: one documented struct, human sizes ("32MiB") and durations ("3s") in TOML.

use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a datanode needs to run. `Default` gives a working single-machine setup.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Directory holding replicas (`blocks/`, `tmp/`), the datanode id and the lock file.
    pub data_dir: PathBuf,
    /// Address of the namenode's DatanodeProtocol service ("host:port").
    pub namenode: String,
    /// Address registered with the namenode for DataTransfer; default: the listener's local address
    /// (an unspecified IP such as 0.0.0.0 is registered as 127.0.0.1).
    pub advertise: Option<String>,
    /// Bytes this node offers; default: the size of the filesystem holding `data_dir`.
    #[serde(deserialize_with = "units::opt_size")]
    pub capacity: Option<u64>,
    /// Rack or zone name used by placement ("" = none).
    pub rack: String,
    /// Cluster secret for node authentication and block tokens; "" = the built-in dev secret
    /// (`ringfs_proto::token::DEV_SECRET`), the same rule as the namenode's.
    pub secret: String,
    /// Pause between two full scrubber passes over all finalized replicas.
    #[serde(deserialize_with = "units::duration")]
    pub scrub_interval: Duration,
    /// Scrubber read rate in bytes/s (0 = unlimited).
    #[serde(deserialize_with = "units::size")]
    pub scrub_bandwidth: u64,
    /// Rate of block copies this node sends for namenode Replicate commands, bytes/s (0 = unlimited).
    #[serde(deserialize_with = "units::size")]
    pub replication_bandwidth: u64,
    /// How many Replicate commands this node runs at once.
    pub replication_concurrency: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("ringfs-datanode"),
            namenode: ringfs_proto::DEFAULT_NAMENODE.to_string(),
            advertise: None,
            capacity: None,
            rack: String::new(),
            secret: String::new(),
            scrub_interval: Duration::from_secs(6 * 3600),
            scrub_bandwidth: 32 * 1024 * 1024,
            replication_bandwidth: 128 * 1024 * 1024,
            replication_concurrency: 4,
        }
    }
}

impl Config {
    /// Checks values that would make the node misbehave; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.data_dir.as_os_str().is_empty() {
            return Err("datanode data_dir must not be empty".into());
        }
        if self.namenode.trim().is_empty() {
            return Err("datanode namenode address must not be empty".into());
        }
        if let Some(a) = &self.advertise {
            if a.trim().is_empty() || !a.contains(':') {
                return Err(format!(
                    "datanode advertise address {a:?} must be host:port"
                ));
            }
        }
        if self.capacity == Some(0) {
            return Err("datanode capacity must be > 0".into());
        }
        if self.rack.len() > 255 {
            return Err("datanode rack name is longer than 255 bytes".into());
        }
        if self
            .rack
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(format!(
                "datanode rack name {:?} has spaces or control characters",
                self.rack
            ));
        }
        if self.scrub_interval.is_zero() {
            return Err("datanode scrub_interval must be > 0".into());
        }
        if self.replication_concurrency == 0 {
            return Err("datanode replication_concurrency must be > 0".into());
        }
        Ok(())
    }

    /// The cluster secret to use: `secret`, or the dev secret when it is empty.
    pub fn secret(&self) -> ringfs_proto::token::Secret {
        let s = if self.secret.is_empty() {
            ringfs_proto::token::DEV_SECRET
        } else {
            &self.secret
        };
        ringfs_proto::token::Secret::new(s.as_bytes())
    }
}

/// serde helpers: sizes as numbers or strings ("32MiB"), durations as strings ("3s") or seconds.
mod units {
    use ringfs_proto::units::{parse_duration, parse_size};
    use serde::{de::Error, Deserialize, Deserializer};
    use std::time::Duration;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(u64),
        Str(String),
    }

    pub fn size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) => Ok(n),
            NumOrStr::Str(s) => parse_size(&s).map_err(D::Error::custom),
        }
    }

    pub fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        size(d).map(Some)
    }

    pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(n) => Ok(Duration::from_secs(n)),
            NumOrStr::Str(s) => parse_duration(&s).map_err(D::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_toml_accepts_human_units() {
        Config::default().validate().unwrap();
        let c: Config = toml::from_str(
            "data_dir = \"/d\"\ncapacity = \"10GiB\"\nscrub_interval = \"150ms\"\nscrub_bandwidth = 1024\nreplication_bandwidth = \"1MiB\"",
        )
        .unwrap();
        assert_eq!(c.capacity, Some(10 << 30));
        assert_eq!(c.scrub_interval, Duration::from_millis(150));
        assert_eq!(c.scrub_bandwidth, 1024);
        assert_eq!(c.replication_bandwidth, 1 << 20);
        assert_eq!(c.namenode, "127.0.0.1:8020");
        assert!(toml::from_str::<Config>("bogus = 1").is_err());
        assert!(Config {
            rack: "r1\nfake line".into(),
            ..Config::default()
        }
        .validate()
        .is_err());
        assert!(Config {
            scrub_interval: Duration::ZERO,
            ..Config::default()
        }
        .validate()
        .is_err());
    }
}
