//! Proves the field numbering of CONTRACT §1 by decoding bytes written by hand with those
//! numbers (tag = field << 3 | wire type), independently of the generated encoder.
#![allow(clippy::unwrap_used)]

use prost::Message as _;
use sr_proto::{
    AgentConfigRequest, AgentConfigResponse, AgentHelloRequest, AgentHelloResponse,
    GatewayServiceStatus, GatewayStatusChunk, GatewayStatusRequest, GatewayStatusResponse,
    ResultsChunk,
};

/// Minimal protobuf writer: varints and length-delimited fields.
#[derive(Default)]
struct Wire(Vec<u8>);

impl Wire {
    fn varint(&mut self, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(byte);
                return;
            }
            self.0.push(byte | 0x80);
        }
    }
    fn tag(&mut self, field: u32, wire_type: u8) {
        self.varint(u64::from(field << 3 | u32::from(wire_type)));
    }
    fn int(mut self, field: u32, v: i64) -> Self {
        self.tag(field, 0);
        self.varint(v as u64);
        self
    }
    fn bytes(mut self, field: u32, v: &[u8]) -> Self {
        self.tag(field, 2);
        self.varint(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
    fn str(self, field: u32, v: &str) -> Self {
        self.bytes(field, v.as_bytes())
    }
    fn msg(self, field: u32, m: &Wire) -> Self {
        self.bytes(field, &m.0)
    }
}

#[test]
fn hello_request_and_response_use_the_reference_numbers() {
    let label = Wire::default().str(1, "site").str(2, "lab");
    let w = Wire::default()
        .str(1, "sync-1")
        .str(2, "1.2.3")
        .str(3, "sync")
        .str(4, "host")
        .str(5, "linux")
        .str(6, "amd64")
        .str(7, "p1")
        .str(8, "v9")
        .msg(9, &label);
    let m = AgentHelloRequest::decode(w.0.as_slice()).unwrap();
    assert_eq!(
        (
            m.agent_id.as_str(),
            m.version.as_str(),
            m.capabilities.as_slice(),
            m.hostname.as_str()
        ),
        ("sync-1", "1.2.3", &["sync".to_owned()][..], "host")
    );
    assert_eq!(
        (
            m.os.as_str(),
            m.arch.as_str(),
            m.partition.as_str(),
            m.config_version.as_str()
        ),
        ("linux", "amd64", "p1", "v9")
    );
    assert_eq!(m.labels.get("site").map(String::as_str), Some("lab"));

    let w = Wire::default()
        .int(1, 1)
        .str(2, "a")
        .str(3, "hi")
        .str(4, "gw")
        .int(5, 1_700_000_000)
        .int(6, 30)
        .int(7, 1)
        .str(8, "tid")
        .str(9, "acme");
    let m = AgentHelloResponse::decode(w.0.as_slice()).unwrap();
    assert!(m.accepted && m.config_outdated);
    assert_eq!(
        (
            m.agent_id.as_str(),
            m.message.as_str(),
            m.gateway_id.as_str()
        ),
        ("a", "hi", "gw")
    );
    assert_eq!(
        (m.server_time, m.heartbeat_interval_sec),
        (1_700_000_000, 30)
    );
    assert_eq!(
        (m.tenant_id.as_str(), m.tenant_slug.as_str()),
        ("tid", "acme")
    );
}

#[test]
fn config_response_carries_the_sweep_config_in_field_10() {
    let target = Wire::default()
        .str(1, "10.0.0.1/32")
        .str(2, "icmp")
        .str(3, "q")
        .str(4, "armis")
        .msg(5, &Wire::default().str(1, "k").str(2, "v"))
        .int(6, 443);
    let sweep = Wire::default()
        .str(1, "10.0.0.0/30")
        .msg(2, &target)
        .str(3, "tcp")
        .int(4, 3600)
        .int(5, 22);
    let check = Wire::default()
        .str(1, "c1")
        .str(2, "http")
        .str(3, "web")
        .int(4, 1)
        .int(5, 60)
        .int(6, 5)
        .str(7, "t")
        .int(8, 80)
        .str(9, "/")
        .str(10, "GET");
    let w = Wire::default()
        .int(1, 1)
        .str(2, "ver")
        .int(3, 42)
        .int(4, 30)
        .int(5, 300)
        .msg(6, &check)
        .bytes(7, b"{}")
        .msg(10, &sweep);
    let m = AgentConfigResponse::decode(w.0.as_slice()).unwrap();
    assert!(m.not_modified);
    assert_eq!(
        (
            m.config_version.as_str(),
            m.config_timestamp,
            m.heartbeat_interval_sec,
            m.config_poll_interval_sec
        ),
        ("ver", 42, 30, 300)
    );
    assert_eq!(m.config_json, b"{}");
    let c = &m.checks[0];
    assert_eq!(
        (
            c.check_id.as_str(),
            c.port,
            c.path.as_str(),
            c.method.as_str(),
            c.enabled
        ),
        ("c1", 80, "/", "GET", true)
    );
    let s = m.sweep.unwrap();
    assert_eq!(
        (
            s.networks.as_slice(),
            s.sweep_modes.as_slice(),
            s.sweep_interval_sec,
            s.ports.as_slice()
        ),
        (
            &["10.0.0.0/30".to_owned()][..],
            &["tcp".to_owned()][..],
            3600,
            &[22][..]
        )
    );
    let t = &s.device_targets[0];
    assert_eq!(
        (
            t.network.as_str(),
            t.query_label.as_str(),
            t.source.as_str(),
            t.ports.as_slice()
        ),
        ("10.0.0.1/32", "q", "armis", &[443][..])
    );
    assert_eq!(t.metadata.get("k").map(String::as_str), Some("v"));

    let req = AgentConfigRequest::decode(Wire::default().str(1, "agent").str(2, "v1").0.as_slice())
        .unwrap();
    assert_eq!(
        (req.agent_id.as_str(), req.config_version.as_str()),
        ("agent", "v1")
    );
}

fn status_wire() -> Wire {
    Wire::default()
        .str(1, "sync")
        .int(2, 1)
        .bytes(3, b"[]")
        .str(4, "sync")
        .int(5, 7)
        .str(6, "a")
        .str(7, "g")
        .str(8, "p")
        .str(9, "results")
        .str(10, "kv")
        .str(11, "t")
        .str(12, "s")
}

fn assert_status(s: &GatewayServiceStatus) {
    assert_eq!(
        (
            s.service_name.as_str(),
            s.available,
            s.message.as_slice(),
            s.service_type.as_str()
        ),
        ("sync", true, &b"[]"[..], "sync")
    );
    assert_eq!(
        (
            s.response_time,
            s.agent_id.as_str(),
            s.gateway_id.as_str(),
            s.partition.as_str()
        ),
        (7, "a", "g", "p")
    );
    assert_eq!(
        (
            s.source.as_str(),
            s.kv_store_id.as_str(),
            s.tenant_id.as_str(),
            s.tenant_slug.as_str()
        ),
        ("results", "kv", "t", "s")
    );
}

#[test]
fn status_chunk_and_request_use_the_reference_numbers() {
    let w = Wire::default()
        .msg(1, &status_wire())
        .str(2, "gw")
        .str(3, "agent")
        .int(4, 99)
        .str(5, "p")
        .str(6, "1.2.3.4")
        .int(7, 1)
        .int(8, 2)
        .int(9, 3)
        .str(10, "kv")
        .str(11, "tid")
        .str(12, "slug");
    let c = GatewayStatusChunk::decode(w.0.as_slice()).unwrap();
    assert_status(&c.services[0]);
    assert_eq!(
        (
            c.gateway_id.as_str(),
            c.agent_id.as_str(),
            c.timestamp,
            c.partition.as_str(),
            c.source_ip.as_str()
        ),
        ("gw", "agent", 99, "p", "1.2.3.4")
    );
    assert_eq!(
        (
            c.is_final,
            c.chunk_index,
            c.total_chunks,
            c.kv_store_id.as_str()
        ),
        (true, 2, 3, "kv")
    );
    assert_eq!(
        (c.tenant_id.as_str(), c.tenant_slug.as_str()),
        ("tid", "slug")
    );

    let w = Wire::default()
        .msg(1, &status_wire())
        .str(2, "gw")
        .str(3, "agent")
        .int(4, 5)
        .str(5, "p")
        .str(6, "ip")
        .str(7, "kv")
        .str(8, "tid")
        .str(9, "slug");
    let r = GatewayStatusRequest::decode(w.0.as_slice()).unwrap();
    assert_status(&r.services[0]);
    assert_eq!(
        (
            r.gateway_id.as_str(),
            r.agent_id.as_str(),
            r.timestamp,
            r.partition.as_str(),
            r.source_ip.as_str()
        ),
        ("gw", "agent", 5, "p", "ip")
    );
    assert_eq!(
        (
            r.kv_store_id.as_str(),
            r.tenant_id.as_str(),
            r.tenant_slug.as_str()
        ),
        ("kv", "tid", "slug")
    );

    assert!(
        GatewayStatusResponse::decode(Wire::default().int(1, 1).0.as_slice())
            .unwrap()
            .received
    );
    let rc = ResultsChunk::decode(
        Wire::default()
            .bytes(1, b"x")
            .int(2, 1)
            .int(3, 4)
            .int(4, 5)
            .str(5, "seq")
            .int(6, 6)
            .0
            .as_slice(),
    )
    .unwrap();
    assert_eq!(
        (
            rc.data.as_slice(),
            rc.is_final,
            rc.chunk_index,
            rc.total_chunks,
            rc.current_sequence.as_str(),
            rc.timestamp
        ),
        (&b"x"[..], true, 4, 5, "seq", 6)
    );
}
