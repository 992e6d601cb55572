//! The `open-bedrock-server` binary: command line and environment → [`Config`] → [`Gateway`] →
//! [`server::serve`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use open_bedrock_server::config::Config;
use open_bedrock_server::{server, telemetry, Gateway};

/// A unified chat-completions gateway for OpenAI and AWS Bedrock.
#[derive(Debug, Parser)]
#[command(name = "open-bedrock-server", version, about)]
struct Cli {
    /// Optional TOML configuration file (aliases, routes, limits, timeouts, …).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen address (overrides HOST).
    #[arg(long)]
    host: Option<IpAddr>,
    /// Listen port (overrides PORT; default 8000).
    #[arg(long)]
    port: Option<u16>,
    /// Run without API-key auth (same as AUTH_DISABLED=true).
    #[arg(long)]
    no_auth: bool,
    /// Serve `mock/…` models in-process, to try the gateway without any upstream (same as
    /// MOCK_PROVIDER=true).
    #[arg(long)]
    mock: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the configuration and print it with secrets masked.
    CheckConfig,
    /// Manage the keys file's keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a new random key: prints the key (give it to its user; it is shown only once) and a
    /// `[[keys]]` entry with its SHA-256 for the keys file.
    New {
        /// The key's id in the keys file (logs, metrics, budgets).
        #[arg(long, default_value = "new-key")]
        id: String,
    },
}

fn load(cli: &Cli) -> Result<Config, String> {
    Config::load_with(cli.config.as_deref(), overrides(cli)).map_err(|e| e.to_string())
}

/// The flags given, as a partial configuration tree laid over the file and the environment.
fn overrides(cli: &Cli) -> serde_json::Value {
    let mut tree = serde_json::json!({});
    if let Some(host) = cli.host {
        tree["server"]["host"] = host.to_string().into();
    }
    if let Some(port) = cli.port {
        tree["server"]["port"] = port.into();
    }
    if cli.no_auth {
        tree["auth"]["disabled"] = true.into();
    }
    if cli.mock {
        tree["mock"]["enabled"] = true.into();
    }
    tree
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Keys(KeysCommand::New { id })) = &cli.command {
        let (key, line) = open_bedrock_server::keys::new_key();
        println!("# the key (shown once; the gateway keeps only its hash):");
        println!("# {key}");
        println!("[[keys]]");
        println!("id = {}", toml_string(id));
        println!("{line}");
        return ExitCode::SUCCESS;
    }
    let config = match load(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("open-bedrock-server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::CheckConfig) = cli.command {
        println!(
            "# listen address: {}:{}; secrets are masked",
            config.server.host, config.server.port
        );
        print!("{}", config.to_masked_toml());
        // The providers as start-up builds them (same code, no network): Bedrock's region is
        // resolved exactly as the server resolves it.
        let gateway = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(Gateway::from_config(&config))
                    .map_err(|e| e.to_string())
            }) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("open-bedrock-server: {e}");
                return ExitCode::from(2);
            }
        };
        println!("providers:");
        for p in gateway.providers() {
            println!(
                "  {:<8} {:<5} {}",
                p.name,
                if p.live { "live" } else { "off" },
                p.detail
            );
        }
        return match config.check_startable() {
            Ok(()) => {
                println!("configuration OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("open-bedrock-server: {e}");
                ExitCode::from(2)
            }
        };
    }
    if let Err(e) = config.check_startable() {
        eprintln!("open-bedrock-server: {e}");
        return ExitCode::from(2);
    }
    // Declared before the runtime, so dropped after it: the guard flushes spans still open then.
    let _telemetry = telemetry::init_tracing(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("open-bedrock-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

/// `s` as a TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Reloads the keys file on every SIGHUP (a broken file keeps the old keys; both are logged).
#[cfg(unix)]
fn reload_keys_on_sighup(gateway: &Gateway) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: the keys file reloads only when it changes");
            return;
        }
    };
    let store = gateway.key_store().clone();
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let store = store.clone();
            // The outcome is logged by the store.
            let _ = tokio::task::spawn_blocking(move || store.reload()).await;
        }
    });
}

async fn run(config: Config) -> ExitCode {
    let gateway = match Gateway::from_config(&config).await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("open-bedrock-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    #[cfg(unix)]
    if config.keys.file.is_some() {
        reload_keys_on_sighup(&gateway);
    }
    let addr = SocketAddr::new(config.server.host, config.server.port);
    let listener = match server::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("open-bedrock-server: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| addr.to_string());
    tracing::info!(address = %local, version = env!("CARGO_PKG_VERSION"), "open-bedrock-server listening");
    if config.auth.disabled {
        tracing::warn!("API-key auth is disabled: every client is accepted");
    }
    for p in gateway.providers() {
        tracing::info!(provider = %p.name, live = p.live, detail = %p.detail, "provider");
    }
    gateway.serve(listener, server::shutdown_signal()).await;
    ExitCode::SUCCESS
}
