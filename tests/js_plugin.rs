//! A policy in another language: `plugins/js-health` (JavaScript) built from source
//! with componentize-js, as its README says, and judging real backends in a running
//! proxy, probing them with the request it chooses.
//!
//! Its own test binary: the component carries a JavaScript engine and takes the
//! proxy tens of seconds to compile, so it runs with the machine to itself.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use support::*;

/// A backend that answers `GET /healthz` carrying `x-probe-pool: app` with 200 and
/// the `x-health` header the test sets; anything else with 404.
async fn health_backend(state: Arc<Mutex<String>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let health = state.lock().clone();
                    async move {
                        let probed = req.uri().path() == "/healthz"
                            && req
                                .headers()
                                .get("x-probe-pool")
                                .is_some_and(|v| v == "app");
                        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
                        if probed {
                            response
                                .headers_mut()
                                .insert("x-health", health.parse().unwrap());
                        } else {
                            *response.status_mut() = http::StatusCode::NOT_FOUND;
                        }
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_health_plugin_built_from_source_judges_backends() {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let plugin_dir = repository.join("plugins/js-health");
    if !plugin_dir
        .join("node_modules/@bytecodealliance/componentize-js")
        .is_dir()
    {
        skip_or_fail(
            "componentize-js is not installed (npm ci --prefix plugins/js-health): skipping the JavaScript plugin",
        );
        return;
    }
    // The README's build command, from the repository root.
    let started = Instant::now();
    let out = Command::new("npm")
        .args(["run", "build", "--prefix", "plugins/js-health"])
        .current_dir(&repository)
        .output()
        .expect("npm runs");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "componentize-js built the plugin in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let wasm = repository.join("plugins/target/js/js_health.wasm");
    let info = switchyard::plugin::inspect(&wasm).expect("a component");
    assert_eq!(
        info.loadable_as(),
        vec![switchyard::plugin::PluginKind::Health]
    );
    assert!(
        info.imports
            .iter()
            .all(|i| i.name.starts_with("switchyard:policy/")),
        "it imports nothing but switchyard:policy: {info}"
    );

    let health = Arc::new(Mutex::new("ok".to_string()));
    let backend = health_backend(Arc::clone(&health)).await;
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
         [pool.app]\nbackends = [{{ address = \"{backend}\" }}]\n\
         [pool.app.health]\npath = \"/configured\"\ninterval = \"100ms\"\ntimeout = \"90ms\"\nrise = 1\nfall = 1\n\
         evaluate = \"plugin:js\"\n\
         [plugin.js]\nkind = \"health-check\"\npath = '{}'\ntimeout = \"50ms\"\n\
         config = {{ path = \"/healthz\", header = \"x-health\", slow-ms = 60000 }}\n",
        wasm.display()
    );
    let started = Instant::now();
    let proxy = start_proxy(&config).await;
    eprintln!(
        "the proxy compiled and loaded the JavaScript plugin in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let backend_state = |s: &serde_json::Value| s["pools"][0]["backends"][0].clone();
    let wait_for = |what: &'static str, check: fn(&serde_json::Value) -> bool| {
        let proxy = &proxy;
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let s = status(proxy).await;
                let b = backend_state(&s);
                if check(&b) {
                    return b;
                }
                assert!(Instant::now() < deadline, "{what}: {b}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // Up: the probes go where the plugin asked (the configured path would be a 404).
    wait_for("up through the plugin's probe", |b| {
        b["health"] == "up" && b["last_check"]["result"] == "ok"
    })
    .await;
    *health.lock() = "degraded".into();
    wait_for("degraded by the header", |b| {
        b["health"] == "up" && b["last_check"]["result"] == "degraded 50%"
    })
    .await;
    *health.lock() = "draining".into();
    let down = wait_for("down by the header", |b| b["health"] == "down").await;
    assert_eq!(down["last_check"]["result"], "x-health: draining");

    let s = status(&proxy).await;
    let plugin = &s["plugins"][0];
    assert_eq!(plugin["kind"], "health-check");
    assert_eq!(plugin["probe_request"], true);
    assert_eq!(plugin["errors"]["trap"], 0, "{plugin}");
    assert_eq!(plugin["errors"]["timeout"], 0, "{plugin}");
}
