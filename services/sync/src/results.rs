//! A source run's result set: devices are filtered (no IP, blacklisted networks), serialised
//! once into the chunk builder, and each closed chunk moves at once into a spool file, so a
//! run holds at most one open chunk in memory however many devices it finds. The finished
//! result set is read back chunk by chunk for every push attempt (retries resend the same bytes
//! under the same stream ids).
//!
//! The spool file is an unlinked temporary file in `<state_dir>/spool`: it disappears when the
//! result set is dropped, or with the process.

use std::fs::File;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;
use sr_chunking::{ChunkBuilder, ChunkLimits, PushError};
use sr_core::device::DeviceUpdate;

/// A source's `network_blacklist`, parsed.
#[derive(Debug, Clone, Default)]
pub struct Blacklist(Vec<IpNet>);

impl Blacklist {
    /// Parses CIDRs (a bare address counts as a host network).
    ///
    /// # Errors
    /// The first entry that is neither a CIDR nor an address.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut nets = Vec::with_capacity(entries.len());
        for e in entries {
            let e = e.trim();
            if e.is_empty() {
                continue;
            }
            let net = e
                .parse::<IpNet>()
                .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("network_blacklist entry {e:?} is not a CIDR"))?;
            nets.push(net);
        }
        Ok(Self(nets))
    }

    /// Whether `ip` lies in a blacklisted network.
    #[must_use]
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }
}

/// Why a device was dropped before pushing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The source gave no usable IP.
    NoIp,
    /// Every IP of the device is blacklisted.
    Blacklisted,
}

/// A failure writing the result set.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// Spool I/O.
    #[error("spool file: {0}")]
    Spool(#[from] std::io::Error),
}

/// Where one chunk lies in the spool file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spooled {
    offset: u64,
    len: u32,
    devices: u32,
}

/// Collects one run's devices into spooled chunks.
#[derive(Debug)]
pub struct ResultWriter {
    builder: ChunkBuilder,
    file: File,
    offset: u64,
    chunks: Vec<Spooled>,
    blacklist: Blacklist,
    dropped_no_ip: u64,
    dropped_blacklisted: u64,
    skipped_too_large: u64,
}

impl ResultWriter {
    /// A writer spooling into a new unlinked file in `dir`.
    ///
    /// # Errors
    /// The I/O error creating the spool file.
    pub fn new(dir: &Path, limits: ChunkLimits, blacklist: Blacklist) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            builder: ChunkBuilder::new(limits),
            file: tempfile::tempfile_in(dir)?,
            offset: 0,
            chunks: Vec::new(),
            blacklist,
            dropped_no_ip: 0,
            dropped_blacklisted: 0,
            skipped_too_large: 0,
        })
    }

    /// Keeps the addresses that are not blacklisted, in order and without repeats.
    fn keep(&self, ips: &[IpAddr]) -> Vec<IpAddr> {
        let mut kept: Vec<IpAddr> = Vec::with_capacity(ips.len());
        for ip in ips {
            if !self.blacklist.contains(ip) && !kept.contains(ip) {
                kept.push(*ip);
            }
        }
        kept
    }

    /// Adds a device seen at `ips` (the first is its primary address). The blacklisted
    /// addresses are removed first; a device left with none is dropped, and so is one the
    /// source gave no address. `build` makes the update from the kept addresses (never empty);
    /// the writer sets `ip` to the first of them and clears `is_available` (an integration does
    /// not know availability).
    ///
    /// # Errors
    /// [`ResultsError::Spool`] when a closed chunk cannot be written.
    pub fn add(
        &mut self,
        ips: &[IpAddr],
        build: impl FnOnce(&[IpAddr]) -> DeviceUpdate,
    ) -> Result<Option<Dropped>, ResultsError> {
        if ips.is_empty() {
            self.dropped_no_ip += 1;
            return Ok(Some(Dropped::NoIp));
        }
        let kept = self.keep(ips);
        let Some(primary) = kept.first() else {
            self.dropped_blacklisted += 1;
            return Ok(Some(Dropped::Blacklisted));
        };
        let mut update = build(&kept);
        update.ip = primary.to_string();
        update.is_available = None;
        match self.builder.push(&update) {
            Ok(()) => {}
            Err(PushError::DeviceTooLarge { size, .. }) => {
                tracing::warn!(ip = %update.ip, size, "Device too large for any chunk; skipped");
                self.skipped_too_large += 1;
                return Ok(None);
            }
            Err(e) => {
                tracing::warn!(ip = %update.ip, error = %e, "Device not serialisable; skipped");
                self.skipped_too_large += 1;
                return Ok(None);
            }
        }
        if self.builder.chunk_count() > self.chunks.len() + 1 {
            self.spool_closed()?;
        }
        Ok(None)
    }

    fn spool_closed(&mut self) -> Result<(), ResultsError> {
        for (payload, devices) in self.builder.take_closed() {
            self.write_chunk(&payload, devices)?;
        }
        Ok(())
    }

    fn write_chunk(&mut self, payload: &[u8], devices: usize) -> Result<(), ResultsError> {
        self.file.write_all(payload)?;
        self.chunks.push(Spooled {
            offset: self.offset,
            // Chunks are capped at 3.5 MiB and 1 device per byte at most.
            len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
            devices: u32::try_from(devices).unwrap_or(u32::MAX),
        });
        self.offset += payload.len() as u64;
        Ok(())
    }

    /// Devices dropped for having no IP.
    #[must_use]
    pub fn dropped_no_ip(&self) -> u64 {
        self.dropped_no_ip
    }

    /// Devices dropped because every IP was blacklisted.
    #[must_use]
    pub fn dropped_blacklisted(&self) -> u64 {
        self.dropped_blacklisted
    }

    /// Devices accepted so far.
    #[must_use]
    pub fn device_count(&self) -> usize {
        self.builder.device_count()
    }

    /// Closes the result set.
    ///
    /// # Errors
    /// [`ResultsError::Spool`].
    pub fn finish(mut self) -> Result<ResultSet, ResultsError> {
        self.spool_closed()?;
        let device_count = self.builder.device_count();
        let builder =
            std::mem::replace(&mut self.builder, ChunkBuilder::new(ChunkLimits::default()));
        for chunk in builder.finish_chunks() {
            self.write_chunk(&chunk.payload, chunk.device_count)?;
        }
        self.file.flush()?;
        Ok(ResultSet {
            run_id: uuid::Uuid::new_v4().simple().to_string(),
            file: Arc::new(self.file),
            bytes: self.offset,
            device_count,
            chunks: self.chunks,
        })
    }
}

/// A finished result set, pushed as one or more streams (segments).
#[derive(Debug, Clone)]
pub struct ResultSet {
    run_id: String,
    file: Arc<File>,
    bytes: u64,
    device_count: usize,
    chunks: Vec<Spooled>,
}

/// Consecutive chunks pushed as one `StreamStatus` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Position among the result set's segments.
    pub index: usize,
    /// Chunk positions in the result set.
    pub chunks: std::ops::Range<usize>,
    /// Bytes of JSON.
    pub bytes: u64,
    /// Devices.
    pub devices: u64,
}

impl ResultSet {
    /// Devices in the set.
    #[must_use]
    pub fn device_count(&self) -> usize {
        self.device_count
    }

    /// Bytes of JSON in the set.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Chunks in the set (at least one: an empty set is one chunk `[]`).
    #[must_use]
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Devices in chunk `i`.
    #[must_use]
    pub fn chunk_devices(&self, i: usize) -> usize {
        self.chunks.get(i).map_or(0, |c| c.devices as usize)
    }

    /// The `x-sr-stream-id` of segment `index`: the same for every retry of this result set.
    #[must_use]
    pub fn stream_id(&self, index: usize) -> String {
        format!("sync:{}:{index}", self.run_id)
    }

    /// Cuts the chunks into segments of at most `max_bytes` and `max_devices` each (a single
    /// chunk always fits: chunks are smaller than any stream limit).
    #[must_use]
    pub fn segments(&self, max_bytes: u64, max_devices: u64) -> Vec<Segment> {
        let mut out: Vec<Segment> = Vec::new();
        let mut start = 0;
        let (mut bytes, mut devices) = (0u64, 0u64);
        for (i, c) in self.chunks.iter().enumerate() {
            let (b, d) = (u64::from(c.len), u64::from(c.devices));
            if i > start && (bytes + b > max_bytes || devices + d > max_devices) {
                out.push(Segment {
                    index: out.len(),
                    chunks: start..i,
                    bytes,
                    devices,
                });
                start = i;
                bytes = 0;
                devices = 0;
            }
            bytes += b;
            devices += d;
        }
        out.push(Segment {
            index: out.len(),
            chunks: start..self.chunks.len(),
            bytes,
            devices,
        });
        out
    }

    /// Reads chunk `i`'s JSON array back from the spool.
    ///
    /// # Errors
    /// The I/O error.
    pub async fn read_chunk(&self, i: usize) -> std::io::Result<Vec<u8>> {
        let Some(c) = self.chunks.get(i).copied() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("no chunk {i}"),
            ));
        };
        let file = self.file.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; c.len as usize];
            file.read_exact_at(&mut buf, c.offset)?;
            Ok(buf)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn update(ip: &str) -> DeviceUpdate {
        DeviceUpdate {
            device_id: String::new(),
            ip: ip.to_owned(),
            source: "armis".into(),
            agent_id: String::new(),
            gateway_id: String::new(),
            partition: "default".into(),
            timestamp: chrono::Utc::now(),
            hostname: None,
            mac: None,
            metadata: Default::default(),
            is_available: Some(false),
        }
    }

    #[tokio::test]
    async fn blacklisted_addresses_are_removed_and_fully_blacklisted_devices_dropped() {
        let d = tempfile::tempdir().unwrap();
        let bl = Blacklist::parse(&[
            "10.0.0.0/8".into(),
            "2001:db8::/32".into(),
            "192.0.2.7".into(),
        ])
        .unwrap();
        let mut w = ResultWriter::new(d.path(), ChunkLimits::default(), bl).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            w.add(&[ip("10.1.1.1")], |_| update("")).unwrap(),
            Some(Dropped::Blacklisted)
        );
        assert_eq!(w.add(&[], |_| update("")).unwrap(), Some(Dropped::NoIp));
        assert_eq!(
            w.add(&[ip("2001:db8::1"), ip("2001:db9::1")], |kept| {
                assert_eq!(kept, &[ip("2001:db9::1")]);
                update("")
            })
            .unwrap(),
            None
        );
        assert_eq!(
            w.add(&[ip("192.0.2.7")], |_| update("")).unwrap(),
            Some(Dropped::Blacklisted)
        );
        let set = w.finish().unwrap();
        assert_eq!(set.device_count(), 1);
        let chunk = set.read_chunk(0).await.unwrap();
        let v: Vec<serde_json::Value> = serde_json::from_slice(&chunk).unwrap();
        assert_eq!(v[0]["ip"], "2001:db9::1");
        assert!(v[0].get("is_available").is_none());
    }

    #[tokio::test]
    async fn segments_respect_byte_and_device_limits_and_cover_every_chunk() {
        let d = tempfile::tempdir().unwrap();
        let limits = ChunkLimits::new(4096, 10).unwrap();
        let mut w = ResultWriter::new(d.path(), limits, Blacklist::default()).unwrap();
        for i in 0..1_000u32 {
            let ip: IpAddr = std::net::Ipv4Addr::from(0x0a00_0000 + i).into();
            w.add(&[ip], |_| update("")).unwrap();
        }
        let set = w.finish().unwrap();
        assert_eq!(set.chunk_count(), 100);
        let segs = set.segments(16 * 1024, 35);
        assert!(segs.iter().all(|s| s.devices <= 35 && s.bytes <= 16 * 1024));
        assert_eq!(segs.iter().map(|s| s.devices).sum::<u64>(), 1_000);
        assert_eq!(segs.last().unwrap().chunks.end, 100);
        let mut total = 0;
        for i in 0..set.chunk_count() {
            let v: Vec<serde_json::Value> =
                serde_json::from_slice(&set.read_chunk(i).await.unwrap()).unwrap();
            total += v.len();
        }
        assert_eq!(total, 1_000);
        assert_ne!(set.stream_id(0), set.stream_id(1));
    }

    #[tokio::test]
    async fn an_empty_result_set_is_one_empty_chunk() {
        let d = tempfile::tempdir().unwrap();
        let w = ResultWriter::new(d.path(), ChunkLimits::default(), Blacklist::default()).unwrap();
        let set = w.finish().unwrap();
        assert_eq!(set.chunk_count(), 1);
        assert_eq!(set.read_chunk(0).await.unwrap(), b"[]");
        assert_eq!(set.segments(1 << 20, 10).len(), 1);
    }
}
