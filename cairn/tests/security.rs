//! Hostile input: garbage, truncated, oversized and wrong-version frames close only the
//! offending connection; a certificate from another CA never gets in; a client certificate
//! cannot speak the peer protocol.

mod support;

use std::time::Duration;

use cairn_client::{Client, ClientConfig, Error};
use cairn_wire::endpoint::{self, EndpointLimits};
use cairn_wire::frame::{self, PROTOCOL_VERSION};
use cairn_wire::tls::Identity;
use support::{Cluster, SHARD, cairn, ns, scrape, serial};

/// The application close code and reason a connection ended with.
async fn closed_with(conn: &quinn::Connection) -> (u64, String) {
    match tokio::time::timeout(Duration::from_secs(10), conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => (
            close.error_code.into_inner(),
            String::from_utf8_lossy(&close.reason).into_owned(),
        ),
        Ok(other) => panic!("connection ended otherwise: {other}"),
        Err(_) => panic!("the node did not close the connection"),
    }
}

/// Opens a peer stream that says it comes from node 1.
async fn claim_to_be_node_1(conn: &quinn::Connection) {
    let mut uni = conn.open_uni().await.unwrap();
    let header = cairn_wire::peer::PeerStreamHeader::Raft {
        from: raft_core::NodeId(1),
    };
    frame::write_frame(&mut uni, &header, frame::FRAME_MAX_BYTES_DEFAULT)
        .await
        .unwrap();
}

fn counter(text: &str, name: &str, reason: &str) -> f64 {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && s.labels.get("reason") == Some(reason))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_connection_and_foreign_certificates_are_refused() {
    let _serial = serial().await;
    let (cluster, client, leader) = Cluster::running(3).await;
    let target = cluster.addr(leader);
    let kv = client.namespace(SHARD, ns("sec"));
    kv.set("k", "v").await.unwrap();

    let raw = endpoint::client(&cluster.identity(), &EndpointLimits::default()).unwrap();
    let max = frame::FRAME_MAX_BYTES_DEFAULT;
    // Each case: what the hostile client writes on a request stream, the reason label expected.
    let oversized = {
        let mut b = (max + 1).to_be_bytes().to_vec();
        b.push(PROTOCOL_VERSION);
        b
    };
    let wrong_version = {
        let mut b = 4u32.to_be_bytes().to_vec();
        b.push(PROTOCOL_VERSION + 1);
        b.extend_from_slice(&[0, 0, 0, 0]);
        b
    };
    let truncated = {
        let mut b = 100u32.to_be_bytes().to_vec();
        b.push(PROTOCOL_VERSION);
        b.extend_from_slice(&[1, 2, 3]);
        b
    };
    let garbage = {
        let mut b = 16u32.to_be_bytes().to_vec();
        b.push(PROTOCOL_VERSION);
        b.extend_from_slice(&[0xff; 16]);
        b
    };
    for (bytes, reason) in [
        (garbage, "decode"),
        (truncated, "truncated"),
        (oversized, "oversized"),
        (wrong_version, "version"),
    ] {
        let before = counter(
            &scrape(cluster.nodes[&leader].metrics),
            "cairn_transport_frames_rejected_total",
            reason,
        );
        let conn = endpoint::connect(&raw, target).await.unwrap();
        let (mut send, _recv) = conn.open_bi().await.unwrap();
        send.write_all(&bytes).await.unwrap();
        send.finish().unwrap();
        let (code, why) = closed_with(&conn).await;
        assert_eq!(
            code,
            u64::from(frame::close::FRAME_ERROR),
            "{reason}: closed with {why}"
        );
        eprintln!("{reason}: closed with code {code}: {why}");
        // The node keeps serving everyone else.
        kv.set("k", reason).await.unwrap();
        assert_eq!(
            kv.get("k", cairn_wire::api::Consistency::Consistent)
                .await
                .unwrap()
                .value,
            reason.as_bytes()
        );
        let after = counter(
            &scrape(cluster.nodes[&leader].metrics),
            "cairn_transport_frames_rejected_total",
            reason,
        );
        assert_eq!(after, before + 1.0, "{reason} counted");
    }

    // Raw UDP garbage at the QUIC port is ignored.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..200u32 {
        let junk: Vec<u8> = (0..1200).map(|j| (i * 31 + j * 7) as u8).collect();
        udp.send_to(&junk, target).unwrap();
    }
    kv.set("k", "after udp garbage").await.unwrap();

    // A client certificate may not open a peer (Raft) stream.
    let conn = endpoint::connect(&raw, target).await.unwrap();
    claim_to_be_node_1(&conn).await;
    let (code, _) = closed_with(&conn).await;
    assert_eq!(code, u64::from(frame::close::NOT_AUTHORIZED));

    // A node certificate of the cluster may speak only for its own node id: node-9's
    // certificate claiming to be node 1 is refused.
    let certs = cluster.certs_dir();
    let certs_s = certs.to_str().unwrap();
    cairn(&[
        "certs", "issue", "--dir", certs_s, "--name", "node-9", "--role", "node",
    ]);
    let impostor = Identity::load(
        &certs.join("ca.pem"),
        &certs.join("node-9.pem"),
        &certs.join("node-9.key"),
    )
    .unwrap();
    let impostor_endpoint = endpoint::client(&impostor, &EndpointLimits::default()).unwrap();
    let conn = endpoint::connect(&impostor_endpoint, target).await.unwrap();
    claim_to_be_node_1(&conn).await;
    let (code, why) = closed_with(&conn).await;
    assert_eq!(code, u64::from(frame::close::NOT_AUTHORIZED), "{why}");
    kv.set("k", "after the impostor").await.unwrap();

    // A certificate from another CA is refused during the handshake.
    let foreign = cluster.dir.path().join("foreign");
    let foreign_s = foreign.to_str().unwrap();
    cairn(&["certs", "init", "--dir", foreign_s, "--cluster", "evil"]);
    cairn(&[
        "certs", "issue", "--dir", foreign_s, "--name", "mallory", "--role", "client",
    ]);
    // It trusts the real CA (so only the node's check can stop it), but its own cert is foreign.
    let identity = Identity::load(
        &cluster.certs_dir().join("ca.pem"),
        &foreign.join("mallory.pem"),
        &foreign.join("mallory.key"),
    )
    .unwrap();
    let refused_before = counter(
        &scrape(cluster.nodes[&leader].metrics),
        "cairn_transport_connections_refused_total",
        "handshake",
    );
    let mallory =
        Client::new(ClientConfig::new(vec![target], identity).with_request_timeout_ms(3_000))
            .unwrap();
    let err = mallory
        .namespace(SHARD, ns("sec"))
        .get("k", cairn_wire::api::Consistency::Any)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Unavailable { .. } | Error::Tls(_) | Error::Protocol(_)
        ),
        "foreign client got: {err}"
    );
    let refused_after = counter(
        &scrape(cluster.nodes[&leader].metrics),
        "cairn_transport_connections_refused_total",
        "handshake",
    );
    assert!(refused_after > refused_before, "refusal counted");
    // And the real client still works.
    kv.set("k", "still serving").await.unwrap();
}
