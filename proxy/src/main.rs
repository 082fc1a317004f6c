//! The `switchyard` command: run from a config file, check a file, run the demo,
//! drive a running proxy (`ctl`, `upgrade`), or print shell completions and the man
//! page.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use switchyard::config::Config;
use switchyard::logging;
use switchyard::server::{InheritedSocket, InheritedSockets, Server, ServerOptions, Takeover};
use switchyard::systemd;
use switchyard::upgrade::{self, Incoming};
use switchyard::{admin, demo, process, reload};
use tracing::{error, info, warn};

/// jemalloc instead of the system allocator: as fast here, and it gives memory freed
/// after a burst back to the system (a background thread purges pages unused for a
/// second; see `.cargo/config.toml`), where glibc kept the peak resident: 3 KiB of
/// RSS per idle keep-alive connection instead of 23 KiB (benches/README.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Threads of the main runtime, which accepts connections (the shards serve them)
/// and runs health checks, the admin API and reloads.
const MAIN_RUNTIME_THREADS: usize = 2;

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
    #[arg(long, short, env = "SWITCHYARD_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// How a running proxy logs and how many threads it uses: taken by the proxy
/// itself and by `demo`, and by nothing that only talks to a proxy (`ctl`, `check`,
/// ...), so their `--help` lists only what they use.
#[derive(Args, Debug, Clone, Default)]
struct ServeArgs {
    /// Log format on stderr: `text` (the default), or `json` (one object per line
    /// with `timestamp`, `level`, `target`, `message` and the event's fields).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` (the default) or `switchyard=debug`.
    #[arg(long, env = "SWITCHYARD_LOG")]
    log_level: Option<String>,
    /// Threads that serve client connections, each with its own event loop
    /// (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Do not write one access-log line per request.
    #[arg(long)]
    no_access_log: bool,
}

impl ServeArgs {
    /// Each flag as given after the subcommand, else as given before it (`outer`).
    fn or(self, outer: ServeArgs) -> ServeArgs {
        ServeArgs {
            log_format: self.log_format.or(outer.log_format),
            log_level: self.log_level.or(outer.log_level),
            workers: self.workers.or(outer.workers),
            no_access_log: self.no_access_log || outer.no_access_log,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Validate a config file and exit (non-zero on error), like `nginx -t`.
    Check {
        /// The config file to check (TOML).
        #[arg(long, short, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write, check, run and measure WebAssembly policy plugins.
    Plugin {
        #[command(subcommand)]
        action: Box<PluginAction>,
    },
    /// Talk to a running proxy's admin API: tables and one-line answers, or the raw
    /// JSON with `--json`.
    Ctl {
        #[command(flatten)]
        options: switchyard::ctl::Options,
        #[command(subcommand)]
        action: switchyard::ctl::Action,
    },
    /// Work with a fleet of instances coordinated through etcd (`[cluster]`).
    Cluster {
        /// A config file whose `[cluster]` table says where etcd is.
        #[arg(long, short, global = true, env = "SWITCHYARD_CONFIG")]
        config: Option<PathBuf>,
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
    /// Start five named demo backends in two pools, blue (one of them flaky) and green, front
    /// them with an embedded config, and print commands to try.
    Demo {
        /// Traffic listener address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Admin listener address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: SocketAddr,
        #[command(flatten)]
        serve: ServeArgs,
    },
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

/// `--config` of the `plugin` commands is the plugin's `config` table as JSON (what
/// `init` receives), given inline or as a file name.
#[derive(Subcommand, Debug)]
enum PluginAction {
    /// Make a plugin crate (policy, unit tests, the SDK) that builds with
    /// `cargo build --release`, tests with `cargo test` and loads as it is.
    New {
        /// Crate name (lower case, digits and `-`), also the directory made.
        name: String,
        /// routing, health-check (or health) or recovery.
        #[arg(long, value_parser = parse_kind)]
        kind: switchyard::plugin::PluginKind,
        /// Where to make it.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Report which world a component implements and which imports it gets; with
    /// `--config`, also load it and run `init` with that config.
    Check {
        file: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Call a plugin on a request and candidates (routing), a probe result
    /// (health-check) or an outcome (recovery), from flags, a JSON file or the
    /// samples of a running proxy; print each decision and its cost.
    Run {
        file: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        input: InputArgs,
        /// Print one JSON object per case.
        #[arg(long)]
        json: bool,
    },
    /// Measure a plugin's per-call cost (on the same inputs as `run`).
    Bench {
        file: PathBuf,
        #[command(flatten)]
        load: LoadArgs,
        #[command(flatten)]
        input: InputArgs,
        /// Calls to measure (after a warm-up of a tenth as many).
        #[arg(long, default_value_t = 20_000)]
        calls: u64,
    },
}

/// How a plugin is loaded by `plugin check|run|bench`.
#[derive(Args, Debug)]
struct LoadArgs {
    /// The plugin's `config` table as JSON (what `init` receives), inline or a file
    /// holding it, e.g. `{"header": "x-tenant"}`. Default for `run` and `bench`: `{}`,
    /// what the proxy passes for a table without `config`; `check` runs `init` only
    /// when it is given.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// routing, health-check (or health) or recovery; by default the one world the
    /// component implements.
    #[arg(long, value_parser = parse_kind)]
    kind: Option<switchyard::plugin::PluginKind>,
    /// Per-call deadline (default: 2ms, the proxy's, for `check`; 1s for `run` and
    /// `bench`, which show costs).
    #[arg(long, value_parser = switchyard::config::parse_duration)]
    timeout: Option<std::time::Duration>,
    /// Memory cap per instance.
    #[arg(long, default_value = "16MiB", value_parser = switchyard::config::parse_byte_size)]
    memory: u64,
}

/// The cases `plugin run|bench` call a plugin with.
#[derive(Args, Debug)]
struct InputArgs {
    /// Cases from a JSON file (`-` for standard input): one case, an array of
    /// cases, or a samples document (see plugins/README.md).
    #[arg(long, conflicts_with = "samples")]
    input: Option<PathBuf>,
    /// Recorded cases from a running proxy:
    /// http://ADMIN/plugins/NAME/samples (routing plugins).
    #[arg(long)]
    samples: Option<String>,
    /// Bearer token for `--samples`.
    #[arg(long, env = "SWITCHYARD_ADMIN_TOKEN")]
    token: Option<String>,
    /// Request method (routing).
    #[arg(long)]
    method: Option<String>,
    /// Request path (routing).
    #[arg(long)]
    path: Option<String>,
    /// Requested host (routing).
    #[arg(long)]
    host: Option<String>,
    /// Client address (routing).
    #[arg(long)]
    client_ip: Option<String>,
    /// `NAME: VALUE`, a request header (routing) or a response header (health);
    /// repeatable.
    #[arg(long = "header")]
    headers: Vec<String>,
    /// A count of idle candidates, or a JSON array of candidates (routing;
    /// default 3).
    #[arg(long)]
    candidates: Option<String>,
    /// Response status (health; default 200).
    #[arg(long)]
    status: Option<u16>,
    /// Response body (health).
    #[arg(long)]
    body: Option<String>,
    /// The probe got no answer: timeout, refused, reset or other (health).
    #[arg(long)]
    probe_error: Option<String>,
    /// success, connect, timeout, reset, server-error, other or tick (recovery).
    #[arg(long)]
    outcome: Option<String>,
    /// Failures in a row so far (recovery).
    #[arg(long)]
    failures_in_a_row: Option<u32>,
    /// closed, open or half-open (recovery).
    #[arg(long)]
    state: Option<String>,
}

fn parse_kind(name: &str) -> Result<switchyard::plugin::PluginKind, String> {
    switchyard::plugin::PluginKind::parse(name)
        .ok_or_else(|| format!("unknown kind `{name}`; expected routing, health-check or recovery"))
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
    match cli.command {
        Some(Command::Check { config }) => return check(config.or(cli.config).as_deref()),
        Some(Command::Plugin { action }) => return plugin_command(*action),
        Some(Command::Cluster {
            config,
            etcd,
            prefix,
            action,
        }) => {
            let config = config.or(cli.config);
            return cluster(config.as_deref(), &etcd, prefix.as_deref(), &action);
        }
        Some(Command::Ctl { options, action }) => return ctl(&options, action),
        _ => {}
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
    let serve = match &cli.command {
        Some(Command::Demo { serve, .. }) => serve.clone().or(cli.serve.clone()),
        _ => cli.serve.clone(),
    };
    let log_output = match logging::init(
        match serve.log_format.unwrap_or(LogFormat::Text) {
            LogFormat::Text => logging::LogFormat::Text,
            LogFormat::Json => logging::LogFormat::Json,
        },
        serve.log_level.as_deref().unwrap_or("info"),
    ) {
        Ok(output) => output,
        Err(e) => {
            eprintln!("switchyard: cannot start the log writer: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Client connections are served on the shards (`--workers`, see
    // `switchyard::shard`); this runtime accepts them and runs everything else:
    // health checks, the admin API, reloads. Two threads keep those responsive.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all().worker_threads(MAIN_RUNTIME_THREADS);
    let result = runtime
        .build()
        .context("cannot start the async runtime")
        .and_then(|rt| rt.block_on(run(cli, serve, activated, incoming)));
    // Queued log lines go out before the final message and the exit.
    drop(log_output);
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
            if !check_plugins(&config) || !check_certificates(&config) {
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

/// Loads every TLS listener's certificates, as a start would, and reports each failure.
fn check_certificates(config: &Config) -> bool {
    let registry = switchyard::tls::TlsRegistry::new();
    let mut ok = true;
    for (index, listener) in config.listeners.iter().enumerate() {
        let Some(tls) = &listener.tls else {
            continue;
        };
        if let Err(e) = switchyard::server::build_acceptor(&listener.name, tls, &registry) {
            let field = e
                .field()
                .unwrap_or_else(|| format!("listener[{index}].tls"));
            eprintln!(
                "{}: listener `{}`: {e}",
                config.locate(&field),
                listener.name
            );
            ok = false;
        }
    }
    ok
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
        if let Err(e) = runtime.load(&(&plugin.spec).into()) {
            match plugin.locate_error(&e) {
                Some(located) => eprintln!("{located}"),
                None => eprintln!(
                    "{}: {} does not load: {e}",
                    config.locate(&format!("plugin.{}.path", plugin.spec.name)),
                    plugin.spec.path.display()
                ),
            }
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
            if !check_plugins(&loaded) || !check_certificates(&loaded) {
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

fn plugin_command(action: PluginAction) -> ExitCode {
    let config = match &action {
        PluginAction::New { .. } => None,
        PluginAction::Check { load, .. }
        | PluginAction::Run { load, .. }
        | PluginAction::Bench { load, .. } => load.config.as_deref(),
    };
    let given = match config.map(plugin_config).transpose() {
        Ok(given) => given,
        Err(e) => {
            eprintln!("switchyard plugin: {e}");
            return ExitCode::from(2);
        }
    };
    // What the proxy passes to `init` for a table without `config`.
    let config = given.clone().unwrap_or_else(|| "{}".to_string());
    match action {
        PluginAction::New { name, kind, dir } => plugin_new(&dir, &name, kind),
        PluginAction::Check { file, load } => plugin_check(&file, &load, given.as_deref()),
        PluginAction::Run {
            file,
            load,
            input,
            json,
        } => plugin_run(&file, &load, &input, &config, json),
        PluginAction::Bench {
            file,
            load,
            input,
            calls,
        } => plugin_bench(&file, &load, &input, &config, calls),
    }
}

/// The plugin config given to `--config`: JSON text, or a file holding it.
fn plugin_config(value: &Path) -> Result<String> {
    let text = value.to_string_lossy();
    let json = if text.trim_start().starts_with('{') {
        text.into_owned()
    } else {
        std::fs::read_to_string(value).with_context(|| {
            format!("--config `{text}` is neither a JSON object nor a readable file")
        })?
    };
    let parsed: serde_json::Value = serde_json::from_str(&json)
        .with_context(|| format!("--config is not valid JSON: {json}"))?;
    anyhow::ensure!(
        parsed.is_object(),
        "--config must be a JSON object, like the plugin's TOML table"
    );
    Ok(json)
}

fn plugin_new(dir: &Path, name: &str, kind: switchyard::plugin::PluginKind) -> ExitCode {
    match switchyard::plugin_tool::new_plugin(dir, name, kind) {
        Ok(made) => {
            let wasm = name.replace('-', "_");
            println!("made {} ({} plugin)", made.display(), kind.world());
            println!("  cd {}", made.display());
            println!("  cargo test              # unit tests, natively");
            println!("  cargo build --release   # target/wasm32-wasip2/release/{wasm}.wasm");
            println!("  README.md says how to check, run and load it");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard plugin new: {e}");
            ExitCode::FAILURE
        }
    }
}

fn plugin_check(file: &Path, load: &LoadArgs, config: Option<&str>) -> ExitCode {
    let info = match switchyard::plugin::inspect(file) {
        Ok(info) => info,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::FAILURE;
        }
    };
    println!("{info}");
    let Some(config) = config else {
        println!("init:    not run (--config JSON runs it with the plugin's config)");
        return if info.loadable_as().is_empty() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    };
    let kinds = match load.kind {
        Some(kind) => vec![kind],
        None => info.loadable_as(),
    };
    if kinds.is_empty() {
        return ExitCode::FAILURE;
    }
    let timeout = load.timeout.unwrap_or(switchyard::plugin::DEFAULT_TIMEOUT);
    let mut ok = true;
    for kind in kinds {
        match switchyard::plugin_tool::load(file, Some(kind), config, timeout, load.memory) {
            Ok(loaded) => {
                let headers = wanted_headers(&loaded.plugin);
                println!(
                    "init:    ok as {} with config {config} ({} to load{headers})",
                    kind.world(),
                    ms(loaded.load_time)
                );
            }
            Err(e) => {
                println!(
                    "init:    FAILED as {} with config {config}: {e}",
                    kind.world()
                );
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn wanted_headers(plugin: &switchyard::plugin::Plugin) -> String {
    let names: Vec<&str> = match (plugin.as_routing(), plugin.as_health()) {
        (Some(r), _) => r.wanted_headers().iter().map(|h| h.as_str()).collect(),
        (_, Some(h)) => h.wanted_headers().iter().map(|h| h.as_str()).collect(),
        _ => return String::new(),
    };
    if names.is_empty() {
        "; reads no header".into()
    } else {
        format!("; reads header(s) {}", names.join(", "))
    }
}

fn ms(d: std::time::Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Loads the plugin and reads the cases, for `run` and `bench`.
fn plugin_session(
    file: &Path,
    load: &LoadArgs,
    input: &InputArgs,
    config: &str,
    default_timeout: std::time::Duration,
) -> Result<(
    switchyard::plugin_tool::Loaded,
    Vec<switchyard::plugin_tool::Case>,
)> {
    use switchyard::plugin_tool as tool;
    let timeout = load.timeout.unwrap_or(default_timeout);
    let loaded = tool::load(file, load.kind, config, timeout, load.memory)
        .with_context(|| format!("cannot load {}", file.display()))?;
    let value: serde_json::Value = if let Some(url) = &input.samples {
        fetch_samples(url, input.token.as_deref())?
    } else if let Some(path) = &input.input {
        let text = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("cannot read standard input")?
        } else {
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
        };
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?
    } else {
        let flags = tool::Flags {
            method: input.method.clone(),
            path: input.path.clone(),
            host: input.host.clone(),
            client_ip: input.client_ip.clone(),
            headers: input.headers.clone(),
            candidates: input.candidates.clone(),
            status: input.status,
            body: input.body.clone(),
            probe_error: input.probe_error.clone(),
            outcome: input.outcome.clone(),
            failures_in_a_row: input.failures_in_a_row,
            state: input.state.clone(),
        };
        tool::case_from_flags(loaded.kind, &flags)?
    };
    let cases = tool::parse_cases(loaded.kind, &value)?;
    Ok((loaded, cases))
}

/// The samples document at `url` (`http://HOST:PORT/plugins/NAME/samples`).
fn fetch_samples(url: &str, token: Option<&str>) -> Result<serde_json::Value> {
    let rest = url
        .strip_prefix("http://")
        .context("--samples takes http://ADMIN/plugins/NAME/samples")?;
    let (admin, path) = rest.split_once('/').map_or((rest, "/"), |(a, p)| (a, p));
    let call = switchyard::ctl::Call::get(&format!("/{}", path.trim_start_matches('/')));
    switchyard::ctl::send_blocking(admin, token, &call, None)
        .with_context(|| format!("cannot fetch {url}"))
}

fn plugin_run(
    file: &Path,
    load: &LoadArgs,
    input: &InputArgs,
    config: &str,
    json: bool,
) -> ExitCode {
    let (loaded, cases) = match plugin_session(file, load, input, config, OFFLINE_TIMEOUT) {
        Ok(session) => session,
        Err(e) => {
            eprintln!("switchyard plugin run: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if !json {
        println!(
            "{} loaded as {} in {}; {} case(s)",
            file.display(),
            loaded.kind.world(),
            ms(loaded.load_time),
            cases.len()
        );
    }
    let (mut same, mut different) = (0, 0);
    for (i, case) in cases.iter().enumerate() {
        match switchyard::plugin_tool::run(&loaded, case) {
            Ok(report) => {
                match report.same_as_recorded {
                    Some(true) => same += 1,
                    Some(false) => different += 1,
                    None => {}
                }
                if json {
                    println!("{}", report.json);
                } else {
                    println!("#{} {}", i + 1, report.line);
                }
            }
            Err(e) => {
                eprintln!("switchyard plugin run: case #{}: {e}", i + 1);
                return ExitCode::FAILURE;
            }
        }
    }
    if !json && same + different > 0 {
        println!("{same} decision(s) as recorded, {different} different");
    }
    ExitCode::SUCCESS
}

/// The call deadline of `plugin run` and `plugin bench` unless `--timeout` says
/// otherwise: generous, so a descheduled thread does not fail a call whose cost is
/// being shown; `--timeout 2ms` shows what the proxy's default would do.
const OFFLINE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

fn plugin_bench(
    file: &Path,
    load: &LoadArgs,
    input: &InputArgs,
    config: &str,
    calls: u64,
) -> ExitCode {
    let (loaded, cases) = match plugin_session(file, load, input, config, OFFLINE_TIMEOUT) {
        Ok(session) => session,
        Err(e) => {
            eprintln!("switchyard plugin bench: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match switchyard::plugin_tool::bench(&loaded, &cases, calls.max(1)) {
        Ok(report) => {
            let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
            println!(
                "{}: {} plugin, loaded in {} (compile, link, init)",
                file.display(),
                loaded.kind.world(),
                ms(loaded.load_time)
            );
            println!(
                "{} calls over {} case(s): mean {:.2} us, p50 {:.2} us, p99 {:.2} us, max {:.2} us per call; {} failed",
                report.calls,
                cases.len(),
                us(report.mean),
                us(report.p50),
                us(report.p99),
                us(report.max),
                report.failed
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard plugin bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn ctl(options: &switchyard::ctl::Options, action: switchyard::ctl::Action) -> ExitCode {
    use switchyard::ctl::{render, send_blocking};
    let call = match action.call() {
        Ok(call) => call,
        Err(e) => {
            eprintln!("switchyard ctl: {e}");
            return ExitCode::from(2);
        }
    };
    let token = options.token.as_deref();
    match send_blocking(&options.admin, token, &call, options.if_revision) {
        Ok(value) if options.json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Ok(value) => {
            match render(&action, &value) {
                Ok(text) => print!("{text}"),
                Err(e) => {
                    eprintln!("switchyard ctl: {e}");
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("switchyard ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    cli: Cli,
    serve: ServeArgs,
    activated: Vec<InheritedSocket>,
    incoming: Option<Incoming>,
) -> Result<()> {
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
    let started = start(cli, &serve, takeover).await;
    let (server, watched, admin_listen, drain, demo) = match started {
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
    if let (Some(demo), Some(web)) = (&demo, server.listener_address("web")) {
        print!("{}", demo.guide(web, admin_address, &demo_command()));
    }
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
    serve: &ServeArgs,
    takeover: Takeover,
) -> Result<(
    Arc<Server>,
    Option<PathBuf>,
    SocketAddr,
    std::time::Duration,
    Option<demo::Demo>,
)> {
    let options = ServerOptions {
        access_log: !serve.no_access_log,
        shards: serve
            .workers
            .unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
            })
            .max(1),
    };
    let (config, watched, demo) = match cli.command {
        Some(Command::Demo { listen, admin, .. }) => {
            let (config, demo) = demo::prepare(listen, admin)
                .await
                .context("cannot start the demo backends")?
                .context("the embedded demo config is invalid")?;
            (config, None, Some(demo))
        }
        _ => {
            let path = cli
                .config
                .clone()
                .context("no config: pass --config FILE, or run `switchyard demo`")?;
            let config =
                Config::load(&path).map_err(|e| anyhow::anyhow!("the config was refused:\n{e}"))?;
            (config, Some(path), None)
        }
    };
    let admin_listen = config.admin.listen;
    let drain = config.limits.drain_timeout;
    let server = Server::start_with(config, options, takeover).await?;
    if let Some(path) = &watched {
        server.set_config_path(path.clone());
    }
    Ok((server, watched, admin_listen, drain, demo))
}

/// This binary as the demo's printed commands name it (`./target/release/switchyard`
/// from a checkout).
fn demo_command() -> String {
    match (std::env::current_exe(), std::env::current_dir()) {
        (Ok(exe), Ok(cwd)) => demo::command_name(&exe, &cwd),
        _ => "switchyard".to_string(),
    }
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
    use switchyard::ctl::{send_blocking, upgrade_call};
    match send_blocking(admin, token, &upgrade_call(), None) {
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
