//! Sticky sessions by cookie: clients keep the backend that first served them, a
//! drained backend's clients move once and stay on their new backend, and the cookie
//! composes with weights and with a split's own stickiness.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use parking_lot::Mutex;
use support::*;

/// One answer as a sticky client saw it.
#[derive(Debug, Clone)]
struct Seen {
    status: u16,
    backend: String,
    /// The cookie value the answer set, if it set one.
    set: Option<String>,
    /// Whether the request started after the drain had been applied.
    after_drain: bool,
}

/// What one client saw, by client number.
type ClientLog = (usize, Vec<Seen>);

/// A client with a one-cookie jar, as a browser would keep it.
struct StickyClient {
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    url: String,
    user: Option<String>,
    jar: Option<String>,
    seen: Vec<Seen>,
}

impl StickyClient {
    fn new(url: &str, user: Option<String>) -> Self {
        Self {
            http: client(),
            url: url.to_string(),
            user,
            jar: None,
            seen: Vec::new(),
        }
    }

    async fn get(&mut self, after_drain: bool) -> &Seen {
        let mut request = Request::get(&self.url);
        if let Some(value) = &self.jar {
            request = request.header("cookie", format!("theme=dark; sy_srv={value}"));
        }
        if let Some(user) = &self.user {
            request = request.header("x-user", user);
        }
        let response = self
            .http
            .request(request.body(Full::new(Bytes::new())).unwrap())
            .await
            .expect("the proxy answers");
        let status = response.status().as_u16();
        let backend = response
            .headers()
            .get("x-backend")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let set = response
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_string())
            .map(|v| {
                assert!(v.contains("; Path=/; HttpOnly; SameSite=Lax"), "{v}");
                let value = v
                    .strip_prefix("sy_srv=")
                    .unwrap()
                    .split(';')
                    .next()
                    .unwrap();
                value.to_string()
            });
        let _ = response.into_body().collect().await;
        if let Some(value) = &set {
            self.jar = Some(value.clone());
        }
        self.seen.push(Seen {
            status,
            backend,
            set,
            after_drain,
        });
        self.seen.last().unwrap()
    }

    /// The backends that answered, in order, with repeats collapsed.
    fn runs(&self) -> Vec<String> {
        let mut runs: Vec<String> = Vec::new();
        for s in &self.seen {
            if runs.last() != Some(&s.backend) {
                runs.push(s.backend.clone());
            }
        }
        runs
    }
}

fn sticky_config(pools: &[(&str, &[(&TestBackend, u32)])], balance: &str, route: &str) -> String {
    let mut text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"{route}\"\n"
    );
    for (name, backends) in pools {
        let list: Vec<String> = backends
            .iter()
            .map(|(b, w)| format!("{{ address = \"{}\", weight = {w} }}", b.addr))
            .collect();
        text.push_str(&format!(
            "[pool.{name}]\nbalance = \"{balance}\"\nbackends = [{}]\n[pool.{name}.sticky]\ncookie = \"sy_srv\"\n",
            list.join(", ")
        ));
    }
    text
}

async fn backends(names: &[&str]) -> Vec<TestBackend> {
    let mut out = Vec::new();
    for name in names {
        out.push(TestBackend::start(name).await);
    }
    out
}

/// Runs `rounds` requests on each client, all clients at once.
async fn run_all(clients: Vec<StickyClient>, rounds: usize) -> Vec<StickyClient> {
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                for _ in 0..rounds {
                    c.get(false).await;
                }
                c
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_keep_their_backend_and_a_drain_moves_only_its_clients() {
    let b = backends(&["a", "b", "c"]).await;
    let config = sticky_config(
        &[("app", &[(&b[0], 1), (&b[1], 1), (&b[2], 1)])],
        "round-robin",
        "app",
    );
    let proxy = start_proxy(&config).await;
    let url = format!("http://{}/", proxy.web);
    let clients: Vec<StickyClient> = (0..50).map(|_| StickyClient::new(&url, None)).collect();
    let clients = run_all(clients, 20).await;

    let mut first_backend = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        assert!(
            c.seen.iter().all(|s| s.status == 200),
            "client {i}: {:?}",
            c.seen
        );
        assert_eq!(
            c.runs().len(),
            1,
            "client {i} kept one backend: {:?}",
            c.runs()
        );
        assert!(c.seen[0].set.is_some(), "the first answer sets the cookie");
        assert!(
            c.seen[1..].iter().all(|s| s.set.is_none()),
            "client {i}: the cookie is set once"
        );
        first_backend.push(c.seen[0].backend.clone());
    }
    for name in ["a", "b", "c"] {
        assert!(
            first_backend.iter().any(|f| f == name),
            "the balancer spread the 50 clients: {first_backend:?}"
        );
    }

    let (code, answer) = admin_call(
        &proxy,
        "POST",
        "/pools/app/backends/{a}/drain"
            .replace("{a}", &b[0].addr.to_string())
            .as_str(),
        "",
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    let before: Vec<usize> = clients.iter().map(|c| c.seen.len()).collect();
    let clients = run_all(clients, 20).await;
    let mut moved = 0;
    for (i, c) in clients.iter().enumerate() {
        let after = &c.seen[before[i]..];
        assert!(
            after.iter().all(|s| s.status == 200),
            "client {i}: {after:?}"
        );
        let new_backend = &after[0].backend;
        assert!(
            after.iter().all(|s| &s.backend == new_backend),
            "client {i} stays on one backend after the drain: {:?}",
            c.runs()
        );
        if first_backend[i] == "a" {
            moved += 1;
            assert_ne!(new_backend, "a", "client {i} left the drained backend");
            assert!(after[0].set.is_some(), "client {i} got a new cookie");
            assert!(
                after[1..].iter().all(|s| s.set.is_none()),
                "client {i}: once"
            );
        } else {
            assert_eq!(new_backend, &first_backend[i], "client {i} was not moved");
            assert!(
                after.iter().all(|s| s.set.is_none()),
                "client {i}: no new cookie"
            );
        }
    }
    assert!(moved > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_a_drain_moves_its_clients_once_and_they_stay() {
    let b = backends(&["a", "b", "c"]).await;
    let config = sticky_config(
        &[("app", &[(&b[0], 1), (&b[1], 1), (&b[2], 1)])],
        "round-robin",
        "app",
    );
    let proxy = start_proxy(&config).await;
    let url = format!("http://{}/", proxy.web);
    let drained = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let progress: Arc<Vec<AtomicUsize>> = Arc::new((0..50).map(|_| AtomicUsize::new(0)).collect());
    let after: Arc<Vec<AtomicUsize>> = Arc::new((0..50).map(|_| AtomicUsize::new(0)).collect());
    let results: Arc<Mutex<Vec<ClientLog>>> = Arc::default();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (url, drained, stop, progress, after, results) = (
                url.clone(),
                drained.clone(),
                stop.clone(),
                progress.clone(),
                after.clone(),
                results.clone(),
            );
            tokio::spawn(async move {
                let mut c = StickyClient::new(&url, None);
                while !stop.load(Ordering::Acquire) {
                    let after_drain = drained.load(Ordering::Acquire);
                    c.get(after_drain).await;
                    progress[i].fetch_add(1, Ordering::Release);
                    if after_drain {
                        after[i].fetch_add(1, Ordering::Release);
                    }
                }
                results.lock().push((i, c.seen));
            })
        })
        .collect();
    wait_for(
        "every client to finish 10 requests",
        Duration::from_secs(30),
        async || progress.iter().all(|p| p.load(Ordering::Acquire) >= 10),
    )
    .await;
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        &format!("/pools/app/backends/{}/drain", b[0].addr),
        "",
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    drained.store(true, Ordering::Release);
    wait_for(
        "every client to finish 10 requests started after the drain",
        Duration::from_secs(30),
        async || after.iter().all(|p| p.load(Ordering::Acquire) >= 10),
    )
    .await;
    stop.store(true, Ordering::Release);
    for t in tasks {
        t.await.unwrap();
    }

    let results = results.lock();
    let mut moved = 0;
    for (i, seen) in results.iter() {
        assert!(seen.iter().all(|s| s.status == 200), "client {i}: an error");
        let first = &seen[0].backend;
        let changes: Vec<usize> = (1..seen.len())
            .filter(|&k| seen[k].backend != seen[k - 1].backend)
            .collect();
        assert!(
            seen.iter()
                .filter(|s| s.after_drain)
                .all(|s| s.backend != "a"),
            "client {i}: no request started after the drain reached it"
        );
        if first == "a" {
            moved += 1;
            assert_eq!(changes.len(), 1, "client {i} moved once: {changes:?}");
            let k = changes[0];
            assert!(
                seen[k].set.is_some(),
                "client {i}: the move sets a new cookie"
            );
            assert!(
                seen[k + 1..]
                    .iter()
                    .all(|s| s.set.is_none() && s.backend == seen[k].backend),
                "client {i} stays on its new backend"
            );
        } else {
            assert!(changes.is_empty(), "client {i} was not moved: {changes:?}");
            assert!(seen[1..].iter().all(|s| s.set.is_none()), "client {i}");
        }
    }
    assert_eq!(results.len(), 50);
    assert!(moved > 0, "some clients were on the drained backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_pick_new_sessions_and_the_split_picks_the_pool() {
    let b = backends(&["b1", "b2", "g1", "g2"]).await;
    let config = sticky_config(
        &[
            ("blue", &[(&b[0], 3), (&b[1], 1)]),
            ("green", &[(&b[2], 1), (&b[3], 1)]),
        ],
        "weighted",
        "blue",
    );
    let proxy = start_proxy(&config).await;
    let url = format!("http://{}/", proxy.web);

    // New sessions follow the weights: first requests one at a time, 3 to 1.
    let mut clients = Vec::new();
    for _ in 0..40 {
        let mut c = StickyClient::new(&url, None);
        c.get(false).await;
        clients.push(c);
    }
    let on = |name: &str, clients: &[StickyClient]| {
        clients.iter().filter(|c| c.seen[0].backend == name).count()
    };
    assert_eq!((on("b1", &clients), on("b2", &clients)), (30, 10));
    let clients = run_all(clients, 5).await;
    assert!(
        clients.iter().all(|c| c.runs().len() == 1),
        "each kept its backend"
    );

    // A split keyed on x-user picks the pool; the cookie picks the backend in it.
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        "/routes/all/split",
        r#"{"pools": {"blue": 50, "green": 50}, "sticky": "header:x-user"}"#,
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    let users: Vec<StickyClient> = (0..20)
        .map(|i| StickyClient::new(&url, Some(format!("user-{i}"))))
        .collect();
    let users = run_all(users, 10).await;
    for (i, c) in users.iter().enumerate() {
        assert!(c.seen.iter().all(|s| s.status == 200));
        assert_eq!(
            c.runs().len(),
            1,
            "user {i} kept one backend: {:?}",
            c.runs()
        );
        assert_eq!(
            c.seen.iter().filter(|s| s.set.is_some()).count(),
            1,
            "user {i}: one cookie"
        );
    }
    let sides: Vec<bool> = users
        .iter()
        .map(|c| c.seen[0].backend.starts_with('g'))
        .collect();
    assert!(
        sides.contains(&true) && sides.contains(&false),
        "both pools have users"
    );
}
