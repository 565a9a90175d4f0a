//! `virtual-card`: a software contactless card on pcscd's virtual reader (vpcd), for tests and demos.

use std::{os::unix::net::UnixListener, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use reader_agent::virtual_card::{self, VirtualCard};

#[derive(Parser)]
#[command(name = "virtual-card", version, about)]
struct Cli {
    /// The control socket of the running card.
    #[arg(
        long,
        env = "VIRTUAL_CARD_CONTROL",
        default_value = "virtual-card.sock"
    )]
    control: PathBuf,
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Runs the card: connects to vpcd while inserted, and listens on the control socket.
    Run {
        /// The card file, made by `issuer personalize` (updated in place as numbers are used).
        #[arg(long, env = "VIRTUAL_CARD_FILE")]
        card: PathBuf,
        /// vpcd's address: port 35963 is the first virtual reader, 35964 the second.
        #[arg(long, env = "VIRTUAL_CARD_VPCD", default_value = "127.0.0.1:35963")]
        vpcd: String,
        /// Start with the card on the reader.
        #[arg(long)]
        inserted: bool,
        /// Answer like a card without the payment application (a transit card, say).
        #[arg(long)]
        foreign: bool,
    },
    /// Puts the card on the reader until `remove`.
    Insert,
    /// Takes the card off the reader.
    Remove,
    /// Puts the card on the reader and takes it away once it has answered a payment (or after --hold-ms).
    Tap {
        #[arg(long, default_value_t = 10_000)]
        hold_ms: u64,
    },
    /// Puts the card on the reader and pulls it away mid-exchange, when it is asked for a payment.
    Tear,
    /// Prints the card's state (JSON): on the reader or not, payments answered, numbers left.
    Status,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIRTUAL_CARD_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Run {
            card,
            vpcd,
            inserted,
            foreign,
        } => run(&cli.control, &card, &vpcd, inserted, foreign),
        Commands::Insert => virtual_card::command(&cli.control, "insert").map(print),
        Commands::Remove => virtual_card::command(&cli.control, "remove").map(print),
        Commands::Tap { hold_ms } => {
            virtual_card::command(&cli.control, &format!("tap {hold_ms}")).map(print)
        }
        Commands::Tear => virtual_card::command(&cli.control, "tear").map(print),
        Commands::Status => virtual_card::command(&cli.control, "status").map(print),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("virtual-card: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn print(answer: String) {
    println!("{answer}");
}

fn run(
    control: &std::path::Path,
    card: &std::path::Path,
    vpcd: &str,
    inserted: bool,
    foreign: bool,
) -> anyhow::Result<()> {
    let card = VirtualCard::load(card, inserted, foreign)?;
    // A socket left by a card that died is stale: nobody answers on it.
    if control.exists() && std::os::unix::net::UnixStream::connect(control).is_err() {
        std::fs::remove_file(control)?;
    }
    let listener = UnixListener::bind(control).map_err(|err| {
        anyhow::anyhow!(
            "cannot listen on {}: {err} (is another card running?)",
            control.display()
        )
    })?;
    let controlled = card.clone();
    std::thread::spawn(move || controlled.control(listener));
    tracing::info!(%vpcd, control = %control.display(), "virtual card ready");
    card.serve(vpcd)
}
