//! `reader-agent`: takes contactless payments on a checkout tablet for the IoT Commerce Hub.

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::{Parser, Subcommand};
use reader_agent::{
    AgentError,
    agent::{self, AgentOptions},
    device::{DeviceKey, StateDir, StateLock, TokenSource},
    exit,
    hub::HubClient,
    ids,
    outbox::{Outbox, Pending},
    pay,
    reader::Readers,
};

#[derive(Parser)]
#[command(name = "reader-agent", version, about)]
struct Cli {
    /// Where the device key (`device.key`) and the outbox (`outbox/`) live.
    #[arg(
        long,
        env = "READER_AGENT_STATE_DIR",
        default_value = "reader-agent-state",
        global = true
    )]
    state_dir: PathBuf,
    /// Log lines as text, or as JSON objects (one per line, for log collectors and the benchmark).
    #[arg(long, env = "READER_AGENT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct HubArgs {
    /// The hub's base URL.
    #[arg(
        long,
        env = "READER_AGENT_HUB",
        default_value = "http://127.0.0.1:8080"
    )]
    hub: String,
    /// This device's ID at the hub (its global ID, or its UUID), as `registerDevice` answered.
    #[arg(long, env = "READER_AGENT_DEVICE")]
    device: String,
    /// The audience the hub expects in tokens.
    #[arg(
        long,
        env = "READER_AGENT_AUDIENCE",
        default_value = "iot-commerce-hub"
    )]
    audience: String,
    /// Lifetime of the device's own tokens (at most 300 s); renewed at four fifths of it.
    #[arg(long, env = "READER_AGENT_TOKEN_LIFETIME", default_value = "120s", value_parser = humantime::parse_duration)]
    token_lifetime: Duration,
    /// The reader to use (as `reader-agent readers` names it); by default, whichever has the card.
    #[arg(long, env = "READER_AGENT_READER")]
    reader: Option<String>,
}

#[derive(Subcommand)]
enum Commands {
    /// Creates this device's key (mode 0600) and prints the public key an ADMIN registers.
    Init,
    /// Lists the card readers and whether a card is on each.
    Readers,
    /// Lists the taps waiting in the outbox (public facts only).
    Outbox {
        /// The device (default: the one this state directory was first used for).
        #[arg(long, env = "READER_AGENT_DEVICE")]
        device: Option<String>,
    },
    /// Follows the terminal's payment requests and takes payments until stopped.
    Run {
        #[command(flatten)]
        hub: HubArgs,
    },
    /// Takes one payment for a request and prints the outcome as JSON (exit code 0 when authorized).
    Pay {
        #[command(flatten)]
        hub: HubArgs,
        /// The payment request (its global ID, or its UUID).
        #[arg(long)]
        request: String,
        /// How long to wait for a card (never past the request's tap deadline).
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        wait: Duration,
        /// How long to retry a submission the hub does not answer before leaving it queued.
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        submit_for: Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("READER_AGENT_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("reader-agent: cannot start: {err}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let pays = matches!(cli.command, Commands::Pay { .. });
    match runtime.block_on(execute(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            if pays {
                let report = serde_json::json!({ "error": { "code": error.code(), "message": error.to_string() } });
                println!("{report}");
            }
            eprintln!("reader-agent: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn device_id(text: &str) -> Result<uuid::Uuid, AgentError> {
    ids::parse(ids::DEVICE, text).ok_or_else(|| {
        AgentError::Setup(format!(
            "--device {text:?} is neither a device's global ID nor a UUID"
        ))
    })
}

/// What `run` and `pay` work with; the lock keeps other agents off the state directory meanwhile.
struct Session {
    hub: HubClient,
    outbox: Outbox,
    _lock: StateLock,
}

fn connect(state: &StateDir, args: &HubArgs) -> Result<Session, AgentError> {
    let device = device_id(&args.device)?;
    let key = DeviceKey::load(&state.key_path())?;
    let lock = state.lock()?;
    state.check_device(device)?;
    let outbox = Outbox::open(&state.outbox_path(), device, &key.outbox_key())?;
    let tokens = TokenSource::new(device, key, args.audience.clone(), args.token_lifetime)?;
    Ok(Session {
        hub: HubClient::new(&args.hub, Arc::new(tokens))?,
        outbox,
        _lock: lock,
    })
}

async fn execute(cli: Cli) -> Result<u8, AgentError> {
    let state = StateDir(cli.state_dir);
    match cli.command {
        Commands::Init => {
            let key = DeviceKey::create(&state.key_path())?;
            println!("{}", key.public_key_base64());
            eprintln!(
                "device key written to {}; register the public key above with registerDevice, then run \
                 `reader-agent run --device <the device's ID>`",
                state.key_path().display()
            );
            Ok(0)
        }
        Commands::Readers => {
            let readers = tokio::task::spawn_blocking(|| Readers::connect()?.list())
                .await
                .map_err(|err| AgentError::Reader(err.to_string()))??;
            if readers.is_empty() {
                return Err(AgentError::NoReader("pcscd knows no reader".into()));
            }
            for reader in readers {
                let card = if reader.card_present {
                    "card present"
                } else {
                    "no card"
                };
                println!("{}\t{card}", reader.name);
            }
            Ok(0)
        }
        Commands::Outbox { device } => {
            let recorded = state.recorded_device();
            let device = match (device.as_deref().map(device_id).transpose()?, recorded) {
                (Some(given), Some(recorded)) if given != recorded => {
                    return Err(AgentError::Setup(format!(
                        "this state directory belongs to device {recorded}, not {given}"
                    )));
                }
                (Some(given), _) => given,
                (None, Some(recorded)) => recorded,
                (None, None) => {
                    return Err(AgentError::Setup(
                        "no device has used this state directory yet: give --device".into(),
                    ));
                }
            };
            let key = DeviceKey::load(&state.key_path())?;
            let outbox = Outbox::open(&state.outbox_path(), device, &key.outbox_key())?;
            // Read-only: a damaged entry is set aside only when an agent comes to submit it.
            let mut damaged = false;
            for entry in outbox.pending()? {
                match entry {
                    Pending::Tap(tap) => println!(
                        "{}\t{}\ttapped {}\taccept until {}",
                        tap.request,
                        pay::format_amount(tap.amount_minor, &tap.currency),
                        tap.tapped_at.to_rfc3339(),
                        tap.acceptance_deadline.to_rfc3339()
                    ),
                    Pending::Damaged(path) => {
                        damaged = true;
                        println!(
                            "{}\tDAMAGED: will be set aside, never submitted",
                            path.display()
                        );
                    }
                }
            }
            for path in outbox.set_aside_files("rejected") {
                damaged = true;
                println!(
                    "{}\tREJECTED: damaged or not sealed by this device, never submitted",
                    path.display()
                );
            }
            for path in outbox.set_aside_files("refused") {
                println!(
                    "{}\tREFUSED by the hub for good (its code ends the name)",
                    path.display()
                );
            }
            Ok(if damaged { exit::OUTBOX_DAMAGED } else { 0 })
        }
        Commands::Run { hub } => {
            let session = connect(&state, &hub)?;
            tracing::info!(hub = %hub.hub, device = %session.hub.tokens().device(), "reader agent starting");
            agent::run(
                session.hub,
                Arc::new(session.outbox),
                AgentOptions { reader: hub.reader },
            )
            .await?;
            Ok(0)
        }
        Commands::Pay {
            hub,
            request,
            wait,
            submit_for,
        } => {
            let request = ids::parse(ids::PAYMENT_REQUEST, &request).ok_or_else(|| {
                AgentError::Setup(format!(
                    "--request {request:?} is neither a payment request's global ID nor a UUID"
                ))
            })?;
            let session = connect(&state, &hub)?;
            let report = pay::one_shot(
                &session.hub,
                &session.outbox,
                hub.reader,
                request,
                wait,
                submit_for,
            )
            .await?;
            let json = serde_json::to_string(&report)
                .map_err(|err| AgentError::Setup(format!("cannot print the report: {err}")))?;
            println!("{json}");
            Ok(report.exit_code())
        }
    }
}
