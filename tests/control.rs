//! Runtime control through the admin API while traffic flows: drain, disable, enable, weight.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::*;

async fn admin_call(
    proxy: &TestProxy,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", proxy.admin))
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_under_load_loses_nothing_and_stops_new_requests() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let proxy = start_proxy(&simple_config(&[&a, &b], "balance = \"round-robin\"")).await;
    let url = format!("http://{}/", proxy.web);

    // A slow request in flight on `a` when the drain starts must still complete.
    a.set_mode(Mode::Slow(Duration::from_secs(1)));
    let c = client();
    let slow = {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move {
            let mut results = Vec::new();
            for _ in 0..2 {
                let (c, url) = (c.clone(), url.clone());
                results.push(tokio::spawn(async move { get(&c, &url).await }));
            }
            let mut out = Vec::new();
            for r in results {
                out.push(r.await.unwrap());
            }
            out
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..10 {
        let (url, stop, failures) = (url.clone(), Arc::clone(&stop), Arc::clone(&failures));
        load.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                if get(&c, &url).await.0 != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let path = format!("/pools/app/backends/{}/drain", a.addr);
    assert_eq!(
        admin_call(&proxy, "GET", &path, "").await.0,
        405,
        "GET on a mutation is refused"
    );
    let (code, answer) = admin_call(&proxy, "POST", &path, "").await;
    assert_eq!(code, 200);
    assert_eq!(answer["admin_state"], "draining", "{answer}");
    let hits_at_drain = a.hits();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        a.hits(),
        hits_at_drain,
        "no new request reaches a draining backend"
    );

    for (status, _, _) in slow.await.unwrap() {
        assert_eq!(status, 200, "in-flight requests complete");
    }
    // Requests that were in flight on `a` (1 s each) finish, then it reports drained.
    let mut drained = false;
    for _ in 0..150 {
        let state = status(&proxy).await;
        if state["pools"][0]["backends"][0]["admin_state"] == "drained" {
            assert_eq!(state["pools"][0]["backends"][0]["in_flight"], 0);
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        drained,
        "backend reaches `drained` once its in-flight requests end"
    );

    // Enable puts it back in rotation.
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        &format!("/pools/app/backends/{}/enable", a.addr),
        "",
    )
    .await;
    assert_eq!(
        (code, answer["admin_state"].as_str()),
        (200, Some("active"))
    );
    a.set_mode(Mode::Ok);
    let before = a.hits();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert!(a.hits() > before, "enabled backend takes traffic again");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no client request failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_and_disable_change_the_split() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let proxy = start_proxy(&simple_config(&[&a, &b], "balance = \"weighted\"")).await;
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        &format!("/pools/app/backends/{}/weight", a.addr),
        r#"{"weight": 3}"#,
    )
    .await;
    assert_eq!((code, answer["weight"].as_u64()), (200, Some(3)));
    let c = client();
    for _ in 0..400 {
        assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    }
    assert_eq!((a.hits(), b.hits()), (300, 100));

    let (code, _) = admin_call(
        &proxy,
        "POST",
        &format!("/pools/app/backends/{}/weight", a.addr),
        r#"{"weight": "heavy"}"#,
    )
    .await;
    assert_eq!(code, 400, "a malformed body is a clear 400");
    let (code, _) = admin_call(&proxy, "POST", "/pools/app/backends/10.9.9.9:1/disable", "").await;
    assert_eq!(code, 404);

    admin_call(
        &proxy,
        "POST",
        &format!("/pools/app/backends/{}/disable", b.addr),
        "",
    )
    .await;
    let before = b.hits();
    for _ in 0..50 {
        assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    }
    assert_eq!(b.hits(), before, "a disabled backend gets nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_is_required_when_configured_and_off_loopback() {
    let a = TestBackend::start("a").await;
    let open = simple_config(&[&a], "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "[admin]\nlisten = \"0.0.0.0:0\"",
    );
    let err =
        switchyard::config::Config::parse(std::path::Path::new("exposed.toml"), &open).unwrap_err();
    assert!(
        err.to_string().contains("exposed.toml:2:10: admin.listen")
            && err.to_string().contains("bearer token"),
        "{err}"
    );

    let config = simple_config(&[&a], "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret\"",
    );
    let proxy = start_proxy(&config).await;
    let path = format!("/pools/app/backends/{}/disable", a.addr);
    assert_eq!(admin_call(&proxy, "POST", &path, "").await.0, 401);
    assert_eq!(
        get(&client(), &format!("http://{}/status", proxy.admin))
            .await
            .0,
        401
    );
    assert_eq!(
        get(&client(), &format!("http://{}/health", proxy.admin))
            .await
            .0,
        200,
        "liveness stays open"
    );
    let req = Request::post(format!("http://{}{path}", proxy.admin))
        .header("authorization", "Bearer wrong")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client().request(req).await.unwrap().status(), 401);
    let req = Request::post(format!("http://{}{path}", proxy.admin))
        .header("authorization", "Bearer s3cret")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client().request(req).await.unwrap().status(), 200);
}
