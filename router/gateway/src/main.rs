//! The `switchyard` binary: parse the CLI, load config, build state, serve. Logic lives in the
//! library (`switchyard::app`, `switchyard::demo`, …).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use switchyard::config::{self, AuthMode, Vars};
use switchyard::telemetry::{self, LogFormat};
use switchyard::{Gateway, app, demo, server};
use switchyard_sim as sim;

/// How long the runtime waits for blocking tasks at exit.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

#[derive(Parser)]
#[command(name = "switchyard", version, about = "Multi-model AI routing gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormatArg,
}

/// `--log-format`: the CLI's spelling of `telemetry::LogFormat`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(f: LogFormatArg) -> Self {
        match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway with a config file.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
        /// Overrides `server.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Check a config file: print every error with its path, or "ok" and a summary.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the simulated upstreams (OpenAI, Anthropic, Gemini, Ollama wire formats).
    Sim {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// A config file whose [sim] table sets model behaviour (default: no latency, no
        /// faults — a fast upstream for benchmarks; `demo` uses realistic latencies).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Rank the candidates for a request without calling any model.
    Route {
        #[arg(long, short)]
        config: PathBuf,
        /// Print the ranking and every candidate's score terms (the default and only mode).
        #[arg(long, default_value_t = true)]
        explain: bool,
        /// A `/ai/route` body, or an OpenAI chat body (`-` reads standard input).
        request: PathBuf,
    },
    /// Run the simulator and the gateway together: no API keys needed.
    Demo {
        #[arg(long, default_value = config::DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// A TOML file merged over the demo's config, table by table (e.g. `[auth] mode`).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Send demo traffic to the gateway itself: RPS requests a second (5 if no value),
        /// chats and streams over the demo's models and routes, with one model of the
        /// `reliable` route failing for 10 s every 45 s. Off unless given.
        #[arg(long, value_name = "RPS", num_args = 0..=1, require_equals = true,
              default_missing_value = "5", value_parser = demo::traffic::parse_rps)]
        traffic: Option<f64>,
    },
    /// Work with WASM routing policies.
    Policy {
        #[command(subcommand)]
        action: PolicyCommand,
    },
    /// Back up or restore the SQLite store (use pg_dump / pg_restore for Postgres).
    Store {
        #[command(subcommand)]
        action: StoreCommand,
    },
}

/// The store to work on: `--url`, or the `[store] url` of `--config`.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct StoreTarget {
    /// A config file whose `[store] url` names the store.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The store URL (`sqlite://PATH`).
    #[arg(long)]
    url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Copy the SQLite store into FILE with `VACUUM INTO`: a consistent snapshot, safe while
    /// the gateway runs. FILE must not exist.
    Backup {
        file: PathBuf,
        #[command(flatten)]
        target: StoreTarget,
    },
    /// Put the backup FILE back as the SQLite store. Refuses a file that is not a Switchyard
    /// store, an existing store without --force, and a store a gateway has open.
    Restore {
        file: PathBuf,
        #[command(flatten)]
        target: StoreTarget,
        /// Replace an existing store.
        #[arg(long)]
        force: bool,
    },
}

/// The store URL a `store` command works on.
fn store_url(target: StoreTarget) -> Result<String, String> {
    match (target.url, target.config) {
        (Some(url), _) => Ok(url),
        (None, Some(path)) => Ok(config::load_file(&path, &Vars::from_env())
            .map_err(|e| format!("invalid config {}:\n{e}", path.display()))?
            .store
            .url),
        (None, None) => Err("give --config or --url".to_owned()),
    }
}

async fn store_command(action: StoreCommand) -> Result<(), String> {
    let (done, summary) = match action {
        StoreCommand::Backup { file, target } => {
            let url = store_url(target)?;
            let summary = switchyard_store::backup_sqlite(&url, &file)
                .await
                .map_err(|e| format!("backup refused: {e}"))?;
            (format!("backed up to {}", file.display()), summary)
        }
        StoreCommand::Restore {
            file,
            target,
            force,
        } => {
            let url = store_url(target)?;
            let summary = switchyard_store::restore_sqlite(&file, &url, force)
                .await
                .map_err(|e| format!("restore refused: {e}"))?;
            (
                format!(
                    "restored {} into {}",
                    file.display(),
                    switchyard_store::redacted_url(&url)
                ),
                summary,
            )
        }
    };
    #[expect(clippy::print_stdout, reason = "the outcome is this command's output")]
    {
        println!(
            "{done}: {} requests, {} keys, migration {}",
            summary.requests, summary.keys, summary.version
        );
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Run a policy folder's manifest test cases: pass/fail, fuel, latency, memory.
    Test { dir: PathBuf },
    /// Print a component's imports, exports and ABI.
    Inspect { file: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format.into());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    // Shutdown has a deadline: a blocking task still running (a tokenizer load) must not hold
    // the exit once the log and the spend are flushed.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Check { config } => {
            let cfg = config::load_file(&config, &Vars::from_env())
                .map_err(|e| format!("{e}\n{} error(s) in {}", e.0.len(), config.display()))?;
            #[expect(clippy::print_stdout, reason = "check prints its verdict")]
            {
                println!("ok\n{}", cfg.summary());
            }
            Ok(())
        }
        Command::Serve { config, listen } => {
            let cfg = config::load_file(&config, &Vars::from_env())
                .map_err(|e| format!("invalid config {}:\n{e}", config.display()))?;
            let addr = listen.unwrap_or(cfg.server.listen);
            let gw = Gateway::connect(cfg).await?;
            serve_gateway(gw, addr, None).await
        }
        Command::Route {
            config,
            explain: _,
            request,
        } => {
            let cfg = config::load_file(&config, &Vars::from_env())
                .map_err(|e| format!("invalid config {}:\n{e}", config.display()))?;
            let body = if request.as_os_str() == "-" {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                    .map_err(|e| format!("cannot read standard input: {e}"))?;
                buf
            } else {
                std::fs::read(&request)
                    .map_err(|e| format!("cannot read {}: {e}", request.display()))?
            };
            // Exact token counts for the explanation.
            switchyard_routing::tokens::load_blocking();
            let gw = Gateway::new(cfg)?;
            let ranking = switchyard::api::explain(&gw, &body).map_err(|e| e.body().to_string())?;
            let text = serde_json::to_string_pretty(&ranking).map_err(|e| e.to_string())?;
            #[expect(clippy::print_stdout, reason = "the ranking is this command's output")]
            {
                println!("{text}");
            }
            Ok(())
        }
        Command::Sim { listen, config } => {
            let sim_config = match config {
                Some(path) => {
                    config::load_file(&path, &Vars::from_env())
                        .map_err(|e| format!("invalid config {}:\n{e}", path.display()))?
                        .sim
                }
                None => sim::SimConfig::default(),
            };
            let handle = sim::spawn(sim_config, listen)
                .await
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            tracing::info!(addr = %handle.addr, "simulator listening");
            server::shutdown_signal().await;
            handle.shutdown().await;
            Ok(())
        }
        Command::Policy { action } => {
            let (text, ok) = match action {
                PolicyCommand::Test { dir } => switchyard::policy::cli::test(&dir)?,
                PolicyCommand::Inspect { file } => (switchyard::policy::cli::inspect(&file)?, true),
            };
            #[expect(clippy::print_stdout, reason = "the report is this command's output")]
            {
                print!("{text}");
            }
            if ok {
                Ok(())
            } else {
                Err("some cases failed".to_owned())
            }
        }
        Command::Store { action } => store_command(action).await,
        Command::Demo {
            listen,
            config,
            traffic,
        } => {
            let overrides = match &config {
                Some(path) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
                ),
                None => None,
            };
            let (sim, gw) = demo::start(overrides.as_deref()).await?;
            tracing::info!(sim = %sim.addr, "simulator started");
            let traffic = traffic.map(|rps| (rps, std::sync::Arc::clone(&sim.sim)));
            let result = serve_gateway(gw, listen, traffic).await;
            sim.shutdown().await;
            result
        }
    }
}

/// Serve `gw` on `addr` until a shutdown signal. `traffic`: demo traffic (requests a second, and
/// the simulator whose faults it scripts), started once listening and stopped before draining.
async fn serve_gateway(
    gw: std::sync::Arc<Gateway>,
    addr: SocketAddr,
    traffic: Option<(f64, std::sync::Arc<sim::Sim>)>,
) -> Result<(), String> {
    // Tokenizer tables load in the background; requests before then use a safe estimate.
    // Only the tables the configured models count with: each is 30–40 MB resident.
    switchyard_routing::tokens::warm_up_for(gw.config.models.values().map(|m| m.entry.tokenizer));
    let listener = server::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let auth = &gw.config.auth;
    if auth.mode() == AuthMode::Open && !local.ip().is_loopback() && !auth.allow_open_on_network {
        return Err(format!(
            "refusing to listen on {local} with [auth] mode = \"open\": anyone who can reach it \
             could spend your provider credit. Listen on 127.0.0.1, use mode = \"keys\" (set \
             SWITCHYARD_ADMIN_KEY and create keys with POST /admin/keys), or set \
             allow_open_on_network = true."
        ));
    }
    let models: Vec<&str> = gw.config.models.keys().map(|m| m.as_str()).collect();
    tracing::info!(
        addr = %local,
        models = ?models,
        store = gw.store.as_ref().map_or("none", |s| s.backend()),
        auth = %gw.config.auth_summary(),
        "switchyard listening"
    );
    let traffic = match traffic {
        // Refused (a gateway that needs keys): the demo still runs, idle.
        Some((rps, sim)) => match demo::traffic::Traffic::start(local, rps, &gw.config, sim) {
            Ok(traffic) => Some(traffic),
            Err(e) => {
                tracing::warn!(error = %e, "demo traffic off");
                None
            }
        },
        None => None,
    };
    // IMPORTANT: the traffic stops before the server drains, so none of it is cut off.
    let shutdown = async move {
        server::shutdown_signal().await;
        if let Some(traffic) = traffic {
            traffic.stop().await;
        }
    };
    let timeouts = server::Timeouts::from(&gw.config.server);
    server::serve(
        listener,
        app(gw.clone()),
        timeouts,
        gw.abort.clone(),
        shutdown,
    )
    .await;
    // Every connection has ended (drained, aborted or dropped): no handler can still record.
    // Flush the request log and the spend.
    gw.shutdown().await;
    Ok(())
}
