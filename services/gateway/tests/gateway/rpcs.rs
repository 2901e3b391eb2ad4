use serde_json::Value;
use sr_proto::{AgentConfigRequest, AgentHelloRequest, GatewayServiceStatus, GatewayStatusRequest};
use tonic::Code;

use crate::common::{Stack, chunks_for, device};

#[tokio::test]
async fn get_config_returns_the_syncs_sources_and_not_modified_on_the_same_version() {
    let stack = Stack::start().await;
    stack.tenant("acme").await;
    let (creds, edge_id) = stack.edge_sync("acme", "edge").await;
    stack.source("acme", "armis-1", &edge_id).await;
    let mut client = stack.client(&creds).await;
    let r = client
        .get_config(AgentConfigRequest {
            agent_id: "edge".into(),
            config_version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.not_modified);
    assert_eq!(r.config_version.len(), 64);
    assert_eq!(
        (r.heartbeat_interval_sec, r.config_poll_interval_sec),
        (30, 300)
    );
    let cfg: Value = serde_json::from_slice(&r.config_json).unwrap();
    assert_eq!(cfg["scope"], "tenant");
    assert_eq!(cfg["sources"]["armis-1"]["credentials"]["secret_key"], "k");
    assert!(r.sweep.is_none());
    let again = client
        .get_config(AgentConfigRequest {
            agent_id: "edge".into(),
            config_version: r.config_version.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(again.not_modified);
    assert!(again.config_json.is_empty());
    let h = client
        .hello(AgentHelloRequest {
            agent_id: "edge".into(),
            config_version: r.config_version.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!h.config_outdated);
}

#[tokio::test]
async fn agent_get_config_without_sweepgen_is_unavailable_not_an_empty_config() {
    let stack = Stack::start().await;
    stack.tenant("acme").await;
    let creds = stack.agent("acme", "agent-1").await;
    let mut client = stack.client(&creds).await;
    let h = client
        .hello(AgentHelloRequest {
            agent_id: "agent-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(h.accepted);
    let err = client
        .get_config(AgentConfigRequest {
            agent_id: "agent-1".into(),
            config_version: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("sweepgen"), "{err:?}");
}

#[tokio::test]
async fn push_status_records_heartbeats_and_source_runs_and_enforces_limits() {
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let (creds, edge_id) = stack.edge_sync("acme", "edge").await;
    let source = stack.source("acme", "armis-1", &edge_id).await;
    let mut client = stack.client(&creds).await;
    let status = |available: bool, message: Vec<u8>| GatewayServiceStatus {
        service_name: "sync".into(),
        service_type: "sync".into(),
        source: "status".into(),
        available,
        message,
        ..Default::default()
    };
    let req = |services| GatewayStatusRequest {
        agent_id: "edge".into(),
        services,
        ..Default::default()
    };
    // An oversized message is truncated, not refused.
    assert!(
        client
            .push_status(req(vec![status(false, vec![b'x'; 10_000])]))
            .await
            .unwrap()
            .into_inner()
            .received
    );
    let syncs = stack
        .api(reqwest::Method::GET, "/tenants/acme/sync-services", None)
        .await;
    let edge = syncs
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["component_id"] == "edge")
        .unwrap()
        .clone();
    assert_eq!(edge["status"], "degraded");

    let run = serde_json::json!({
        "integration_source_id": source["id"], "device_count": 1234, "finished_at": chrono::Utc::now(),
    });
    let mut report = status(true, serde_json::to_vec(&run).unwrap());
    report.service_type = "sync_source".into();
    report.tenant_id = acme.to_string();
    assert!(
        client
            .push_status(req(vec![report]))
            .await
            .unwrap()
            .into_inner()
            .received
    );
    let s = stack
        .api(
            reqwest::Method::GET,
            &format!(
                "/tenants/acme/integration-sources/{}",
                source["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(
        (
            s["last_device_count"].as_i64(),
            s["last_sync_result"].as_str()
        ),
        (Some(1234), Some("success"))
    );

    let err = client
        .push_status(req(vec![status(true, vec![]); 5_001]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("at most 5000"), "{err:?}");
    let mut results = status(true, b"[]".to_vec());
    results.source = "results".into();
    let err = client.push_status(req(vec![results])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut bad = status(true, b"{not json".to_vec());
    bad.service_type = "sync_source".into();
    let err = client.push_status(req(vec![bad])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
}

/// Messages written from the reference `monitoring.proto` field numbers, independently of
/// this workspace's generated code (no `sweep` field: a reference client does not know it).
mod reference {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AgentHelloRequest {
        #[prost(string, tag = "1")]
        pub agent_id: String,
        #[prost(string, tag = "2")]
        pub version: String,
        #[prost(string, repeated, tag = "3")]
        pub capabilities: Vec<String>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AgentHelloResponse {
        #[prost(bool, tag = "1")]
        pub accepted: bool,
        #[prost(string, tag = "2")]
        pub agent_id: String,
        #[prost(string, tag = "8")]
        pub tenant_id: String,
        #[prost(string, tag = "9")]
        pub tenant_slug: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AgentConfigRequest {
        #[prost(string, tag = "1")]
        pub agent_id: String,
        #[prost(string, tag = "2")]
        pub config_version: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct AgentConfigResponse {
        #[prost(bool, tag = "1")]
        pub not_modified: bool,
        #[prost(string, tag = "2")]
        pub config_version: String,
        #[prost(bytes = "vec", tag = "7")]
        pub config_json: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GatewayServiceStatus {
        #[prost(string, tag = "1")]
        pub service_name: String,
        #[prost(bool, tag = "2")]
        pub available: bool,
        #[prost(bytes = "vec", tag = "3")]
        pub message: Vec<u8>,
        #[prost(string, tag = "4")]
        pub service_type: String,
        #[prost(string, tag = "9")]
        pub source: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GatewayStatusChunk {
        #[prost(message, repeated, tag = "1")]
        pub services: Vec<GatewayServiceStatus>,
        #[prost(string, tag = "3")]
        pub agent_id: String,
        #[prost(bool, tag = "7")]
        pub is_final: bool,
        #[prost(int32, tag = "8")]
        pub chunk_index: i32,
        #[prost(int32, tag = "9")]
        pub total_chunks: i32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GatewayStatusResponse {
        #[prost(bool, tag = "1")]
        pub received: bool,
    }
}

#[tokio::test]
async fn a_client_built_from_the_reference_field_numbers_completes_hello_getconfig_and_streamstatus()
 {
    use tonic::codegen::http::uri::PathAndQuery;
    let stack = Stack::start().await;
    let acme = stack.tenant("acme").await;
    let (creds, _) = stack.edge_sync("acme", "ref-sync").await;
    let channel = {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(stack.root_pem()))
            .identity(tonic::transport::Identity::from_pem(
                &creds.cert,
                &creds.key,
            ))
            .domain_name("localhost");
        tonic::transport::Channel::from_shared(format!("https://{}", stack.grpc_addr))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap()
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let hello: reference::AgentHelloResponse = grpc
        .unary(
            tonic::Request::new(reference::AgentHelloRequest {
                agent_id: "ref-sync".into(),
                version: "1".into(),
                capabilities: vec!["sync".into()],
            }),
            PathAndQuery::from_static("/monitoring.AgentGatewayService/Hello"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert!(hello.accepted);
    assert_eq!(
        (
            hello.agent_id.as_str(),
            hello.tenant_slug.as_str(),
            hello.tenant_id.clone()
        ),
        ("ref-sync", "acme", acme.to_string())
    );

    grpc.ready().await.unwrap();
    let cfg: reference::AgentConfigResponse = grpc
        .unary(
            tonic::Request::new(reference::AgentConfigRequest {
                agent_id: "ref-sync".into(),
                config_version: String::new(),
            }),
            PathAndQuery::from_static("/monitoring.AgentGatewayService/GetConfig"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert!(!cfg.not_modified);
    let json: Value = serde_json::from_slice(&cfg.config_json).unwrap();
    assert_eq!(json["component_id"], "ref-sync");

    let devices: Vec<Value> = (0..50).map(device).collect();
    let chunks: Vec<reference::GatewayStatusChunk> = chunks_for("ref-sync", &devices, 2048, "")
        .into_iter()
        .map(|c| reference::GatewayStatusChunk {
            services: vec![reference::GatewayServiceStatus {
                service_name: "sync".into(),
                available: true,
                message: c.services[0].message.clone(),
                service_type: "sync".into(),
                source: "results".into(),
            }],
            agent_id: c.agent_id,
            is_final: c.is_final,
            chunk_index: c.chunk_index,
            total_chunks: c.total_chunks,
        })
        .collect();
    grpc.ready().await.unwrap();
    let resp: reference::GatewayStatusResponse = grpc
        .client_streaming(
            tonic::Request::new(tokio_stream::iter(chunks)),
            PathAndQuery::from_static("/monitoring.AgentGatewayService/StreamStatus"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert!(resp.received);
    assert_eq!(stack.devices(acme).await, devices);
}
