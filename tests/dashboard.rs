//! The admin dashboard: served with strict headers without a token, and driven in a real
//! headless Chromium against a proxy with live backends; and a hostile page from another
//! origin in the same browser, which must change nothing (skipped when no browser is
//! installed, except under CI).

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

const TOKEN: &str = "dash-s3cret-dash-s3cret";
const FAST_HEALTH: &str = "[pool.app.health]\ntype = \"http\"\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\njitter = \"0%\"\nrise = 1\nfall = 2\n";

fn with_token(config: String) -> String {
    config.replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\""),
    )
}

/// GET with an optional bearer token; returns status, headers and body.
async fn fetch(url: &str, token: Option<&str>) -> (u16, http::HeaderMap, Bytes) {
    let mut req = Request::get(url);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let resp = client()
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status.as_u16(), parts.headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_is_served_without_a_token_but_its_data_is_not() {
    let a = TestBackend::start("a").await;
    let proxy = start_proxy(&with_token(simple_config(&[&a], ""))).await;
    let base = format!("http://{}", proxy.admin);

    let (code, headers, body) = fetch(&format!("{base}/"), None).await;
    assert_eq!(code, 200, "the page itself holds no data");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = String::from_utf8_lossy(&body);
    assert!(html.contains("<script src=\"/ui/app.js\" defer></script>"));
    assert!(html.contains("href=\"/ui/style.css\""));

    let (code, headers, body) = fetch(&format!("{base}/ui/app.js"), None).await;
    assert_eq!(code, 200);
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    assert!(headers.contains_key("content-security-policy"));
    assert!(String::from_utf8_lossy(&body).contains("/status"));
    let (code, headers, _) = fetch(&format!("{base}/ui/style.css"), None).await;
    assert_eq!(code, 200);
    assert_eq!(headers["content-type"], "text/css; charset=utf-8");

    assert_eq!(fetch(&format!("{base}/ui/nope.js"), None).await.0, 404);
    assert_eq!(fetch(&format!("{base}/nope"), Some(TOKEN)).await.0, 404);
    let post = Request::post(format!("{base}/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client().request(post).await.unwrap().status(), 405);

    // Data still needs the token.
    assert_eq!(fetch(&format!("{base}/status"), None).await.0, 401);
    assert_eq!(fetch(&format!("{base}/status"), Some(TOKEN)).await.0, 200);
}

/// Two pools behind one route: `blue` (without a health check) and `green` (checked
/// every 100 ms).
fn two_pools(blue: &TestBackend, green: &TestBackend) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"app\"\nlistener = \"web\"\npool = \"blue\"\n\
         [pool.blue]\nbackends = [{{ address = \"{}\" }}]\n\
         [pool.green]\nbackends = [{{ address = \"{}\" }}]\n{}",
        blue.addr,
        green.addr,
        FAST_HEALTH.replace("pool.app", "pool.green")
    )
}

/// One backend's series in a `/history` document.
fn series(history: &serde_json::Value, address: &str) -> Vec<serde_json::Value> {
    history["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["address"] == address))
        .and_then(|b| b["points"].as_array().cloned())
        .unwrap_or_default()
}

async fn admin_get(proxy: &TestProxy, path: &str) -> serde_json::Value {
    let (code, _, body) = fetch(&format!("http://{}{path}", proxy.admin), None).await;
    assert_eq!(code, 200, "{path}");
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_events_are_kept_by_the_proxy() {
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    let proxy = start_proxy(&two_pools(&blue, &green)).await;
    let (b, g) = (blue.addr.to_string(), green.addr.to_string());
    let load = Load::start(2, format!("http://{}/", proxy.web));

    // Traffic on blue shows as a request rate with a p99, and no errors.
    wait_for(
        "a point with blue's traffic",
        Duration::from_secs(20),
        async || {
            series(&admin_get(&proxy, "/history").await, &b)
                .iter()
                .any(|p| p["requests_per_s"].as_f64() > Some(0.0))
        },
    )
    .await;
    let history = admin_get(&proxy, "/history").await;
    assert_eq!(history["interval_ms"], 2000);
    assert_eq!(history["window_ms"], 300_000);
    let busy = series(&history, &b)
        .into_iter()
        .find(|p| p["requests_per_s"].as_f64() > Some(0.0))
        .unwrap();
    assert_eq!(busy["error_rate"], 0.0, "{busy}");
    assert!(busy["p99_ms"].as_f64() > Some(0.0), "{busy}");

    // An operator sets blue's weight and switches the route to green (two events);
    // then green answers 503: its checks fail (an event) and its errors show.
    let weight = format!("/pools/blue/backends/{b}/weight");
    assert_eq!(
        admin_call(&proxy, "POST", &weight, r#"{"weight": 3}"#)
            .await
            .0,
        200
    );
    let (code, answer) =
        admin_call(&proxy, "POST", "/routes/app/switch", r#"{"pool": "green"}"#).await;
    assert_eq!(code, 200, "{answer}");
    wait_for(
        "a point with green's traffic",
        Duration::from_secs(20),
        async || {
            series(&admin_get(&proxy, "/history").await, &g)
                .iter()
                .any(|p| p["requests_per_s"].as_f64() > Some(0.0))
        },
    )
    .await;
    green.set_mode(Mode::Status(503));
    wait_for(
        "a point with green's errors",
        Duration::from_secs(20),
        async || {
            series(&admin_get(&proxy, "/history").await, &g)
                .iter()
                .any(|p| p["error_rate"].as_f64() > Some(0.0))
        },
    )
    .await;
    wait_for("green down", Duration::from_secs(10), async || {
        backend_status(&proxy, green.addr).await["health"] == "down"
    })
    .await;
    let (code, _) = admin_call(&proxy, "POST", "/routes/app/switch", r#"{"pool": "blue"}"#).await;
    assert_eq!(code, 200);
    load.stop().await;

    let events = admin_get(&proxy, "/events").await;
    let said: Vec<(String, bool, String)> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let who = e["backend"]
                .as_str()
                .map_or(String::new(), |b| format!("{b} "));
            (
                e["kind"].as_str().unwrap().to_string(),
                e["warning"] == true,
                format!("{who}{}", e["message"].as_str().unwrap()),
            )
        })
        .collect();
    let position = |kind: &str, warning: bool, text: &str| {
        said.iter()
            .position(|(k, w, m)| k == kind && *w == warning && m.starts_with(text))
            .unwrap_or_else(|| panic!("no {kind} event `{text}`: {said:#?}"))
    };
    let up = position("health", false, &format!("{g} health check: UP"));
    let down = position(
        "health",
        true,
        &format!("{g} health check: DOWN (status 503"),
    );
    let weighted = position(
        "backend",
        false,
        &format!("{b} weight set to 3 by an operator (127.0.0.1:"),
    );
    let to_green = position("switch", false, "route app: all traffic to pool green");
    let to_blue = position("switch", false, "route app: all traffic to pool blue");
    assert!(up < weighted && weighted < to_green && to_green < down && down < to_blue);
    let ids: Vec<u64> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    // What a page that polls again gets: the same curve, and `since_ms` only what
    // is newer.
    let again = admin_get(&proxy, "/history").await;
    let first = series(&history, &b)[0].clone();
    assert_eq!(series(&again, &b)[0], first, "the points stay in the proxy");
    let last = series(&again, &b).last().unwrap()["at_ms"]
        .as_u64()
        .unwrap();
    let newer = admin_get(&proxy, &format!("/history?since_ms={last}")).await;
    assert_eq!(series(&newer, &b), Vec::<serde_json::Value>::new());
}

/// The next line the browser script prints, which must start with `prefix`.
async fn expect_line(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("no `{prefix}` from the browser script within 15 s"))
        .expect("the browser script's stdout is readable")
        .unwrap_or_else(|| panic!("the browser script ended before `{prefix}`"));
    assert!(
        line.starts_with(prefix),
        "expected `{prefix}` from the browser script, got `{line}`"
    );
    line
}

fn backend_state(state: &serde_json::Value, address: &str) -> serde_json::Value {
    state["pools"][0]["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["address"] == address))
        .cloned()
        .unwrap_or_else(|| panic!("no backend {address} in {state}"))
}

async fn status_with_token(proxy: &TestProxy) -> serde_json::Value {
    let (code, _, body) = fetch(&format!("http://{}/status", proxy.admin), Some(TOKEN)).await;
    assert_eq!(code, 200);
    serde_json::from_slice(&body).unwrap()
}

/// A route for `Host: lab.test` to pool `lab`, routed by the hostile test plugin,
/// whose calls on `/trap` and `/bad-index` fail (and fall back to the native policy).
fn lab(backend: &TestBackend) -> String {
    format!(
        "\n[[route]]\nname = \"lab\"\nlistener = \"web\"\nhost = \"lab.test\"\npool = \"lab\"\n\
         [pool.lab]\nbalance = \"plugin:hostile\"\nbackends = [{{ address = \"{}\" }}]\n\
         [plugin.hostile]\nkind = \"routing\"\npath = '{}'\ntimeout = \"50ms\"\nmemory = \"4MiB\"\n",
        backend.addr,
        switchyard::plugin::test_plugin_dir()
            .join("hostile.wasm")
            .display()
    )
}

/// Where the browser test leaves its screenshot: `DASHBOARD_SCREENSHOT`, or
/// `dashboard.png` in the test binaries' scratch directory under `target/`.
fn screenshot_path() -> std::path::PathBuf {
    std::env::var_os("DASHBOARD_SCREENSHOT").map_or_else(
        || std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png"),
        std::path::PathBuf::from,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium_shows_a_dead_backend_and_drains_it() {
    let Some(dir) = support::browser() else {
        return;
    };
    let started = Instant::now();
    let (victim, other, lab_backend) = (
        TestBackend::start("victim").await,
        TestBackend::start("other").await,
        TestBackend::start("lab").await,
    );
    let config = with_token(simple_config(&[&victim, &other], FAST_HEALTH) + &lab(&lab_backend));
    let proxy = start_proxy(&config).await;
    // Plugin errors of two kinds, for the badges.
    let c = client();
    for path in ["/trap", "/trap", "/bad-index"] {
        let url = format!("http://{}{path}", proxy.web);
        let (status, _, _) = get_with(&c, &url, Some(("host", "lab.test"))).await;
        assert_eq!(status, 200, "{path} falls back to the native policy");
    }
    // Traffic while the page watches, for the curves.
    let load = Load::start(2, format!("http://{}/", proxy.web));
    let screenshot = screenshot_path();
    let _ = std::fs::remove_file(&screenshot);

    let mut child = Command::new("node")
        .arg(dir.join("dashboard.mjs"))
        .arg(format!("http://{}", proxy.admin))
        .arg(TOKEN)
        .arg(victim.addr.to_string())
        .arg(other.addr.to_string())
        .current_dir(&dir)
        .env("CHROMIUM_PATH", CHROMIUM)
        .env("DASHBOARD_SCREENSHOT", &screenshot)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();

    expect_line(&mut lines, "listed").await;
    victim.kill();
    stdin.write_all(b"killed\n").await.unwrap();
    let down = expect_line(&mut lines, &format!("down {}", victim.addr)).await;
    eprintln!("dashboard showed the dead backend: {down}");

    let drained = expect_line(&mut lines, &format!("drained {}", victim.addr)).await;
    let state = backend_state(&status_with_token(&proxy).await, &victim.addr.to_string());
    let admin_state = state["admin_state"].as_str().unwrap_or_default();
    assert!(
        admin_state == "draining" || admin_state == "drained",
        "the drain button drained it: {state}"
    );
    assert!(drained.ends_with(admin_state) || admin_state == "drained");
    assert_eq!(state["health"], "down");
    stdin.write_all(b"verified\n").await.unwrap();

    expect_line(&mut lines, &format!("weight {} 5", other.addr)).await;
    let state = backend_state(&status_with_token(&proxy).await, &other.addr.to_string());
    assert_eq!(state["weight"], 5, "the weight form set it: {state}");
    stdin.write_all(b"verified\n").await.unwrap();

    expect_line(&mut lines, "timeline ok").await;
    expect_line(&mut lines, "curves").await;
    expect_line(&mut lines, "banner ok").await;
    let kept = expect_line(&mut lines, "kept").await;
    eprintln!("after a reload of the page: {kept}");
    expect_line(&mut lines, "done").await;
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the browser script exits")
        .expect("the browser script's status");
    assert!(exit.success(), "browser script failed: {exit}");
    load.stop().await;
    let png = std::fs::read(&screenshot).expect("the screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot: {} bytes",
        png.len()
    );
    eprintln!(
        "browser test took {:?}; screenshot: {}",
        started.elapsed(),
        screenshot.display()
    );
}

/// The attacker's page (served from another origin): a form post and no-cors
/// fetches at the admin API by its loopback address and by a rebound name, and
/// cross-origin reads. `window.__results` holds what the browser let it see.
fn attack_page(admin_port: u16, victim: &str) -> String {
    format!(
        r#"<!doctype html>
<html><body>
<iframe name="sink1"></iframe><iframe name="sink2"></iframe>
<form id="disable" method="POST" target="sink1" enctype="text/plain"
      action="http://127.0.0.1:{admin_port}/pools/app/backends/{victim}/disable">
  <input name='{{"weight": 0, "x": "' value='"}}'>
</form>
<form id="add" method="POST" target="sink2"
      action="http://127.0.0.1:{admin_port}/pools/app/backends">
  <input name="address" value="169.254.169.254:80">
</form>
<script>
(async () => {{
  const admin = "http://127.0.0.1:{admin_port}";
  const rebound = "http://attacker.test:{admin_port}";
  const victim = "{victim}";
  const results = {{}};
  const loaded = (name) => new Promise((done) =>
    document.querySelector(`iframe[name=${{name}}]`).addEventListener("load", done, {{ once: true }}));
  const frames = Promise.all([loaded("sink1"), loaded("sink2")]);
  document.getElementById("disable").submit();
  document.getElementById("add").submit();
  const attempt = async (key, url, init) => {{
    try {{
      const r = await fetch(url, init);
      results[key] = r.type + ":" + r.status;
    }} catch (e) {{
      results[key] = "blocked:" + e.name;
    }}
  }};
  await attempt("no_cors_drain", `${{admin}}/pools/app/backends/${{victim}}/drain`,
    {{ method: "POST", mode: "no-cors", body: "{{}}" }});
  await attempt("no_cors_add", `${{admin}}/pools/app/backends`,
    {{ method: "POST", mode: "no-cors", headers: {{ "Content-Type": "application/json" }},
      body: JSON.stringify({{ address: "169.254.169.254:80" }}) }});
  await attempt("cors_weight", `${{admin}}/pools/app/backends/${{victim}}/weight`,
    {{ method: "POST", headers: {{ "Content-Type": "application/json" }}, body: '{{"weight": 0}}' }});
  await attempt("cors_read", `${{admin}}/status`, {{}});
  await attempt("rebound_disable", `${{rebound}}/pools/app/backends/${{victim}}/disable`,
    {{ method: "POST", mode: "no-cors", body: "{{}}" }});
  await attempt("rebound_read", `${{rebound}}/status`, {{}});
  await Promise.race([frames, new Promise((done) => setTimeout(done, 5000))]);
  window.__results = results;
}})();
</script>
</body></html>
"#
    )
}

/// Serves `page` at every path of a test HTTP server on 127.0.0.1 (the attacker's
/// origin once Chromium maps attacker.test there).
async fn serve_page(page: String) -> std::net::SocketAddr {
    let page = Bytes::from(page);
    serve_with(move |_req| {
        let mut response = http::Response::new(Full::new(page.clone()));
        response.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    })
    .await
}

async fn admin_metrics(proxy: &TestProxy) -> String {
    let (_, _, body) = fetch(&format!("http://{}/metrics", proxy.admin), None).await;
    String::from_utf8_lossy(&body).into_owned()
}

fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn ctl(admin: std::net::SocketAddr, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ctl", "--admin", &admin.to_string()])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_from_another_origin_cannot_change_or_read_the_admin_api() {
    let Some(dir) = support::browser() else {
        return;
    };
    let (victim, other) = (
        TestBackend::start("victim").await,
        TestBackend::start("other").await,
    );
    // The default that used to be open to any page: loopback, no token.
    let proxy = start_proxy(&simple_config(&[&victim, &other], "")).await;
    let before = status(&proxy).await;
    let attacker = serve_page(attack_page(proxy.admin.port(), &victim.addr.to_string())).await;

    let mut child = Command::new("node")
        .arg(dir.join("attacker.mjs"))
        .arg(proxy.admin.port().to_string())
        .arg(format!("http://attacker.test:{}/", attacker.port()))
        .arg(victim.addr.to_string())
        .current_dir(&dir)
        .env("CHROMIUM_PATH", CHROMIUM)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();

    let attacked = expect_line(&mut lines, "attacked ").await;
    let seen: serde_json::Value =
        serde_json::from_str(attacked.trim_start_matches("attacked ")).unwrap();
    eprintln!("what the hostile page saw: {seen}");
    // Nothing the page did changed anything, and it read nothing.
    let after = status(&proxy).await;
    let addresses = |s: &serde_json::Value| -> Vec<String> {
        s["pools"][0]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["address"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(addresses(&after), addresses(&before), "{after}");
    assert_eq!(after["routes"], before["routes"], "{after}");
    for b in after["pools"][0]["backends"].as_array().unwrap() {
        assert_eq!(b["admin_state"], "active", "{b}");
        assert_eq!(b["weight"], 1, "{b}");
    }
    assert_eq!(after["pools"][0]["backends"].as_array().unwrap().len(), 2);
    assert_eq!(seen["rebound_status"], 421, "{seen}");
    assert_eq!(seen["rebound_shows_pools"], false, "{seen}");
    assert_eq!(seen["same_origin"]["read"], "421:false", "{seen}");
    assert_eq!(seen["same_origin"]["disable"], "421", "{seen}");
    assert_eq!(seen["same_origin"]["add"], "421", "{seen}");
    for read in ["cors_read", "rebound_read", "cors_weight"] {
        assert!(
            seen["page"][read]
                .as_str()
                .unwrap_or("")
                .starts_with("blocked"),
            "{read}: {seen}"
        );
    }
    // The refusals were the admin API's own, not only the browser's.
    let metrics = admin_metrics(&proxy).await;
    assert!(
        metric_value(
            &metrics,
            "switchyard_admin_refused_total{reason=\"cross_site\"}"
        ) >= 4.0,
        "the form posts and no-cors fetches reached the API and were refused:\n{metrics}"
    );
    assert!(
        metric_value(&metrics, "switchyard_admin_refused_total{reason=\"host\"}") >= 4.0,
        "the rebound requests were refused by Host:\n{metrics}"
    );
    assert!(
        !metrics.contains("switchyard_admin_mutations_total{"),
        "no change reached an endpoint:\n{metrics}"
    );

    // The same changes from `switchyard ctl` work.
    let admin = proxy.admin;
    let victim_address = victim.addr.to_string();
    let (ok, out) =
        tokio::task::spawn_blocking(move || ctl(admin, &["disable", "app", &victim_address]))
            .await
            .unwrap();
    assert!(
        ok && out.starts_with(&format!(
            "pool app, backend {}: disabled (weight 1,",
            victim.addr
        )),
        "{out}"
    );
    let (ok, out) = tokio::task::spawn_blocking(move || {
        ctl(admin, &["add-backend", "app", "169.254.169.254:80"])
    })
    .await
    .unwrap();
    assert!(
        !ok && out.contains("link-local"),
        "ctl is held to the address policy too: {out}"
    );
    let victim_address = victim.addr.to_string();
    let (ok, out) =
        tokio::task::spawn_blocking(move || ctl(admin, &["enable", "app", &victim_address]))
            .await
            .unwrap();
    assert!(
        ok && out.starts_with(&format!(
            "pool app, backend {}: active (weight 1,",
            victim.addr
        )),
        "{out}"
    );
    stdin.write_all(b"checked\n").await.unwrap();

    // And so does the dashboard.
    expect_line(&mut lines, &format!("drained {}", victim.addr)).await;
    let state = backend_state(&status(&proxy).await, &victim.addr.to_string());
    let admin_state = state["admin_state"].as_str().unwrap_or_default();
    assert!(
        admin_state == "draining" || admin_state == "drained",
        "the dashboard's drain button worked: {state}"
    );
    stdin.write_all(b"verified\n").await.unwrap();
    expect_line(&mut lines, "done").await;
    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the browser script exits")
        .expect("the browser script's status");
    assert!(exit.success(), "browser script failed: {exit}");
}
