//! `issuer`: the financial provider's tool. Creates an issuer key and number range, personalizes cards
//! (card key plus a signed batch of one-time numbers, written as a card file), signs top-up batches and
//! prints the public key to register at the hub. Numbers come from a persistent counter in the state file.

use std::{
    path::PathBuf,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use card_protocol::{
    CardId,
    issuer::{Issuance, IssuerFile},
    number::PrefixRange,
    token::{Channel, DomainRestrictions},
};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "issuer",
    version,
    about = "Issuer tooling for one-time-number cards"
)]
struct Cli {
    /// The issuer state file (holds the secret key and the number counter; kept private).
    #[arg(long, default_value = "issuer.json")]
    state: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new issuer key and number range (refuses to overwrite an existing state file).
    Init {
        /// The issuer organization's id at the hub (UUID).
        #[arg(long)]
        issuer_id: String,
        /// Key id, unique per issuer; key material under an id never changes.
        #[arg(long, default_value_t = 1)]
        key_id: u32,
        /// Card number prefix (6 to 12 digits).
        #[arg(long)]
        prefix: String,
        /// Validity of the key, in days.
        #[arg(long, default_value_t = 365)]
        valid_days: u64,
    },
    /// Print the public key, key id, range and validity for registration at the hub (JSON).
    PublicKey,
    /// Create a card: its key, id and a first batch of numbers, written as a card file.
    Personalize {
        #[arg(long)]
        card_out: PathBuf,
        #[command(flatten)]
        issuance: IssuanceArgs,
    },
    /// Sign a batch of new numbers for a card (hex id), for LOAD NUMBERS.
    TopUp {
        #[arg(long)]
        card_id: String,
        /// Where to write the batch (raw bytes).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        issuance: IssuanceArgs,
    },
}

#[derive(clap::Args)]
struct IssuanceArgs {
    /// How many numbers (1 to 64).
    #[arg(long, default_value_t = 16)]
    numbers: usize,
    /// Largest amount per payment, in major units (e.g. 50.00).
    #[arg(long)]
    max_amount: String,
    /// ISO 4217 currency.
    #[arg(long, default_value = "EUR")]
    currency: String,
    /// Restrict the numbers to one merchant organization (UUID); default any merchant.
    #[arg(long)]
    merchant: Option<String>,
    /// Days the numbers stay valid (never beyond the key).
    #[arg(long, default_value_t = 30)]
    valid_days: u64,
}

fn now() -> anyhow::Result<u64> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("clock before 1970")?
        .as_secs())
}

fn random<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|err| anyhow::anyhow!("OS random generator: {err}"))?;
    Ok(bytes)
}

fn parse_uuid<T: From<[u8; 16]>>(text: &str) -> anyhow::Result<T> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let bytes = parse_hex(&hex).with_context(|| format!("{text} is not a UUID"))?;
    Ok(T::from(bytes))
}

fn parse_hex(hex: &str) -> anyhow::Result<[u8; 16]> {
    if hex.len() != 32 {
        bail!("expected 32 hex digits");
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).context("not hex")?;
    }
    Ok(id)
}

/// "12.50" EUR -> 1250: decimals are converted with the currency's ISO 4217 exponent.
fn minor_units(amount: &str, currency: &str) -> anyhow::Result<u64> {
    let exponent = iso_currency::Currency::from_code(currency)
        .and_then(|c| c.exponent())
        .with_context(|| format!("{currency} is not an ISO 4217 currency with minor units"))?;
    let (whole, fraction) = amount.split_once('.').unwrap_or((amount, ""));
    if fraction.len() > usize::from(exponent) || whole.is_empty() {
        bail!("{amount} has more decimals than {currency} allows ({exponent})");
    }
    let digits = format!("{whole}{fraction:0<width$}", width = usize::from(exponent));
    digits
        .parse::<u64>()
        .with_context(|| format!("{amount} is not an amount"))
}

fn issuance(args: &IssuanceArgs) -> anyhow::Result<Issuance> {
    let currency: [u8; 3] = args
        .currency
        .as_bytes()
        .try_into()
        .ok()
        .filter(|c: &[u8; 3]| c.iter().all(u8::is_ascii_uppercase))
        .context("currency is three upper-case letters")?;
    Ok(Issuance {
        count: args.numbers,
        restrictions: DomainRestrictions {
            max_amount_minor: minor_units(&args.max_amount, &args.currency)?,
            currency,
            merchant: args.merchant.as_deref().map(parse_uuid).transpose()?,
            channel: Channel::ContactlessPresent,
        },
        not_after: now()? + args.valid_days * 86_400,
    })
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Init {
            issuer_id,
            key_id,
            prefix,
            valid_days,
        } => {
            if cli.state.exists() {
                bail!(
                    "{} exists; refusing to overwrite an issuer key",
                    cli.state.display()
                );
            }
            let range = PrefixRange::new(&prefix)?;
            let file = IssuerFile::new(
                parse_uuid(&issuer_id)?,
                key_id,
                random()?,
                range,
                now()? + valid_days * 86_400,
            );
            file.save(&cli.state)
                .with_context(|| format!("cannot write {}", cli.state.display()))?;
            eprintln!("wrote {}", cli.state.display());
        }
        Command::PublicKey => {
            let file = IssuerFile::load(&cli.state)?;
            let public = file.signing_key()?.verifying_key();
            let summary = serde_json::json!({
                "issuer": file.issuer,
                "keyId": file.key_id,
                "publicKey": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, public.to_bytes()),
                "prefix": file.range.prefix(),
                "notAfter": file.key_not_after,
            });
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        Command::Personalize {
            card_out,
            issuance: args,
        } => {
            if card_out.exists() {
                bail!(
                    "{} exists; refusing to overwrite a card",
                    card_out.display()
                );
            }
            let mut file = IssuerFile::load(&cli.state)?;
            let card =
                file.personalize(CardId::from_bytes(random()?), random()?, &issuance(&args)?)?;
            // The counter moves on disk before the numbers exist anywhere else.
            file.save(&cli.state).context("saving the issuer state")?;
            card.save(&card_out)
                .with_context(|| format!("cannot write {}", card_out.display()))?;
            eprintln!(
                "card {} with {} numbers written to {}",
                card.card_id,
                card.numbers.len(),
                card_out.display()
            );
            // What the bank registers at the hub (registerCard): the card's id and public key.
            let info = card_protocol::card::CardApplication::from_file(&card)
                .context("reading back the card")?
                .info();
            let registration = serde_json::json!({
                "cardId": uuid::Uuid::from(info.card_id).to_string(),
                "publicKey": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, info.card_public_key),
                "numbers": card.numbers.len(),
            });
            println!("{registration}");
        }
        Command::TopUp {
            card_id,
            out,
            issuance: args,
        } => {
            let mut file = IssuerFile::load(&cli.state)?;
            let batch = file.top_up(CardId::from_bytes(parse_hex(&card_id)?), &issuance(&args)?)?;
            file.save(&cli.state).context("saving the issuer state")?;
            std::fs::write(&out, batch.encode())
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "batch {} ({} numbers) written to {}",
                batch.load_counter,
                batch.tokens.len(),
                out.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::minor_units;

    #[test]
    fn decimals_follow_the_currency_exponent() {
        assert_eq!(minor_units("12.5", "EUR").ok(), Some(1250));
        assert_eq!(minor_units("12", "EUR").ok(), Some(1200));
        assert_eq!(minor_units("1000", "JPY").ok(), Some(1000));
        assert!(minor_units("1.5", "JPY").is_err());
        assert!(minor_units("1.234", "EUR").is_err());
        assert!(minor_units("abc", "EUR").is_err());
    }
}
