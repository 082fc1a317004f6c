//! Writing plugins as an author would: `plugins/README.md` followed command by
//! command (scaffold outside the repository, native tests, build, offline run, shadow
//! in a running proxy, samples, going live, hot reload, a located config error); a
//! plugin of each other kind from `plugin new` loaded into a proxy; the SDK and the
//! shipped plugins passing their own native tests.
//!
//! Plugin crates build into the plugins' target directory (through a `target`
//! symlink), so their dependencies are compiled once for all of them.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support::*;

const README: &str = include_str!("../plugins/README.md");
const TENANT_PIN: &str = include_str!("../plugins/examples/tenant-pin/src/lib.rs");

/// The plugins' target directory, shared by every plugin crate the tests build.
fn plugin_target_dir() -> PathBuf {
    PathBuf::from(env!("SWITCHYARD_PLUGIN_BUILD_DIR"))
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `cargo` as an author runs it in `dir`, minus what the outer build set that would
/// redirect it.
fn cargo_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(args).current_dir(dir);
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn switchyard_command(dir: &Path, args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("SWITCHYARD_CONFIG");
    cmd
}

/// Runs `cmd` off the async workers and returns its output, failing the test with
/// both streams when it fails.
async fn succeed(what: &str, mut cmd: Command) -> String {
    let what = what.to_string();
    let started = Instant::now();
    let out: Output = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`{what}` failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!("`{what}` took {:.1} s", started.elapsed().as_secs_f64());
    stdout
}

/// Points the crate's `target` at the shared target directory.
fn share_target_dir(crate_dir: &Path) {
    std::os::unix::fs::symlink(plugin_target_dir(), crate_dir.join("target")).unwrap();
}

/// Splits a shell command line: words, 'single' and "double" quoted strings.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// A code block of the walkthrough: its language and text.
struct Block {
    lang: String,
    text: String,
}

/// The fenced blocks between the walkthrough markers, in order.
fn walkthrough_blocks() -> Vec<Block> {
    let start = README
        .find("<!-- walkthrough -->")
        .expect("walkthrough start");
    let end = README
        .find("<!-- /walkthrough -->")
        .expect("walkthrough end");
    fenced_blocks(&README[start..end])
}

fn fenced_blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for line in text.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(lang)) => {
                current = Some(Block {
                    lang: lang.trim().to_string(),
                    text: String::new(),
                })
            }
            (Some(_), Some(_)) => blocks.push(current.take().unwrap()),
            (Some(block), None) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// The commands of the `sh` blocks of `text`.
fn commands(text: &str) -> Vec<String> {
    fenced_blocks(text)
        .into_iter()
        .filter(|b| b.lang == "sh")
        .flat_map(|b| {
            b.text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A backend on loopback whose responses name it (`x-backend`).
async fn named_backend(name: &'static str) -> TestBackend {
    let backend = TestBackend::start(name).await;
    assert_eq!(backend.name(), name);
    backend
}

/// The proxy started by the walkthrough's `switchyard --config ... &`, killed on drop.
struct Background {
    child: Child,
    web: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `switchyard ARGS` in `dir` and reads the addresses it prints (and keeps
/// reading its output, so it never writes to a closed pipe).
async fn start_background(dir: &Path, args: &[String]) -> Background {
    let mut child = switchyard_command(dir, args)
        .arg("--no-access-log")
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let address = line
                .split("http://")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .and_then(|a| a.parse::<SocketAddr>().ok());
            if let Some(address) = address {
                let which = if line.contains("listener `web` on") {
                    "web"
                } else if line.contains("admin on") {
                    "admin"
                } else {
                    continue;
                };
                let _ = tx.send((which, address));
            }
        }
    });
    let (web, admin) = tokio::task::spawn_blocking(move || {
        let (mut web, mut admin) = (None, None);
        while web.is_none() || admin.is_none() {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(("web", a)) => web = Some(a),
                Ok((_, a)) => admin = Some(a),
                Err(e) => panic!("the proxy did not print its addresses: {e}"),
            }
        }
        (web.unwrap(), admin.unwrap())
    })
    .await
    .unwrap();
    Background { child, web, admin }
}

async fn admin_json(admin: SocketAddr, path: &str) -> serde_json::Value {
    let (code, _, body) = get(&client(), &format!("http://{admin}{path}")).await;
    assert_eq!(code, 200, "{path}: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).unwrap()
}

async fn plugin_status(admin: SocketAddr, name: &str) -> serde_json::Value {
    let status = admin_json(admin, "/status").await;
    status["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} in {status}"))
}

/// Waits (up to a minute: the proxy may be compiling) until `check` holds for the
/// status document.
async fn wait_status(
    admin: SocketAddr,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = admin_json(admin, "/status").await;
        if check(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what}: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Commands of `plugins/README.md` that run elsewhere than in the walkthrough, and
/// where.
const RUN_ELSEWHERE: &[(&str, &str)] = &[
    (
        "cargo test",
        "sdk_and_shipped_plugins_pass_their_native_tests, in plugins/",
    ),
    (
        "cargo build --release",
        "the proxy's build script builds plugins/ (and this test builds crates)",
    ),
    ("npm ci --prefix plugins/js-health", ".ci/run"),
    (
        "npm run build --prefix plugins/js-health",
        "tests/js_plugin.rs: js_health_plugin_built_from_source_judges_backends",
    ),
];

#[test]
fn every_readme_command_is_run_by_a_test_or_by_ci() {
    let walked: Vec<String> = walkthrough_blocks()
        .into_iter()
        .filter(|b| b.lang == "sh")
        .flat_map(|b| commands(&format!("```sh\n{}```\n", b.text)))
        .collect();
    for command in commands(README) {
        let elsewhere = RUN_ELSEWHERE.iter().any(|(c, _)| *c == command);
        assert!(
            walked.contains(&command) || elsewhere,
            "plugins/README.md runs `{command}`, which no test runs"
        );
    }
    let ci = std::fs::read_to_string(repository().join(".ci/run")).unwrap();
    assert!(ci.contains("npm ci --prefix plugins/js-health"), "{ci}");
    // The policy of the walkthrough is the example crate, word for word.
    let rust = walkthrough_blocks()
        .into_iter()
        .find(|b| b.lang == "rust")
        .expect("the walkthrough's policy");
    assert_eq!(
        rust.text.strip_prefix("// src/lib.rs\n"),
        Some(TENANT_PIN),
        "the README's policy and plugins/examples/tenant-pin differ"
    );
    assert!(TENANT_PIN.lines().count() < 40, "the tenant router grew");
}

#[test]
fn sdk_and_shipped_plugins_pass_their_native_tests() {
    let mut cmd = cargo_command(&repository().join("plugins"), &["test"]);
    cmd.env("CARGO_TARGET_DIR", plugin_target_dir());
    let started = Instant::now();
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "cargo test in plugins/ took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for test in [
        "pins_then_spills_over ... ok",
        "errors_name_the_field ... ok",
        "rendezvous_moves_only_the_keys_of_a_removed_backend ... ok",
        "judges_the_documented_example ... ok",
        "flagged_requests_go_to_the_canary_and_others_stay_stable ... ok",
        "opens_after_consecutive_failures_with_exponential_periods ... ok",
        "the_slow_backend_loses_every_duel ... ok",
    ] {
        assert!(
            stdout.contains(test),
            "`{test}` did not run natively:\n{stdout}"
        );
    }
}

/// Follows the walkthrough of `plugins/README.md`, running each command in order
/// (`switchyard` is this build's binary, `curl` an HTTP client, the addresses in
/// the examples are replaced by the real ones) and checking what each one shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_runs_as_written() {
    let a = named_backend("a").await;
    let b = named_backend("b").await;
    let root = temp_dir("readme");
    let mut cwd = root.clone();
    let mut proxy: Option<Background> = None;
    let mut builds = 0;
    let mut tests_run = 0;
    let mut configs_written = 0;
    let mut first_digest = serde_json::Value::Null;
    let substitute = |text: &str, proxy: &Option<Background>| {
        let mut text = text
            .replace("127.0.0.1:3001", &a.addr.to_string())
            .replace("127.0.0.1:3002", &b.addr.to_string());
        if let Some(p) = proxy {
            text = text
                .replace("127.0.0.1:8080", &p.web.to_string())
                .replace("127.0.0.1:9901", &p.admin.to_string());
        }
        text
    };
    for block in walkthrough_blocks() {
        match block.lang.as_str() {
            "rust" => {
                let source = block.text.strip_prefix("// src/lib.rs\n").expect("a file");
                std::fs::write(cwd.join("src/lib.rs"), source).unwrap();
            }
            "toml" => {
                assert!(block.text.starts_with("# switchyard.toml\n"));
                // Port 0 for the proxy's own listeners; the backends are the tests'.
                // The deadline is wall-clock time: a busy 2-core CI machine can
                // deschedule a call past the default 2 ms, so the test gives 50 ms
                // (appended to the last table, the plugin's, so no line moves).
                assert!(block.text.trim_end().ends_with("max-in-flight = 8 }"));
                let text = substitute(&block.text, &None)
                    .replace("127.0.0.1:8080", "127.0.0.1:0")
                    .replace("127.0.0.1:9901", "127.0.0.1:0")
                    + "timeout = \"50ms\"\n";
                std::fs::write(cwd.join("switchyard.toml"), text).unwrap();
                configs_written += 1;
                if let (2, Some(p)) = (configs_written, &proxy) {
                    // Going live: the proxy reloads its config by itself.
                    let status = wait_status(p.admin, "the config reload", |s| {
                        s["pools"][0]["balance"] == "plugin:tenant-router"
                    })
                    .await;
                    assert_eq!(status["pools"][0]["fallback_balance"], "least-request");
                    assert!(status["pools"][0]["plugins"]["shadow"].is_null());
                }
            }
            "sh" => {
                for line in block.text.lines().map(str::trim) {
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let line = substitute(line, &proxy);
                    let args = words(&line);
                    match args[0].as_str() {
                        "cd" => cwd = cwd.join(&args[1]),
                        "cargo" => {
                            let argv: Vec<&str> = args[1..].iter().map(String::as_str).collect();
                            if argv == ["build", "--release"] && builds == 2 {
                                // The hot reload: a new version of the policy.
                                let lib = cwd.join("src/lib.rs");
                                let edited = std::fs::read_to_string(&lib).unwrap().replace(
                                    "c.in_flight < self.max_in_flight",
                                    "c.in_flight + 1 <= self.max_in_flight",
                                );
                                std::fs::write(&lib, edited).unwrap();
                            }
                            let out = succeed(&line, cargo_command(&cwd, &argv)).await;
                            match argv.as_slice() {
                                ["test"] => {
                                    tests_run += 1;
                                    assert!(out.contains("test result: ok"), "{out}");
                                    if tests_run == 2 {
                                        assert!(
                                            out.contains("pins_then_spills_over ... ok"),
                                            "{out}"
                                        );
                                    }
                                }
                                ["build", "--release"] => {
                                    builds += 1;
                                    let wasm =
                                        cwd.join("target/wasm32-wasip2/release/tenant_router.wasm");
                                    assert!(wasm.is_file(), "{} was not built", wasm.display());
                                }
                                other => panic!("unexpected cargo command {other:?}"),
                            }
                            if builds == 3
                                && let Some(p) = &proxy
                            {
                                let status = wait_status(p.admin, "the hot reload", |s| {
                                    s["plugins"][0]["digest"] != first_digest
                                })
                                .await;
                                assert_eq!(status["plugins"][0]["reloads"], 1, "{status}");
                                assert_eq!(status["plugins"][0]["reload_failures"], 0, "{status}");
                            }
                        }
                        "switchyard" if args.last().map(String::as_str) == Some("&") => {
                            let argv: Vec<String> = args[1..args.len() - 1].to_vec();
                            let started = start_background(&cwd, &argv).await;
                            let status = plugin_status(started.admin, "tenant-router").await;
                            first_digest = status["digest"].clone();
                            assert_eq!(status["kind"], "routing");
                            proxy = Some(started);
                        }
                        "switchyard" => {
                            let out = succeed(&line, switchyard_command(&cwd, &args[1..])).await;
                            check_switchyard_output(&args[1..], &out);
                            if args[1] == "plugin" && args[2] == "new" {
                                share_target_dir(&cwd.join(&args[3]));
                            }
                        }
                        "curl" => {
                            let p = proxy.as_ref().expect("the proxy runs");
                            let out = curl(&args).await;
                            check_curl_output(p, &args, &out, configs_written);
                        }
                        other => {
                            panic!("the walkthrough runs `{other}`, which this test does not know")
                        }
                    }
                }
            }
            _ => {}
        }
    }
    let p = proxy.expect("the walkthrough started a proxy");
    assert_eq!((builds, tests_run, configs_written), (3, 2, 2));

    // A config value the plugin refuses is reported at its place in the file, as
    // the README shows.
    let expected = README
        .lines()
        .find(|l| l.starts_with("switchyard.toml:") && l.contains("max-in-flight"))
        .expect("the README's example error");
    let good = std::fs::read_to_string(cwd.join("switchyard.toml")).unwrap();
    let bad = good.replace("max-in-flight = 8", "max-in-flight = \"8\"");
    std::fs::write(cwd.join("switchyard.toml"), bad).unwrap();
    let out = switchyard_command(
        &cwd,
        &["check".into(), "--config".into(), "switchyard.toml".into()],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(expected),
        "expected `{expected}` in:\n{stderr}"
    );
    // The running proxy saw the same file: it kept its config, and /status says why.
    let status = wait_status(p.admin, "the refused config", |s| {
        !s["plugins"][0]["last_reload_error"].is_null()
    })
    .await;
    let error = status["plugins"][0]["last_reload_error"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("config.max-in-flight: invalid type"),
        "{error}"
    );
    let reloads_ok = || async {
        let metrics = get(&client(), &format!("http://{}/metrics", p.admin))
            .await
            .2;
        String::from_utf8_lossy(&metrics)
            .lines()
            .find(|l| l.starts_with("switchyard_config_reloads_total{kind=\"ok\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = reloads_ok().await;
    std::fs::write(cwd.join("switchyard.toml"), good).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while reloads_ok().await == before {
        assert!(
            Instant::now() < deadline,
            "the good config was not reloaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A version that fails to load is refused; the running one stays and /status says why.
    let wasm = cwd.join("target/wasm32-wasip2/release/tenant_router.wasm");
    let running = plugin_status(p.admin, "tenant-router").await["digest"].clone();
    let broken = cwd.join("broken.wasm");
    std::fs::write(&broken, b"\0asm not a component").unwrap();
    std::fs::rename(&broken, &wasm).unwrap();
    let status = wait_status(p.admin, "the refused version", |s| {
        s["plugins"][0]["reload_failures"] == 2
    })
    .await;
    let plugin = &status["plugins"][0];
    assert_eq!(plugin["digest"], running, "the running version stayed");
    assert!(
        plugin["last_reload_error"]["error"]
            .as_str()
            .unwrap()
            .contains("cannot compile"),
        "{plugin}"
    );
    let (code, backend, _) = get_with(
        &client(),
        &format!("http://{}/", p.web),
        Some(("x-tenant", "acme")),
    )
    .await;
    assert_eq!((code, backend.as_str()), (200, "b"));
    let metrics = String::from_utf8_lossy(
        &get(&client(), &format!("http://{}/metrics", p.admin))
            .await
            .2,
    )
    .into_owned();
    assert!(
        metrics.contains(
            "switchyard_plugin_reloads_total{plugin=\"tenant-router\",result=\"failed\"} 2"
        ),
        "{metrics}"
    );

    drop(p);
    let _ = std::fs::remove_dir_all(&root);
}

fn check_switchyard_output(args: &[String], out: &str) {
    match (args[0].as_str(), args.get(1).map(String::as_str)) {
        ("plugin", Some("new")) => assert!(out.contains("(routing plugin)"), "{out}"),
        ("plugin", Some("check")) => {
            assert!(out.contains("verdict: loads as routing"), "{out}");
            assert!(out.contains("init:    ok as routing"), "{out}");
            assert!(out.contains("reads header(s) x-tenant"), "{out}");
        }
        ("plugin", Some("run")) if args.contains(&"--samples".to_string()) => {
            assert!(
                out.contains("decision(s) as recorded, 0 different"),
                "{out}"
            );
        }
        ("plugin", Some("run")) => {
            // Backend 1 is acme's, but full: the request spills over to 0.
            assert!(
                out.contains("#1 GET / [x-tenant: acme] over 2 candidate(s) -> backend 0"),
                "{out}"
            );
        }
        ("plugin", Some("bench")) => {
            assert!(out.contains("20000 calls over 1 case(s)"), "{out}");
            assert!(out.contains("; 0 failed"), "{out}");
        }
        other => panic!("unexpected command {other:?}"),
    }
}

/// `curl -s [-H 'NAME: VALUE'] URL [| grep PATTERN]`: the body, filtered.
async fn curl(args: &[String]) -> String {
    let mut header = None;
    let mut url = None;
    let mut grep = None;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "-s" => {}
            "-H" => {
                i += 1;
                let (name, value) = args[i].split_once(':').unwrap();
                header = Some((name.trim().to_string(), value.trim().to_string()));
            }
            "|" => {
                assert_eq!(args[i + 1], "grep");
                grep = Some(args[i + 2].clone());
                break;
            }
            other => url = Some(other.to_string()),
        }
        i += 1;
    }
    let url = url.expect("a URL");
    let header = header.as_ref().map(|(n, v)| (n.as_str(), v.as_str()));
    let (code, backend, body) = get_with(&client(), &url, header).await;
    assert_eq!(code, 200, "{url}");
    let body = String::from_utf8_lossy(&body).into_owned();
    let body = if backend.is_empty() {
        body
    } else {
        format!("{backend}\n{body}")
    };
    match grep {
        Some(pattern) => body
            .lines()
            .filter(|l| l.contains(&pattern))
            .collect::<Vec<_>>()
            .join("\n"),
        None => body,
    }
}

fn check_curl_output(p: &Background, args: &[String], out: &str, configs_written: usize) {
    let url = args.iter().find(|a| a.starts_with("http://")).unwrap();
    if url.starts_with(&format!("http://{}/", p.web)) {
        // In shadow (first config) the native least-request balancer decides; live,
        // acme goes to its own backend, `b`.
        let backend = out.lines().next().unwrap_or("");
        if configs_written == 2 {
            assert_eq!(backend, "b", "{out}");
        } else {
            assert!(backend == "a" || backend == "b", "{out}");
        }
    } else if url.ends_with("/metrics") {
        assert!(
            out.contains(
                "switchyard_plugin_shadow_decisions_total{pool=\"app\",plugin=\"tenant-router\""
            ),
            "{out}"
        );
    } else if url.ends_with("/samples") {
        let samples: serde_json::Value = serde_json::from_str(out).unwrap();
        let first = &samples["samples"][0];
        assert_eq!(first["kind"], "shadow", "{samples}");
        assert_eq!(
            first["request"]["headers"],
            serde_json::json!([{ "name": "x-tenant", "value": "acme" }]),
            "{samples}"
        );
        assert_eq!(
            first["decision"],
            serde_json::json!({ "backend": 1 }),
            "{samples}"
        );
    } else if url.ends_with("/status") {
        let status: serde_json::Value = serde_json::from_str(out).unwrap();
        assert_eq!(status["pools"][0]["backends"][1]["index"], 1);
        assert!(
            status["plugins"][0]["last_reload_error"].is_null(),
            "{status}"
        );
    } else {
        panic!("unexpected URL {url}");
    }
}

/// A backend whose only healthy answer is to `GET /from-plugin` carrying
/// `x-probe-pool: checked`: it is up only if the health plugin chose the probe.
async fn probe_checking_backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                    let pool = req
                        .headers()
                        .get("x-probe-pool")
                        .and_then(|v| v.to_str().ok());
                    let status = match (req.uri().path(), pool) {
                        ("/from-plugin", Some("checked")) => 200,
                        ("/from-plugin", _) => 400,
                        _ => 404,
                    };
                    let mut response = Response::new(Full::new(Bytes::from_static(b"probe")));
                    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

/// A health-check and a recovery plugin, each made by `plugin new`, built as an
/// author would (`cargo test`, `cargo build --release`) outside the repository, and
/// doing their jobs in a running proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaffolded_health_and_recovery_plugins_build_test_and_load() {
    let root = temp_dir("scaffold-kinds");
    let mut built = Vec::new();
    for (name, kind) in [("sdk-health", "health-check"), ("sdk-breaker", "recovery")] {
        let args: Vec<String> = ["plugin", "new", name, "--kind", kind]
            .iter()
            .map(|s| s.to_string())
            .collect();
        succeed("plugin new", switchyard_command(&root, &args)).await;
        let dir = root.join(name);
        share_target_dir(&dir);
        let tests = succeed("cargo test", cargo_command(&dir, &["test"])).await;
        assert!(tests.contains("test result: ok. 2 passed"), "{tests}");
        succeed(
            "cargo build --release",
            cargo_command(&dir, &["build", "--release"]),
        )
        .await;
        let wasm = dir
            .join("target/wasm32-wasip2/release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        assert!(wasm.is_file(), "{}", wasm.display());
        built.push(wasm);
    }

    let checked = probe_checking_backend().await;
    let good = TestBackend::start("good").await;
    let bad = TestBackend::start("bad").await;
    bad.set_mode(Mode::Status(500));
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"probed\"\nlistener = \"web\"\npath_prefix = \"/probed\"\npool = \"checked\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
         [pool.checked]\nbackends = [{{ address = \"{checked}\" }}]\n\
         [pool.checked.health]\npath = \"/configured\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nrise = 1\nfall = 1\n\
         evaluate = \"plugin:sdk-health\"\n\
         [pool.app]\nbackends = [{{ address = \"{}\" }}, {{ address = \"{}\" }}]\n\
         [pool.app.breaker]\npolicy = \"plugin:sdk-breaker\"\n[pool.app.retry]\nattempts = 0\n\
         [plugin.sdk-health]\nkind = \"health-check\"\npath = '{}'\ntimeout = \"100ms\"\n\
         config = {{ path = \"/from-plugin\" }}\n\
         [plugin.sdk-breaker]\nkind = \"recovery\"\npath = '{}'\ntimeout = \"50ms\"\n\
         config = {{ failures = 2, open-ms = 60000 }}\n",
        good.addr,
        bad.addr,
        built[0].display(),
        built[1].display(),
    );
    let proxy = start_proxy(&config).await;

    // The health plugin chose the probe (path and header): the backend answers it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = status(&proxy).await;
        let checked = s["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "checked")
            .unwrap()["backends"][0]
            .clone();
        if checked["health"] == "up" {
            assert_eq!(checked["last_check"]["result"], "ok");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the probe-request probe never passed: {checked}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health_plugin = status(&proxy).await["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "sdk-health")
        .unwrap()
        .clone();
    assert_eq!(health_plugin["kind"], "health-check");
    assert_eq!(health_plugin["probe_request"], true);

    // The breaker plugin ejects the failing backend after two failures in a row.
    let c = client();
    for _ in 0..10 {
        get(&c, &format!("http://{}/", proxy.web)).await;
    }
    assert_eq!(
        bad.hits(),
        2,
        "the breaker opened after 2 failures in a row"
    );
    for _ in 0..10 {
        let (code, backend, _) = get(&c, &format!("http://{}/", proxy.web)).await;
        assert_eq!((code, backend.as_str()), (200, "good"));
    }
    assert_eq!(bad.hits(), 2, "no request reaches the ejected backend");
    let _ = std::fs::remove_dir_all(&root);
}
