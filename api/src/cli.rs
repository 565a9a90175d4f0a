//! The `hub` command line: `serve` (default), `token create`, `schema`, `migrate`, `keygen`, `keys`,
//! `audit`.

use std::{path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};

use crate::{
    auth::{Role, generate_signing_key_file},
    config::{HubConfig, ServeArgs},
    server,
};

#[derive(Debug, Parser)]
#[command(
    name = "hub",
    version,
    about = "IoT Commerce Hub: the shared GraphQL source of truth"
)]
pub struct Cli {
    #[command(flatten)]
    pub config: HubConfig,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub (the default).
    Serve(ServeArgs),
    /// Mint tokens from the command line (the operator's path; runs migrations and bootstrap first).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Run database migrations and exit.
    Migrate,
    /// Field-encryption keys: progress, and rotation while the hub serves.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The audit trail: signed checkpoints of each organization's chain, and verification.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Clearing batches: the exact manifest bytes a provider verifies and signs.
    #[command(subcommand)]
    Clearing(ClearingCommand),
    /// Create a new ed25519 token-signing key file (PKCS#8 PEM, mode 0600); never overwrites.
    Keygen {
        #[arg(long)]
        out: PathBuf,
        /// Create a 32-byte secret (the number-hash key) instead of a signing key.
        #[arg(long)]
        secret: bool,
        /// Add a new current key to an existing number-hash key ring (the older keys stay, so numbers
        /// used under them stay checked); give every replica the new file.
        #[arg(long, requires = "secret")]
        rotate: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print the keys (ids and fingerprints) and how many rows each table still has under older data
    /// keys (`--json` for JSON).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Make a new primary data key. Every replica picks it up within `HUB_KEY_REFRESH_MS` and the
    /// replicas re-encrypt older rows in the background; watch `hub keys status`.
    RotateData,
    /// Rewrap every key under a new master key (no row changes). Then give the replicas the new key
    /// and restart them one by one; the old key is not needed afterwards.
    RotateMaster {
        /// File with the new master key (create it with `hub keygen --secret --out FILE`).
        #[arg(long)]
        new_master_key_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Link what is committed, then print a signed checkpoint of each chain's head (JSON, one line
    /// per organization). Keep them outside the database: `verify --checkpoint` proves against them
    /// that no entry was cut off or rewritten since.
    Checkpoint {
        /// Only this organization (name or UUID).
        #[arg(long)]
        org: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Recompute each chain and name its first broken entry; exits with status 1 when one is broken.
    Verify {
        /// Only this organization (name or UUID).
        #[arg(long)]
        org: Option<String>,
        /// Checkpoints printed earlier by `hub audit checkpoint`.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClearingCommand {
    /// Write a closed batch's canonical manifest, byte for byte (its SHA-256 goes to standard error).
    Export {
        /// The batch: its UUID (as the manifest states it) or its GraphQL ID.
        #[arg(long)]
        batch: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a token for a member of an organization, creating the member if needed.
    Create {
        /// Organization name or UUID.
        #[arg(long)]
        org: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Member name (default: `cli-<role>`).
        #[arg(long)]
        member: Option<String>,
        /// Lifetime in seconds (default 3600, at most 604800).
        #[arg(long)]
        ttl: Option<u64>,
    },
}

fn parse_role(value: &str) -> Result<Role, String> {
    match value.to_ascii_uppercase().as_str() {
        "ADMIN" => Ok(Role::Admin),
        "MEMBER" => Ok(Role::Member),
        "VIEWER" => Ok(Role::Viewer),
        _ => Err("expected ADMIN, MEMBER or VIEWER".into()),
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => {
            serve(
                cli.config,
                ServeArgs {
                    listen: default_listen(),
                },
            )
            .await
        }
        Some(Command::Serve(args)) => serve(cli.config, args).await,
        Some(Command::Schema) => {
            print!("{}", crate::graphql::sdl());
            Ok(())
        }
        Some(Command::Migrate) => {
            let db = crate::db::connect(&cli.config).await?;
            crate::db::migrate(&db, server::load_master_key(&cli.config)?).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Some(Command::Keys(command)) => keys(&cli.config, command).await,
        Some(Command::Audit(command)) => audit(&cli.config, command).await,
        Some(Command::Clearing(command)) => clearing(&cli.config, command).await,
        Some(Command::Keygen {
            out,
            secret,
            rotate,
        }) => {
            if rotate {
                let key_id = crate::payments::number_keys::rotate_file(&out)?;
                eprintln!(
                    "number-hash key {key_id} is now current in {}",
                    out.display()
                );
                return Ok(());
            }
            if secret {
                crate::auth::generate_secret_file(&out)?;
            } else {
                generate_signing_key_file(&out)?;
            }
            eprintln!("wrote {}", out.display());
            Ok(())
        }
        Some(Command::Token(TokenCommand::Create {
            org,
            role,
            member,
            ttl,
        })) => {
            let state = server::prepare(cli.config).await?;
            let identity = &state.services.identity;
            let organization = identity.find_organization(&org).await?;
            let name =
                member.unwrap_or_else(|| format!("cli-{}", format!("{role:?}").to_lowercase()));
            let member = identity
                .ensure_member(organization.id, &name, role.try_into()?)
                .await?;
            let minted = identity.mint_for(&member, ttl.map(Duration::from_secs))?;
            println!("{}", minted.token);
            Ok(())
        }
    }
}

async fn clearing(config: &HubConfig, command: ClearingCommand) -> anyhow::Result<()> {
    use std::io::Write;
    let ClearingCommand::Export { batch, out } = command;
    let batch_id = uuid::Uuid::parse_str(batch.trim())
        .ok()
        .or_else(|| {
            batch
                .trim()
                .parse::<crate::records::GlobalId>()
                .ok()
                .and_then(|id| id.id_of(crate::records::RecordKind::ClearingBatch))
        })
        .ok_or_else(|| {
            anyhow::anyhow!("--batch {batch:?} is neither a UUID nor a clearing batch ID")
        })?;
    let db = crate::db::connect(config).await?;
    let (text, sha256) = crate::clearing::export_manifest(&db, batch_id).await?;
    match out {
        Some(path) => std::fs::write(&path, text.as_bytes())?,
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    eprintln!("sha256 {sha256}");
    Ok(())
}

async fn audit(config: &HubConfig, command: AuditCommand) -> anyhow::Result<()> {
    use crate::audit::{AuditService, Checkpoint, Linker};
    use std::io::Write;
    let db = crate::db::connect(config).await?;
    let key = server::load_audit_key(config, false)?;
    crate::audit::service::check_key(&db, &key, false).await?;
    let (signer, _) = crate::auth::SigningKey::load(&config.signing_key_path(), false)?;
    let service = AuditService::new(db.clone(), key.clone(), signer);
    let organizations = |org: Option<String>| {
        let (db, service) = (db.clone(), service.clone());
        async move {
            match org {
                Some(org) => Ok::<_, anyhow::Error>(vec![find_organization(&db, &org).await?]),
                None => Ok(service.organizations().await?),
            }
        }
    };
    match command {
        AuditCommand::Checkpoint { org, out } => {
            let linker = Linker::new(db.clone(), key);
            while linker.link_pending().await? > 0 {}
            let mut lines = String::new();
            for organization in organizations(org).await? {
                lines.push_str(&serde_json::to_string(
                    &service.checkpoint(organization).await?,
                )?);
                lines.push('\n');
            }
            match out {
                Some(path) => std::fs::write(&path, lines)?,
                None => std::io::stdout().write_all(lines.as_bytes())?,
            }
            Ok(())
        }
        AuditCommand::Verify { org, checkpoint } => {
            let checkpoint_given = checkpoint.is_some();
            let checkpoints: Vec<Checkpoint> = match checkpoint {
                Some(path) => std::fs::read_to_string(&path)?
                    .lines()
                    .filter(|line| !line.trim().is_empty())
                    .map(serde_json::from_str)
                    .collect::<Result<_, _>>()
                    .map_err(|err| {
                        anyhow::anyhow!("{} is not a checkpoint file: {err}", path.display())
                    })?,
                None => Vec::new(),
            };
            // Every chain of the database and every organization a checkpoint names: a chain
            // deleted whole is a chain cut off before its checkpoint, not one to skip.
            let mut chains = organizations(org.clone()).await?;
            if org.is_none() {
                chains.extend(checkpoints.iter().map(|c| c.organization));
            } else if checkpoint_given
                && !checkpoints.iter().any(|c| chains.contains(&c.organization))
            {
                anyhow::bail!("the checkpoint file has no checkpoint for this organization");
            }
            chains.sort();
            chains.dedup();
            let mut broken = 0;
            for organization in chains {
                // The newest checkpoint proves the most.
                let given = checkpoints
                    .iter()
                    .filter(|c| c.organization == organization)
                    .max_by_key(|c| c.index);
                let outcome = service.verify(organization, given).await?;
                match &outcome.first_break {
                    None if outcome.rejected == 0 => println!(
                        "{organization}: intact, {} entries, {} pending{}",
                        outcome.entries_checked,
                        outcome.pending,
                        if given.is_some() {
                            ", reaches the checkpoint"
                        } else {
                            ""
                        }
                    ),
                    None => {
                        broken += 1;
                        println!(
                            "{organization}: {} rows written without the audit key were refused",
                            outcome.rejected
                        );
                    }
                    Some(first) => {
                        broken += 1;
                        println!(
                            "{organization}: BROKEN at index {} ({}): {:?}",
                            first.index,
                            first
                                .entry_id
                                .map_or_else(|| "no entry".to_owned(), |id| format!("entry {id}")),
                            first.reason
                        );
                    }
                }
            }
            if broken > 0 {
                anyhow::bail!("{broken} audit chain(s) do not verify");
            }
            Ok(())
        }
    }
}

/// An organization by UUID or exact name.
async fn find_organization(
    db: &sea_orm::DatabaseConnection,
    org: &str,
) -> anyhow::Result<uuid::Uuid> {
    use entities::organization;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    if let Ok(id) = org.parse::<uuid::Uuid>() {
        return Ok(id);
    }
    organization::Entity::find()
        .filter(organization::Column::Name.eq(org))
        .one(db)
        .await?
        .map(|found| found.id)
        .ok_or_else(|| anyhow::anyhow!("no organization named {org}"))
}

async fn keys(config: &HubConfig, command: KeysCommand) -> anyhow::Result<()> {
    use crate::crypto::{MasterKey, reseal, vault};
    let db = crate::db::connect(config).await?;
    match command {
        KeysCommand::Status { json } => {
            let status = reseal::status(&db)
                .await
                .map_err(|err| anyhow::anyhow!("cannot read the key status: {err}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(());
            }
            println!("primary data key: {}", status.primary);
            for key in &status.keys {
                println!(
                    "key {} {:<11} created {} master {}{}",
                    key.id,
                    key.purpose,
                    key.created_at.to_rfc3339(),
                    key.master_fingerprint,
                    if key.primary { " (primary)" } else { "" }
                );
            }
            for table in &status.tables {
                let by_key: Vec<String> = table
                    .rows_by_key
                    .iter()
                    .map(|(key, rows)| format!("key {key}: {rows}"))
                    .collect();
                println!(
                    "{}: {} rows to re-encrypt ({})",
                    table.table,
                    table.pending,
                    if by_key.is_empty() {
                        "no rows".to_owned()
                    } else {
                        by_key.join(", ")
                    }
                );
            }
            println!(
                "{}",
                if status.pending == 0 {
                    "every row is under the primary key".to_owned()
                } else {
                    format!("{} rows still under older keys", status.pending)
                }
            );
            Ok(())
        }
        KeysCommand::RotateData => {
            let master = server::load_master_key(config)?;
            let id = vault::rotate_data_key(&db, &master).await?;
            println!(
                "data key {id} is now primary; replicas re-encrypt older rows in the background"
            );
            Ok(())
        }
        KeysCommand::RotateMaster {
            new_master_key_file,
        } => {
            let old = server::load_master_key(config)?;
            let new = MasterKey::load(&new_master_key_file)?;
            let count = vault::rotate_master_key(&db, &old, &new).await?;
            println!(
                "{count} keys rewrapped under master key {}; restart every replica with {}",
                new.fingerprint(),
                new_master_key_file.display()
            );
            Ok(())
        }
    }
}

fn default_listen() -> std::net::SocketAddr {
    std::env::var("HUB_LISTEN")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| std::net::SocketAddr::from(([127, 0, 0, 1], 8080)))
}

async fn serve(config: HubConfig, args: ServeArgs) -> anyhow::Result<()> {
    let state = server::prepare(config).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {}: {err}", args.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "hub listening: GraphQL at /graphql, GraphiQL at /");
    let mut background = server::spawn_background(&state);
    background.extend(
        server::spawn_metrics_listener(&state)
            .await?
            .map(|(_, task)| task),
    );
    server::serve_on(listener, state, server::shutdown_signal()).await?;
    for task in background {
        task.abort();
    }
    tracing::info!("stopped");
    Ok(())
}
