//! The `switchyard` command: run from a config file, check a file, or run the demo.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use switchyard::config::Config;
use switchyard::server::{Server, ServerOptions};
use switchyard::{admin, demo, reload};
use tracing::{info, warn};

#[derive(Parser, Debug)]
#[command(
    name = "switchyard",
    version,
    about = "A reverse proxy that keeps services up"
)]
struct Cli {
    /// Config file to run (TOML).
    #[arg(long, short, global = true, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Log filter, e.g. `info` or `switchyard=debug`.
    #[arg(long, default_value = "info", global = true, env = "SWITCHYARD_LOG")]
    log_level: String,
    /// Worker threads (default: one per core).
    #[arg(long, global = true)]
    workers: Option<usize>,
    /// Do not write one access-log line per request.
    #[arg(long, global = true)]
    no_access_log: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a config file and exit (non-zero on error), like `nginx -t`.
    Check,
    /// Inspect WebAssembly policy plugins.
    Plugin {
        #[command(subcommand)]
        action: PluginAction,
    },
    /// Talk to a running proxy's admin API.
    Ctl {
        /// Admin address (host:port). A host name other than `localhost` must be in the
        /// proxy's `admin.allowed_hosts`.
        #[arg(long, default_value = "127.0.0.1:9901", env = "SWITCHYARD_ADMIN")]
        admin: String,
        /// Bearer token for the admin API.
        #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN")]
        token: Option<String>,
        /// Print the raw JSON answer.
        #[arg(long)]
        json: bool,
        /// In a fleet: refuse the change (409) if what it touches changed after this
        /// etcd revision (the `revision` of `GET /cluster` or of an earlier answer).
        #[arg(long)]
        if_revision: Option<i64>,
        #[command(subcommand)]
        action: CtlAction,
    },
    /// Work with a fleet of instances coordinated through etcd (`[cluster]`).
    Cluster {
        /// etcd client URL (repeat for several members); default: `[cluster] etcd`
        /// of --config.
        #[arg(long = "etcd", global = true)]
        etcd: Vec<String>,
        /// The fleet's key prefix; default: `[cluster] prefix` of --config.
        #[arg(long, global = true)]
        prefix: Option<String>,
        #[command(subcommand)]
        action: ClusterAction,
    },
    /// Start three demo backends (one flaky) and front them with an embedded config.
    Demo {
        /// Traffic listener address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Admin listener address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
    },
}

#[derive(Subcommand, Debug)]
enum CtlAction {
    /// Pools, backends and routes as tables.
    Status,
    /// Stop sending new requests to a backend; in-flight ones finish.
    Drain { pool: String, backend: String },
    /// Put a backend back into rotation.
    Enable { pool: String, backend: String },
    /// Take a backend out of rotation at once.
    Disable { pool: String, backend: String },
    /// Set a backend's weight.
    Weight {
        pool: String,
        backend: String,
        weight: u32,
    },
    /// Move a route to another pool (blue/green). Refused when the pool has no
    /// usable backend, unless `--force`.
    Switch {
        route: String,
        pool: String,
        /// Switch even though the pool has no usable backend right now.
        #[arg(long)]
        force: bool,
    },
    /// Split a route across pools by percentage (adding up to 100), e.g. `blue=90 green=10`. Refused when a pool
    /// given a share has no usable backend, unless `--force`.
    Split {
        route: String,
        #[arg(required = true)]
        pools: Vec<String>,
        /// Keep each client on one side: `header:NAME` or `cookie:NAME`.
        #[arg(long)]
        sticky: Option<String>,
        /// Split even though a pool has no usable backend right now.
        #[arg(long)]
        force: bool,
    },
    /// Reload the config file.
    Reload,
    /// Move a route to another pool in guarded steps, or stop a running rollout.
    Rollout {
        route: String,
        /// The pool to roll out to.
        #[arg(long, required_unless_present = "abort")]
        to: Option<String>,
        /// Percentages of traffic on the new pool, e.g. `5,25,50,100`.
        #[arg(long)]
        steps: Option<String>,
        /// How long each step is held, e.g. `10s`.
        #[arg(long)]
        interval: Option<String>,
        /// Stop the running rollout and send the route back to its old pool.
        #[arg(long, conflicts_with_all = ["to", "steps", "interval", "force"])]
        abort: bool,
        /// Start even though the new pool has no usable backend right now.
        #[arg(long)]
        force: bool,
    },
    /// Add a backend to a pool at run time.
    AddBackend {
        pool: String,
        address: String,
        #[arg(long, default_value_t = 1)]
        weight: u32,
    },
    /// Drain a backend, then remove it from its pool.
    RemoveBackend { pool: String, backend: String },
}

#[derive(Subcommand, Debug)]
enum ClusterAction {
    /// Validate a config like `check`, then store it and its plugins (by digest)
    /// for every instance with `cluster.shared_config = true`.
    Push { file: PathBuf },
    /// Which instance runs which config revision; exits 1 unless every instance
    /// runs the current shared config.
    Status {
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum PluginAction {
    /// Report which world a component implements and whether it would load.
    Check { file: PathBuf },
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Check) = cli.command {
        return check(cli.config.as_deref());
    }
    if let Some(Command::Plugin {
        action: PluginAction::Check { file },
    }) = &cli.command
    {
        return plugin_check(file);
    }
    if let Some(Command::Cluster {
        etcd,
        prefix,
        action,
    }) = &cli.command
    {
        return cluster(cli.config.as_deref(), etcd, prefix.as_deref(), action);
    }
    if let Some(Command::Ctl {
        admin,
        token,
        json,
        if_revision,
        action,
    }) = cli.command
    {
        return ctl(&admin, token.as_deref(), json, if_revision, action);
    }
    init_logging(cli.log_format, &cli.log_level);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(workers) = cli.workers {
        runtime.worker_threads(workers.max(1));
    }
    let result = runtime
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check(path: Option<&Path>) -> ExitCode {
    let Some(path) = path else {
        eprintln!("switchyard check: --config FILE is required");
        return ExitCode::from(2);
    };
    match Config::load(path) {
        Ok(config) => {
            if !check_plugins(&config) {
                return ExitCode::FAILURE;
            }
            println!(
                "{}: ok ({} listener(s), {} route(s), {} pool(s), {} plugin(s))",
                path.display(),
                config.listeners.len(),
                config.routes.len(),
                config.pools.len(),
                config.plugins.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Loads every plugin of the config once (compile, link, `init`), as a start or a
/// reload would, and reports each failure.
fn check_plugins(config: &Config) -> bool {
    if config.plugins.is_empty() {
        return true;
    }
    let runtime = match switchyard::plugin::PluginRuntime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the plugin runtime: {e}");
            return false;
        }
    };
    let mut ok = true;
    for plugin in config.plugins.values() {
        if let Err(e) = runtime.load(&plugin.spec) {
            eprintln!(
                "{}: plugin.{}: {} does not load: {e}",
                config.source.display(),
                plugin.spec.name,
                plugin.spec.path.display()
            );
            ok = false;
        }
    }
    ok
}

/// `switchyard cluster ...`: talks to the fleet's etcd directly.
fn cluster(
    config: Option<&Path>,
    etcd: &[String],
    prefix: Option<&str>,
    action: &ClusterAction,
) -> ExitCode {
    use switchyard::cluster::{Etcd, cli, keys::Keys, shared_config};
    let pushed = match action {
        ClusterAction::Push { file } => {
            // Exactly what `check` does, before anything is stored.
            let loaded = match Config::load(file) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            if !check_plugins(&loaded) {
                return ExitCode::FAILURE;
            }
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    return ExitCode::FAILURE;
                }
            };
            Some((loaded, text))
        }
        ClusterAction::Status { .. } => None,
    };
    // Where the fleet is: --config's [cluster] (or the pushed file's), then flags.
    let from_file = match config {
        Some(path) => match Config::load(path) {
            Ok(c) => c.cluster,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        None => pushed.as_ref().and_then(|(c, _)| c.cluster.clone()),
    };
    let mut settings = match (from_file, etcd.is_empty()) {
        (Some(settings), _) => settings,
        (None, false) => switchyard::config::ClusterConfig::for_tools(
            Vec::new(),
            switchyard::config::DEFAULT_PREFIX,
        ),
        (None, true) => {
            eprintln!(
                "switchyard cluster: no etcd to talk to: pass --etcd URL, or --config FILE with a [cluster] table"
            );
            return ExitCode::from(2);
        }
    };
    if !etcd.is_empty() {
        match etcd
            .iter()
            .map(|u| switchyard::config::etcd_endpoint(u))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(urls) => settings.etcd = urls,
            Err(e) => {
                eprintln!("switchyard cluster: --etcd: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(prefix) = prefix {
        if !prefix.starts_with('/') || prefix.len() < 2 {
            eprintln!("switchyard cluster: --prefix must start with `/`, e.g. /switchyard/prod");
            return ExitCode::from(2);
        }
        settings.prefix = prefix.trim_end_matches('/').to_string();
    }
    let client = match Etcd::new(&settings) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("switchyard cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    let keys = Keys::new(&settings.prefix);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard cluster: {e}");
            return ExitCode::FAILURE;
        }
    };
    match (action, pushed) {
        (ClusterAction::Push { file }, Some((loaded, text))) => {
            match runtime.block_on(shared_config::push(&client, &keys, &loaded, &text)) {
                Ok(revision) => {
                    println!(
                        "{}: pushed to {} as revision {revision} ({} plugin(s)); instances with cluster.shared_config = true apply it now (`switchyard cluster status` shows who runs it)",
                        file.display(),
                        settings.prefix,
                        loaded.plugins.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("switchyard cluster push: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        (ClusterAction::Status { json }, _) => {
            match runtime.block_on(cli::status(&client, &keys)) {
                Ok(status) => {
                    if *json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&status).unwrap_or_default()
                        );
                    } else {
                        print!("{}", cli::render_status(&status));
                    }
                    if cli::converged(&status) {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("switchyard cluster status: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        (ClusterAction::Push { .. }, None) => ExitCode::FAILURE,
    }
}

fn plugin_check(file: &Path) -> ExitCode {
    match switchyard::plugin::inspect(file) {
        Ok(info) => {
            println!("{info}");
            if info.loadable_as().is_empty() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

fn ctl(
    admin: &str,
    token: Option<&str>,
    json: bool,
    if_revision: Option<i64>,
    action: CtlAction,
) -> ExitCode {
    use http::Method;
    use switchyard::ctl::{Call, render_status, send_if};
    let backend_path =
        |pool: &str, backend: &str, verb: &str| format!("/pools/{pool}/backends/{backend}/{verb}");
    let call = match &action {
        CtlAction::Status => Call {
            method: Method::GET,
            path: "/status".into(),
            body: None,
        },
        CtlAction::Drain { pool, backend } => Call {
            method: Method::POST,
            path: backend_path(pool, backend, "drain"),
            body: None,
        },
        CtlAction::Enable { pool, backend } => Call {
            method: Method::POST,
            path: backend_path(pool, backend, "enable"),
            body: None,
        },
        CtlAction::Disable { pool, backend } => Call {
            method: Method::POST,
            path: backend_path(pool, backend, "disable"),
            body: None,
        },
        CtlAction::Weight {
            pool,
            backend,
            weight,
        } => Call {
            method: Method::POST,
            path: backend_path(pool, backend, "weight"),
            body: Some(serde_json::json!({ "weight": weight })),
        },
        CtlAction::Switch { route, pool, force } => Call {
            method: Method::POST,
            path: format!("/routes/{route}/switch"),
            body: Some(serde_json::json!({ "pool": pool, "force": force })),
        },
        CtlAction::Split {
            route,
            pools,
            sticky,
            force,
        } => {
            let mut split = serde_json::Map::new();
            for item in pools {
                let Some((pool, weight)) = item
                    .split_once('=')
                    .and_then(|(p, w)| Some((p, w.parse::<u32>().ok()?)))
                else {
                    eprintln!("switchyard ctl: `{item}` is not POOL=WEIGHT (e.g. green=10)");
                    return ExitCode::from(2);
                };
                split.insert(pool.to_string(), weight.into());
            }
            Call {
                method: Method::POST,
                path: format!("/routes/{route}/split"),
                body: Some(serde_json::json!({ "pools": split, "sticky": sticky, "force": force })),
            }
        }
        CtlAction::Reload => Call {
            method: Method::POST,
            path: "/reload".into(),
            body: None,
        },
        CtlAction::Rollout {
            route,
            to,
            steps,
            interval,
            abort,
            force,
        } => match switchyard::ctl::rollout_call(
            route,
            to.as_deref(),
            steps.as_deref(),
            interval.as_deref(),
            *abort,
            *force,
        ) {
            Ok(call) => call,
            Err(e) => {
                eprintln!("switchyard ctl: {e}");
                return ExitCode::from(2);
            }
        },
        CtlAction::AddBackend {
            pool,
            address,
            weight,
        } => switchyard::ctl::add_backend_call(pool, address, *weight),
        CtlAction::RemoveBackend { pool, backend } => {
            switchyard::ctl::remove_backend_call(pool, backend)
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard ctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(send_if(admin, token, &call, if_revision)) {
        Ok(value) if json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(value) => {
            match action {
                CtlAction::Status => print!("{}", render_status(&value)),
                _ => println!("{}", serde_json::to_string(&value).unwrap_or_default()),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let options = ServerOptions {
        access_log: !cli.no_access_log,
    };
    let (config, watched) = match cli.command {
        Some(Command::Demo { listen, admin }) => {
            let config = demo::prepare(listen, admin)
                .await
                .context("cannot start the demo backends")?
                .context("the embedded demo config is invalid")?;
            (config, None)
        }
        _ => {
            let path = cli
                .config
                .clone()
                .context("no config: pass --config FILE, or run `switchyard demo`")?;
            let config = Config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
            (config, Some(path))
        }
    };
    let admin_listen = config.admin.listen;
    let drain = config.limits.drain_timeout;
    let listeners: Vec<(String, SocketAddr)> = config
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.listen))
        .collect();
    let server = Server::start(config, options).await?;
    if let Some(path) = &watched {
        server.set_config_path(path.clone());
    }
    let admin_address = admin::start(Arc::clone(&server), admin_listen)
        .with_context(|| format!("cannot start the admin listener on {admin_listen}"))?;
    let _watcher = match &watched {
        Some(path) => match reload::watch(Arc::clone(&server), path.clone()) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "cannot watch the config file; reload with SIGHUP instead");
                None
            }
        },
        None => None,
    };
    for (name, _) in &listeners {
        if let Some(address) = server.listener_address(name) {
            println!("switchyard: listener `{name}` on http://{address}/");
        }
    }
    println!("switchyard: admin on http://{admin_address}/status (also /metrics, /health/ready)");
    println!("switchyard: dashboard on http://{admin_address}/");

    wait_for_signals(&server, watched.as_deref()).await;
    info!(
        deadline_ms = drain.as_millis() as u64,
        "shutting down: draining in-flight requests"
    );
    server.shutdown(drain).await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signals(server: &Arc<Server>, config_path: Option<&Path>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
            _ = hup.recv() => match config_path {
                Some(path) => {
                    info!("SIGHUP: reloading the config");
                    let _ = reload::reload(server, path).await;
                }
                None => warn!("SIGHUP ignored: the demo has no config file to reload"),
            },
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signals(_server: &Arc<Server>, _config_path: Option<&Path>) {
    let _ = tokio::signal::ctrl_c().await;
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
