//! `switchyard demo --traffic`: the demo traffic is served by the gateway it targets (over
//! real HTTP on loopback), and stops when asked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchyard::config::AuthMode;
use switchyard::demo::traffic::Traffic;
use switchyard::server;

use crate::common::setup_with;

#[tokio::test]
async fn demo_traffic_is_served_and_stops() {
    let t = setup_with(|c| c.auth.mode = Some(AuthMode::Open)).await;
    let listener = server::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let timeouts = server::Timeouts::from(&t.gw.config.server);
    tokio::spawn(server::serve(
        listener,
        switchyard::app(t.gw.clone()),
        timeouts,
        t.gw.abort.clone(),
        std::future::pending(),
    ));
    let before = t.sim.sim.stats().total().requests;
    let traffic = Traffic::start(addr, 50.0, &t.gw.config, Arc::clone(&t.sim.sim)).unwrap();
    // The signal: the traffic's own count of 2xx answers.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while traffic.served() < 20 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} demo requests served",
            traffic.served()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::timeout(Duration::from_secs(10), traffic.stop())
        .await
        .expect("stop returns");
    let upstream = t.sim.sim.stats().total().requests - before;
    assert!(upstream >= 1, "the traffic reached the models: {upstream}");
    // The gateway counted them as requests of its own.
    let (status, perf) = crate::common::get_json(&t.gw, "/ai/performance").await;
    assert_eq!(status, 200, "{perf}");
    let counted: u64 = perf["models"]
        .as_object()
        .unwrap()
        .values()
        .map(|m| m["requests"].as_u64().unwrap_or(0))
        .sum();
    // About one demo request in five is the deterministic question, answered from the cache
    // after its first time without reaching a model: of the ≥ 20 served, at least half are
    // model requests however the draws fall.
    assert!(
        counted >= 10,
        "/ai/performance counts {counted} requests: {perf}"
    );
    // Stopped: nothing more arrives.
    let after = t.sim.sim.stats().total().requests;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(t.sim.sim.stats().total().requests, after);
}

#[tokio::test]
async fn demo_traffic_refuses_a_gateway_that_needs_keys() {
    let t = setup_with(|c| c.auth.mode = Some(AuthMode::Keys)).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], 9));
    let e = Traffic::start(addr, 5.0, &t.gw.config, Arc::clone(&t.sim.sim))
        .err()
        .unwrap();
    assert!(e.contains("mode = \"open\""), "{e}");
}
