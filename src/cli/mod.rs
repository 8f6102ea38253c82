//! Command line: `callflex [serve]`, `callflex migrate`, `callflex rebuild [NAME...]`,
//! `callflex openapi`.

use clap::{Parser, Subcommand};

use aggregates::organization::{
    NotificationSettings, OrganizationCommand, OrganizationSettings, TransferNumbers, WebhookAuth,
};
use eventlog::CommandMeta;

use crate::config::Config;
use crate::simulate::{self, Signing};

mod audit;
mod rebuild;
mod redeliver;

pub use audit::{audit, AuditArgs};
pub use rebuild::{check_projector_names, rebuild, replay, Bound, ReplayArgs};
pub use redeliver::{redeliver, RedeliverArgs};

#[derive(Debug, Parser)]
#[command(name = "callflex", version, about = "CallFlex event-sourced backend")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server and the projectors (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Rebuild read models from position 0 into fresh tables and swap them in atomically,
    /// with a progress bar per projector (events/s, ETA). Safe while the service runs: its
    /// live projectors pause only for the last events and the swap, also across processes.
    /// An unknown name exits with status 2 and the list of names.
    Rebuild {
        /// Projector names: calls, transcripts, contacts, usage, billing, accounts,
        /// notifications, outbound_deliveries; all when omitted.
        names: Vec<String>,
    },
    /// Replay a slice of the log (positions and/or times) into scratch tables
    /// (`<table>__replay`) for analysis; the live read models are not touched, nothing is
    /// swapped in. Safe while the service runs.
    Replay(ReplayArgs),
    /// Print a stream's audited history (one JSON object per line), or its state as of a
    /// time or position: an operator's view of the store at DATABASE_URL (secrets masked).
    Audit(AuditArgs),
    /// Print the OpenAPI document.
    Openapi,
    /// Replay stored raw provider deliveries (a call's, or a time range's) through the same
    /// ingest path: into the same store nothing new is recorded; `--into` a fresh store
    /// rebuilds the same calls there.
    Redeliver(RedeliverArgs),
    /// Drive realistic, signed VAPI deliveries for N concurrent calls against a running server.
    Simulate(SimulateArgs),
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Base URL of the running server (default: http://127.0.0.1:$PORT, as `serve` listens).
    #[arg(long)]
    pub url: Option<String>,
    /// Play the calls into your own organization: a session token (from sign-in) or an
    /// organization API key. Everything then goes over HTTP. (A token may begin with '-':
    /// it is taken as the value, not as another option.)
    #[arg(long, env = "CALLFLEX_TOKEN", allow_hyphen_values = true)]
    pub token: Option<String>,
    /// Organization to post to (needed with a token when you belong to several).
    #[arg(long)]
    pub organization: Option<uuid::Uuid>,
    /// Create a demo organization (in the store at DATABASE_URL, which must be the running
    /// server's) whose VAPI secret is --secret.
    #[arg(long)]
    pub create_demo_org: bool,
    /// The organization's VAPI webhook secret. With --token and no --secret, the
    /// organization's secret is revealed (an admin sees it once) or, with --rotate-secret,
    /// rotated.
    #[arg(long)]
    pub secret: Option<String>,
    /// With --token: rotate the organization's webhook secret (the old one stays valid for a
    /// day) and play the calls with the new one.
    #[arg(long)]
    pub rotate_secret: bool,
    /// Sign with HMAC (`x-signature`) instead of the shared-secret header.
    #[arg(long)]
    pub hmac: bool,
    #[arg(long, default_value_t = 10)]
    pub calls: usize,
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
}

/// A command-line mistake: printed and the process exits with status 2 (as clap does).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// An embedded store must already exist (the server creates it): run from another
/// directory, `--create-demo-org` would otherwise create a second database silently.
fn ensure_existing_store(config: &Config) -> anyhow::Result<()> {
    if let Some(path) = config.database_url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or(path);
        if !std::path::Path::new(path).exists() {
            anyhow::bail!(
                "no database at {path}: start the server first, and run simulate from its \
                 directory (or set DATABASE_URL to the server's), or use --token"
            );
        }
    }
    Ok(())
}

/// Creates an organization ready to receive simulated calls and returns its id.
pub async fn create_demo_org(config: &Config, secret: &str) -> anyhow::Result<uuid::Uuid> {
    let store = eventlog::EventStore::open(&config.database_url, 2).await?;
    let repo =
        eventlog::AggregateRepository::<aggregates::organization::Organization>::new(store, ());
    let id = uuid::Uuid::new_v4();
    let actor = "system:simulate".to_string();
    let meta = CommandMeta::new(actor.clone()).tenant(id);
    // Sealed with the keys the server reads (see `secrets`).
    let keyring = match &config.keyring {
        Some(keyring) => keyring.clone(),
        None => crate::secrets::Keyring::load_or_create(&config.secret_key_file)?,
    };
    let commands = [
        OrganizationCommand::Create {
            id,
            name: "Demo Trucking Co".into(),
            owner_user_id: "demo-owner".into(),
            owner_email: "owner@demo.test".into(),
            actor: actor.clone(),
        },
        OrganizationCommand::ConfigureWebhookAuth {
            auth: WebhookAuth {
                shared_secret: Some(keyring.seal(secret)),
                hmac_secret: Some(keyring.seal(secret)),
                ..Default::default()
            },
            actor: actor.clone(),
        },
        OrganizationCommand::UpdateSettings {
            settings: OrganizationSettings {
                notifications: NotificationSettings {
                    sms_enabled: true,
                    sms_numbers: vec!["+15005550010".into()],
                    email_enabled: false,
                    email_addresses: vec![],
                    post_call_summary: true,
                    quiet_hours: None,
                    usage_alerts_sms: false,
                },
                transfer_numbers: TransferNumbers {
                    dispatch: Some("+15005550011".into()),
                    manager: None,
                    emergency: Some("+15005550012".into()),
                },
                business_hours: None,
                timezone: Some("America/Chicago".into()),
            },
            actor,
        },
    ];
    for command in commands {
        repo.execute(&id.to_string(), command, &meta)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(id)
}

/// Creates a read/write API key for `organization` (issued by the system) and returns its
/// secret, so the demo's calls can be queried right away.
pub async fn create_demo_api_key(
    config: &Config,
    organization: uuid::Uuid,
) -> anyhow::Result<String> {
    let store = eventlog::EventStore::open(&config.database_url, 2).await?;
    let repo =
        eventlog::AggregateRepository::<aggregates::organization::Organization>::new(store, ());
    let secret = crate::auth::new_api_key_secret();
    let actor = "system:simulate".to_string();
    repo.execute(
        &organization.to_string(),
        OrganizationCommand::CreateApiKey {
            key_id: uuid::Uuid::new_v4().to_string(),
            name: "demo".into(),
            key_hash: crate::auth::token_hash(&secret),
            scopes: vec![
                aggregates::organization::ApiKeyScope::Read,
                aggregates::organization::ApiKeyScope::Write,
            ],
            actor: actor.clone(),
        },
        &CommandMeta::new(actor).tenant(organization),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(secret)
}

const DEMO_SECRET: &str = "demo-vapi-secret";

pub async fn simulate(config: &Config, args: &SimulateArgs) -> anyhow::Result<()> {
    let base = args
        .url
        .clone()
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", config.listen.port()));
    let base = base.trim_end_matches('/').to_string();
    let mut api_key = args.token.clone();
    let (organization, secret) = match (&args.token, args.create_demo_org) {
        (Some(token), _) => {
            let organization =
                crate::simulate::own_organization(&base, token, args.organization).await?;
            let secret = match &args.secret {
                Some(secret) => secret.clone(),
                None => {
                    crate::simulate::webhook_secret(&base, token, organization, args.rotate_secret)
                        .await?
                }
            };
            (organization, secret)
        }
        (None, true) => {
            let secret = args
                .secret
                .clone()
                .unwrap_or_else(|| DEMO_SECRET.to_string());
            ensure_existing_store(config)?;
            let id = create_demo_org(config, &secret).await?;
            let key = create_demo_api_key(config, id).await?;
            // The organization was written to the store directly: make sure the server at
            // `base` reads the same store, rather than playing calls nobody can see.
            crate::simulate::check_server_knows(&base, &key).await?;
            println!("created demo organization {id} (VAPI secret: {secret}; API key: {key})");
            api_key = Some(key);
            (id, secret)
        }
        (None, false) => match (args.organization, &args.secret) {
            (Some(id), Some(secret)) => (id, secret.clone()),
            _ => anyhow::bail!(
                "pass --token <session token or API key> (your own organization), \
                 --create-demo-org, or --organization <id> --secret <its VAPI secret>"
            ),
        },
    };
    let url = format!("{base}/api/webhooks/vapi/{organization}");
    let signing = if args.hmac {
        Signing::Hmac(secret)
    } else {
        Signing::SharedSecret(secret)
    };
    let report = simulate::drive(&url, signing, args.calls, args.concurrency).await;
    let rate = report.deliveries as f64 / report.elapsed.as_secs_f64().max(1e-9);
    println!(
        "{} deliveries ({} failed) for {} calls in {:.2?}: {rate:.0}/s; p50 {:.2?}, p99 {:.2?}; \
         tool calls p99 {:.2?}",
        report.deliveries,
        report.failures,
        args.calls,
        report.elapsed,
        simulate::percentile(&report.latencies, 50.0),
        simulate::percentile(&report.latencies, 99.0),
        simulate::percentile(&report.tool_latencies, 99.0),
    );
    println!(
        "see them: curl -H 'Authorization: Bearer {}' {base}/api/v1/calls",
        api_key.as_deref().unwrap_or("<session token or API key>"),
    );
    if report.failures > 0 {
        anyhow::bail!(
            "{} deliveries failed; the first: {}",
            report.failures,
            report.first_failure.as_deref().unwrap_or("(no detail)")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};

    /// Session tokens are base64url: one in 64 begins with '-' (the newcomer test met one).
    #[test]
    fn a_token_beginning_with_a_hyphen_is_taken_as_the_token() {
        let cli = Cli::try_parse_from(["callflex", "simulate", "--token", "-Pq3x", "--calls", "3"])
            .expect("parses");
        let Some(Command::Simulate(args)) = cli.command else {
            panic!("not simulate");
        };
        assert_eq!(args.token.as_deref(), Some("-Pq3x"));
    }
}
