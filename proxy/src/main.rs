//! The `switchyard` command: run from a config file, check a file, run the demo,
//! drive a running proxy (`ctl`, `upgrade`), or print shell completions and the man
//! page.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use switchyard::config::Config;
use switchyard::logging;
use switchyard::server::{InheritedSocket, InheritedSockets, Server, ServerOptions, Takeover};
use switchyard::systemd;
use switchyard::upgrade::{self, Incoming};
use switchyard::{admin, demo, process, reload};
use tracing::{error, info, warn};

/// Signals, files and environment, for `--help` and the man page.
const AFTER_HELP: &str = "\
Signals:
  SIGHUP   reload the config file (a bad file is refused; the running config stays)
  SIGUSR2  hand over to a new process of this binary's path (zero-downtime upgrade)
  SIGTERM  stop accepting, finish in-flight requests within limits.drain_timeout, exit

Files:
  /etc/switchyard/switchyard.toml  the config installed by the package
  /var/lib/switchyard/             state directory under systemd (admin.state_file)

Environment:
  SWITCHYARD_CONFIG, SWITCHYARD_LOG, SWITCHYARD_ADMIN, SWITCHYARD_ADMIN_TOKEN
  NOTIFY_SOCKET, WATCHDOG_USEC, LISTEN_FDS, LISTEN_FDNAMES  set by systemd
  JOURNAL_STREAM  log lines for the journal (priority prefix, no timestamp)
  NO_COLOR        no colours even on a terminal";

#[derive(Parser, Debug)]
#[command(
    name = "switchyard",
    version = process::LONG_VERSION,
    about = "A reverse proxy that keeps services up",
    after_long_help = AFTER_HELP
)]
struct Cli {
    /// Config file to run (TOML).
    #[arg(long, short, global = true, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    /// Log format on stderr: `text`, or `json` (one object per line with `timestamp`,
    /// `level`, `target`, `message` and the event's fields).
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
        #[command(subcommand)]
        action: CtlAction,
    },
    /// Hand a running proxy over to a new process of its binary (after a package
    /// upgrade replaced it) without refusing a connection; the old process drains.
    Upgrade {
        /// Admin address (host:port) of the running proxy.
        #[arg(long, default_value = "127.0.0.1:9901", env = "SWITCHYARD_ADMIN")]
        admin: String,
        /// Bearer token for the admin API.
        #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN")]
        token: Option<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `switchyard man | man -l -`.
    Man,
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
    /// Move a route to another pool (blue/green).
    Switch { route: String, pool: String },
    /// Split a route across pools by percentage (adding up to 100), e.g. `blue=90 green=10`.
    Split {
        route: String,
        #[arg(required = true)]
        pools: Vec<String>,
        /// Keep each client on one side: `header:NAME` or `cookie:NAME`.
        #[arg(long)]
        sticky: Option<String>,
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
        #[arg(long, conflicts_with_all = ["to", "steps", "interval"])]
        abort: bool,
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
    match &cli.command {
        Some(Command::Completions { shell }) => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "switchyard",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Some(Command::Man) => return man_page(),
        Some(Command::Upgrade { admin, token }) => return upgrade_command(admin, token.as_deref()),
        _ => {}
    }
    if let Some(Command::Check) = cli.command {
        return check(cli.config.as_deref());
    }
    if let Some(Command::Plugin {
        action: PluginAction::Check { file },
    }) = &cli.command
    {
        return plugin_check(file);
    }
    if let Some(Command::Ctl {
        admin,
        token,
        json,
        action,
    }) = cli.command
    {
        return ctl(&admin, token.as_deref(), json, action);
    }
    // Inherited descriptors are claimed while the process has a single thread.
    let activated = match systemd::activation::take_listen_fds() {
        Ok(sockets) => sockets,
        Err(e) => {
            eprintln!("switchyard: {e}");
            return ExitCode::FAILURE;
        }
    };
    let incoming = match Incoming::receive_from_env() {
        Ok(incoming) => incoming,
        Err(e) => {
            eprintln!("switchyard: cannot take over from the running process: {e}");
            return ExitCode::FAILURE;
        }
    };
    logging::init(
        match cli.log_format {
            LogFormat::Text => logging::LogFormat::Text,
            LogFormat::Json => logging::LogFormat::Json,
        },
        &cli.log_level,
    );
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(workers) = cli.workers {
        runtime.worker_threads(workers.max(1));
    }
    let result = runtime
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(run(cli, activated, incoming)));
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

fn ctl(admin: &str, token: Option<&str>, json: bool, action: CtlAction) -> ExitCode {
    use http::Method;
    use switchyard::ctl::{Call, render_status, send};
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
        CtlAction::Switch { route, pool } => Call {
            method: Method::POST,
            path: format!("/routes/{route}/switch"),
            body: Some(serde_json::json!({ "pool": pool })),
        },
        CtlAction::Split {
            route,
            pools,
            sticky,
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
                body: Some(serde_json::json!({ "pools": split, "sticky": sticky })),
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
        } => match switchyard::ctl::rollout_call(
            route,
            to.as_deref(),
            steps.as_deref(),
            interval.as_deref(),
            *abort,
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
    match runtime.block_on(send(admin, token, &call)) {
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

async fn run(cli: Cli, activated: Vec<InheritedSocket>, incoming: Option<Incoming>) -> Result<()> {
    process::mark_started();
    let mut signals = Signals::install().context("cannot install the signal handlers")?;
    let (takeover, mut link) = match incoming {
        Some(incoming) => {
            let (takeover, lineage, link) = incoming.link()?;
            process::set_lineage(lineage);
            info!(from = ?lineage.previous_pid, generation = lineage.generation,
                "taking over from the running process");
            (takeover, Some(link))
        }
        None => (
            Takeover {
                sockets: Arc::new(InheritedSockets::new(activated)),
                ..Takeover::default()
            },
            None,
        ),
    };
    let started = start(cli, takeover).await;
    let (server, watched, admin_listen, drain) = match started {
        Ok(started) => started,
        Err(e) => {
            if let Some(link) = link.as_mut() {
                link.failed(&format!("{e:#}")).await;
            }
            return Err(e);
        }
    };
    if let Some(link) = link.as_mut() {
        // Serving on the shared sockets already: a lost old process must not take
        // this one down too, so a failure here is logged and serving goes on.
        match link.ready().await {
            Ok(state) => {
                server.restore_runtime(&state).await;
                server.save_state();
            }
            Err(e) => warn!(error = %e, "no final state from the old process; serving without it"),
        }
    }
    let admin_address = admin::start(Arc::clone(&server), admin_listen)
        .with_context(|| format!("cannot start the admin listener on {admin_listen}"))?;
    server.inherited_sockets().close_unused();
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
    let snapshot = server.snapshot();
    for l in &snapshot.config.listeners {
        if let Some(address) = server.listener_address(&l.name) {
            println!("switchyard: listener `{}` on http://{address}/", l.name);
        }
    }
    println!("switchyard: admin on http://{admin_address}/status (also /metrics, /health/ready)");
    println!("switchyard: dashboard on http://{admin_address}/");
    if let Some(mut link) = link {
        match link.serving().await {
            Ok(()) => info!(
                pid = std::process::id(),
                "upgrade complete: this process serves"
            ),
            Err(e) => {
                warn!(error = %e, "the old process did not confirm the handover; serving anyway")
            }
        }
    }
    {
        let server = Arc::clone(&server);
        tokio::spawn(async move {
            systemd::announce_ready(&server).await;
            systemd::supervise(server);
        });
    }

    let handed_over = wait_for_signals(&server, watched.as_deref(), &mut signals).await;
    if !handed_over {
        systemd::stopping();
    }
    info!(
        deadline_ms = drain.as_millis() as u64,
        "shutting down: draining in-flight requests"
    );
    server.shutdown(drain).await;
    if server.exit_requested().is_cancelled() && !server.handed_over() {
        anyhow::bail!("an upgrade failed after this process had stopped accepting");
    }
    Ok(())
}

/// Loads the config (or the demo) and starts the server on it: the server, the
/// config file to watch, the admin address and the drain deadline.
async fn start(
    cli: Cli,
    takeover: Takeover,
) -> Result<(
    Arc<Server>,
    Option<PathBuf>,
    SocketAddr,
    std::time::Duration,
)> {
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
    let server = Server::start_with(config, options, takeover).await?;
    if let Some(path) = &watched {
        server.set_config_path(path.clone());
    }
    Ok((server, watched, admin_listen, drain))
}

/// `switchyard man`: the man page, generated from the command-line definition
/// (`packaging/man/switchyard.1` is its output, checked by the tests).
fn man_page() -> ExitCode {
    // The version without the revision, so the page changes only with the release.
    let man = clap_mangen::Man::new(Cli::command().version(process::VERSION));
    match man.render(&mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard man: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `switchyard upgrade`: asks the running proxy to hand over to a new process and
/// reports which process serves now.
fn upgrade_command(admin: &str, token: Option<&str>) -> ExitCode {
    use switchyard::ctl::{Call, send};
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard upgrade: {e}");
            return ExitCode::FAILURE;
        }
    };
    let call = Call {
        method: http::Method::POST,
        path: "/upgrade".into(),
        body: Some(serde_json::json!({})),
    };
    match runtime.block_on(send(admin, token, &call)) {
        Ok(answer) => {
            println!(
                "switchyard: upgraded: pid {} now serves (pid {} drains and exits)",
                answer["pid"], answer["previous_pid"]
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard upgrade: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The signals the proxy answers. Installed before it prints or announces anything,
/// so a signal sent the moment it looks up is handled instead of killing it.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    upgrade: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
            upgrade: signal(SignalKind::user_defined2())?,
        })
    }
}

/// Serves signals until the proxy should stop: `true` when it handed over to a new
/// process (upgrade), `false` for SIGTERM/SIGINT (or a failed upgrade).
#[cfg(unix)]
async fn wait_for_signals(
    server: &Arc<Server>,
    config_path: Option<&Path>,
    signals: &mut Signals,
) -> bool {
    let exit = server.exit_requested();
    loop {
        tokio::select! {
            _ = signals.term.recv() => return false,
            _ = signals.interrupt.recv() => return false,
            () = exit.cancelled() => return server.handed_over(),
            _ = signals.hangup.recv() => match config_path {
                Some(path) => {
                    info!("SIGHUP: reloading the config");
                    let _ = reload::reload(server, path).await;
                }
                None => warn!("SIGHUP ignored: the demo has no config file to reload"),
            },
            _ = signals.upgrade.recv() => {
                info!("SIGUSR2: upgrading to a new process");
                let server = Arc::clone(server);
                tokio::spawn(async move {
                    match upgrade::upgrade(&server).await {
                        Ok(_) => server.request_exit(true),
                        Err(e) if e.is_fatal() => server.request_exit(false),
                        Err(e) => error!(error = %e, "upgrade failed"),
                    }
                });
            }
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals)
    }
}

#[cfg(not(unix))]
async fn wait_for_signals(
    server: &Arc<Server>,
    _config_path: Option<&Path>,
    _signals: &mut Signals,
) -> bool {
    let exit = server.exit_requested();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = exit.cancelled() => {}
    }
    server.handed_over()
}
