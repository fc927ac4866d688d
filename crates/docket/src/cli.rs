//! The command line: every flag has a `DOCKET_*` environment twin.
//!
//! Parsing only; each command's behaviour lives in its own module.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "docket",
    version,
    about = "Docket: an event-driven task service",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (API, with the embedded SQLite database by default).
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseArgs),
    /// Manage accounts directly in the database.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage personal access tokens directly in the database.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Add a task (client: talks to a running server).
    Add(AddArgs),
    /// List tasks (client).
    Ls(LsArgs),
    /// Mark a task completed (client).
    Done(IdArgs),
    /// Delete a task (client).
    Rm(IdArgs),
    /// Measure throughput and latency of a server (starts one unless --url is given).
    Bench(BenchArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(
        long = "database",
        env = "DOCKET_DATABASE_URL",
        default_value = "sqlite://./data/docket.db"
    )]
    pub database: String,
}

#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// What a `serve` process runs (§1 scale-out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// The HTTP API and real-time streams.
    Api,
    /// The event consumers (the audit log).
    Worker,
    /// The timer scheduler: fires due reminders.
    Scheduler,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port; the chosen address is printed).
    #[arg(long, env = "DOCKET_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Directory for local state (the generated JWT secret).
    #[arg(long, env = "DOCKET_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Secret for signing Docket's own JWTs; generated once into the data directory when unset.
    #[arg(long, env = "DOCKET_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Key that encrypts webhook signing secrets at rest: 32 bytes as base64 or hex (e.g.
    /// `openssl rand -base64 32`). When unset it is derived from the JWT secret, so changing
    /// that secret makes existing webhooks' secrets unreadable (their deliveries fail).
    #[arg(long, env = "DOCKET_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Lifetime of JWTs issued at signup/login, in seconds.
    #[arg(long, env = "DOCKET_TOKEN_TTL_SECS", default_value_t = 86_400)]
    pub token_ttl_secs: u64,
    /// Shared HS256 secret of an external identity provider (Better Auth).
    #[arg(long, env = "BETTER_AUTH_SECRET", hide_env_values = true)]
    pub better_auth_secret: Option<String>,
    /// JWKS URL of an external identity provider (EdDSA, ES256, RS256 keys).
    #[arg(long, env = "DOCKET_JWKS_URL")]
    pub jwks_url: Option<String>,
    /// Trust X-Forwarded-For for the client address (only behind a proxy you control).
    #[arg(long, env = "DOCKET_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,
    /// Log format on stderr.
    #[arg(long, env = "DOCKET_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What this process runs, comma-separated. A process without `api` serves only
    /// `/healthz`, `/readyz`, `/metrics` and `/openapi.json`.
    #[arg(
        long,
        env = "DOCKET_ROLES",
        value_enum,
        value_delimiter = ',',
        default_value = "api,worker,scheduler"
    )]
    pub roles: Vec<Role>,
    /// With `api` but not `worker`: how long completing a recurring task waits for the next
    /// instance, made by a `worker` process on the same database, to answer it as `next`;
    /// 0 when no worker runs on it (then `next` is null at once). A process with `worker`
    /// waits up to 1 s.
    #[arg(long, env = "DOCKET_NEXT_INSTANCE_WAIT_MS", default_value_t = 1000)]
    pub next_instance_wait_ms: u64,
    /// How long outbox events are kept once every consumer has passed them, e.g. `7d`,
    /// `36h`, `2w` or ISO 8601 `P7D` (role `scheduler` prunes). A consumer group that saves
    /// no position for this long (stopped, or a database switched to Dapr mode) no longer
    /// holds events back, so keep it well above how long a live consumer takes between
    /// commits; at least 1h. A real-time client away for longer is told to resync.
    #[arg(
        long,
        env = "DOCKET_OUTBOX_RETENTION",
        default_value = "7d",
        value_parser = parse_outbox_retention
    )]
    pub outbox_retention: std::time::Duration,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    #[command(flatten)]
    pub dapr: DaprArgs,
}

/// Which building blocks go through a Dapr sidecar (`DAPR_HTTP_PORT`, default 3500;
/// `DAPR_API_TOKEN` when the sidecar wants one).
#[derive(Debug, Clone, clap::Args)]
pub struct DaprArgs {
    /// Events: `embedded` (the outbox is the bus) or `dapr` (the outbox is relayed to the
    /// sidecar's Pub/Sub; the consumers are served at `/dapr/subscribe` and
    /// `/dapr/events/{topic}`).
    #[arg(long, env = "DOCKET_BUS", value_enum, default_value_t = Backend::Embedded)]
    pub bus: Backend,
    /// Timers: `embedded` (the scheduler sleeps on the database's index) or `dapr` (reminders
    /// and fixed-mode occurrences become Dapr jobs calling `POST /job/{name}`; the cron
    /// binding `POST /{binding}` sweeps too).
    #[arg(long, env = "DOCKET_SCHEDULER", value_enum, default_value_t = Backend::Embedded)]
    pub scheduler: Backend,
    /// The key-value state store: `embedded` (the database) or `dapr` (the sidecar's state
    /// store). Consumers' `processed:` keys stay in the database transaction either way.
    #[arg(long, env = "DOCKET_STATE", value_enum, default_value_t = Backend::Embedded)]
    pub state: Backend,
    /// Secrets (JWT secret, webhook secret key, SMTP password, database URL): `embedded`
    /// (flags and environment) or `dapr` (the keys `DOCKET_JWT_SECRET`, `DOCKET_SECRET_KEY`,
    /// `DOCKET_SMTP_PASSWORD`, `DOCKET_DATABASE_URL` of one secret in the sidecar's secret
    /// store win; flags and environment fill the rest).
    #[arg(long, env = "DOCKET_SECRETS", value_enum, default_value_t = Backend::Embedded)]
    pub secrets: Backend,
    /// The secret store component.
    #[arg(long, env = "DOCKET_DAPR_SECRET_STORE", default_value = "docket-secrets")]
    pub dapr_secret_store: String,
    /// The secret (in that store) holding Docket's secrets as keys.
    #[arg(long, env = "DOCKET_DAPR_SECRET_NAME", default_value = "docket")]
    pub dapr_secret_name: String,
    /// With `--bus dapr`, how a worker takes the sidecar's deliveries: `direct` (each delivery
    /// runs the topic's consumers on the spot; a transient failure is `RETRY`, poison `DROP`,
    /// and Dapr's resiliency policy retries and dead-letters) or `inbox` (each delivery is kept
    /// in the database and answered `SUCCESS`; the consumers read it as independent groups
    /// with their own retries and dead letters, so one failing consumer holds no other back).
    #[arg(long, env = "DOCKET_DAPR_DELIVERY", value_enum, default_value_t = DaprDelivery::Direct)]
    pub dapr_delivery: DaprDelivery,
    /// The Pub/Sub component.
    #[arg(long, env = "DOCKET_DAPR_PUBSUB", default_value = "docket-pubsub")]
    pub dapr_pubsub: String,
    /// The state store component.
    #[arg(long, env = "DOCKET_DAPR_STATE_STORE", default_value = "docket-state")]
    pub dapr_state_store: String,
    /// The `bindings.cron` component whose trigger sweeps what is due.
    #[arg(long, env = "DOCKET_DAPR_CRON_BINDING", default_value = "docket-sweep")]
    pub dapr_cron_binding: String,
    /// When set, Dapr's calls to this app must carry it (`dapr-api-token`), as daprd does
    /// with the same `APP_API_TOKEN`.
    #[arg(long, env = "APP_API_TOKEN", hide_env_values = true)]
    pub app_api_token: Option<String>,
}

/// How a Dapr-mode worker takes the sidecar's deliveries (see `--dapr-delivery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DaprDelivery {
    /// Run the consumers in the delivery's request.
    Direct,
    /// Keep the delivery in the database's inbox; consumers read it as the embedded bus.
    Inbox,
}

/// Where a building block lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// In this process, over the database.
    Embedded,
    /// Through the Dapr sidecar.
    Dapr,
}

/// How email and webhook deliveries are sent (role `worker` sends; every role checks).
#[derive(Debug, Clone, clap::Args)]
pub struct DeliveryArgs {
    /// The SMTP relay for the `email` reminder channel; without it, reminders cannot ask for
    /// email.
    #[arg(long, env = "DOCKET_SMTP_HOST")]
    pub smtp_host: Option<String>,
    /// The relay's port (default 25 with `--smtp-tls none`, 587 with `starttls`, 465 with `tls`).
    #[arg(long, env = "DOCKET_SMTP_PORT")]
    pub smtp_port: Option<u16>,
    /// How the SMTP connection is secured.
    #[arg(long, env = "DOCKET_SMTP_TLS", value_enum, default_value_t = SmtpTlsArg::Starttls)]
    pub smtp_tls: SmtpTlsArg,
    /// The SMTP user name, when the relay wants a login.
    #[arg(long, env = "DOCKET_SMTP_USERNAME")]
    pub smtp_username: Option<String>,
    /// The SMTP password.
    #[arg(long, env = "DOCKET_SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<String>,
    /// The `From` of reminder emails.
    #[arg(long, env = "DOCKET_SMTP_FROM", default_value = "Docket <docket@localhost>")]
    pub smtp_from: String,
    /// Lets webhooks target loopback, private and link-local addresses (closed networks only).
    #[arg(long, env = "DOCKET_WEBHOOKS_ALLOW_PRIVATE", default_value_t = false)]
    pub webhooks_allow_private: bool,
    /// Attempts before a delivery fails for good (and its reminder is marked failed).
    #[arg(long, env = "DOCKET_DELIVERY_MAX_ATTEMPTS", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub delivery_max_attempts: u32,
    /// The wait after a first failed attempt; it doubles after each further one (capped at
    /// 1 h), and each wait is shortened by up to half at random, e.g. `10s`, `500ms`.
    #[arg(long, env = "DOCKET_DELIVERY_BACKOFF", default_value = "10s", value_parser = parse_retention)]
    pub delivery_backoff: std::time::Duration,
}

/// `--smtp-tls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SmtpTlsArg {
    /// Plain text (a relay on this host or a closed network).
    None,
    /// STARTTLS, required.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

impl DeliveryArgs {
    /// The worker's configuration (the SMTP relay is [`DeliveryArgs::smtp`]).
    pub fn config(&self) -> docket_app::delivery::DeliveryConfig {
        let defaults = docket_app::delivery::DeliveryConfig::default();
        docket_app::delivery::DeliveryConfig {
            max_attempts: self.delivery_max_attempts,
            backoff: docket_core::Backoff { base: self.delivery_backoff, ..defaults.backoff },
            allow_private: self.webhooks_allow_private,
            ..defaults
        }
    }

    /// The SMTP relay email goes through, when `--smtp-host` names one.
    pub fn smtp(&self) -> Option<docket_outbound::SmtpConfig> {
        use docket_outbound::{SmtpConfig, SmtpTls};
        let tls = match self.smtp_tls {
            SmtpTlsArg::None => SmtpTls::None,
            SmtpTlsArg::Starttls => SmtpTls::StartTls,
            SmtpTlsArg::Tls => SmtpTls::Tls,
        };
        self.smtp_host.clone().map(|host| SmtpConfig {
            host,
            port: self.smtp_port.unwrap_or(match tls {
                SmtpTls::None => 25,
                SmtpTls::StartTls => 587,
                SmtpTls::Tls => 465,
            }),
            tls,
            username: self.smtp_username.clone(),
            password: self.smtp_password.clone().map(Into::into),
            from: self.smtp_from.clone(),
        })
    }
}

/// A positive duration in days, weeks, hours, minutes or seconds (`7d`, `1w 2d`, `36h`,
/// `P7D`); days are 24 hours. Months and years are refused: their length varies.
fn parse_retention(raw: &str) -> Result<std::time::Duration, String> {
    let span: jiff::Span = raw
        .trim()
        .parse()
        .map_err(|e| format!("duration '{raw}': {e} (expected e.g. 7d, 36h, 2w or P7D)"))?;
    let d = span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()).map_err(|_| {
        format!("duration '{raw}': months and years vary in length (use days or weeks, e.g. 30d)")
    })?;
    match std::time::Duration::try_from(d) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("duration '{raw}' must be positive (e.g. 7d)")),
    }
}

/// The shortest `--outbox-retention`: a consumer group that saves nothing for the retention no
/// longer holds the outbox, so a very short one could prune events a live consumer, idle or
/// slow for a moment, has not read yet.
const MIN_OUTBOX_RETENTION: std::time::Duration = std::time::Duration::from_secs(3600);

/// `--outbox-retention`: a duration as [`parse_retention`] reads it, at least
/// [`MIN_OUTBOX_RETENTION`].
fn parse_outbox_retention(raw: &str) -> Result<std::time::Duration, String> {
    let d = parse_retention(raw)?;
    if d < MIN_OUTBOX_RETENTION {
        return Err(format!(
            "outbox retention '{raw}' is too short: it must be at least 1h (e.g. 7d), since a \
             consumer group that saves no position for the retention no longer holds events \
             back and could lose events it has not read yet"
        ));
    }
    Ok(d)
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account.
    Add(UserAddArgs),
}

#[derive(Debug, Args)]
pub struct UserAddArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[arg(long)]
    pub email: String,
    /// The password; read from DOCKET_PASSWORD when not given.
    #[arg(long, env = "DOCKET_PASSWORD", hide_env_values = true)]
    pub password: String,
    #[arg(long)]
    pub name: Option<String>,
    /// IANA time zone, e.g. Europe/Berlin.
    #[arg(long)]
    pub timezone: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a personal access token for an account and print it (shown once).
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The account's email.
    #[arg(long)]
    pub email: String,
    /// A name to tell the token apart.
    #[arg(long, default_value = "cli")]
    pub name: String,
    /// Expire the token after this many days (never by default).
    #[arg(long)]
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Base URL of the Docket server.
    #[arg(long, env = "DOCKET_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Bearer token (a personal access token from `docket token create`, or a JWT).
    #[arg(long, env = "DOCKET_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The task's title.
    pub title: String,
    #[arg(long, short)]
    pub description: Option<String>,
    /// low, medium, high or urgent.
    #[arg(long, short)]
    pub priority: Option<String>,
    /// Due date: RFC 3339, a local date-time (2026-12-01T09:00) or a date.
    #[arg(long)]
    pub due: Option<String>,
    /// A tag (repeatable).
    #[arg(long = "tag", short)]
    pub tags: Vec<String>,
    /// A category name (created when new).
    #[arg(long, short)]
    pub category: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// pending, completed or all.
    #[arg(long, default_value = "pending")]
    pub status: String,
    /// Only tasks with this priority (comma list allowed).
    #[arg(long)]
    pub priority: Option<String>,
    /// Only tasks with this tag (repeatable: all must match).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only tasks in this category (name or id).
    #[arg(long)]
    pub category: Option<String>,
    /// Full-text search.
    #[arg(long, short)]
    pub query: Option<String>,
    /// Only pending tasks past their due date.
    #[arg(long)]
    pub overdue: bool,
    /// due_date, priority, title, created_at or updated_at.
    #[arg(long)]
    pub sort: Option<String>,
    /// asc or desc.
    #[arg(long)]
    pub order: Option<String>,
    /// How many tasks to show.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The task id (as shown by `docket ls`).
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Benchmark this running server instead of starting one.
    #[arg(long)]
    pub url: Option<String>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Seconds each measured phase runs.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Tasks seeded for the list benchmark's user.
    #[arg(long, default_value_t = 100_000)]
    pub list_tasks: usize,
    /// Database of the server the benchmark starts (default: a fresh SQLite file).
    #[arg(long)]
    pub database: Option<String>,
    /// Events the embedded bus phase publishes and delivers in this process (0 skips it).
    #[arg(long, default_value_t = 50_000)]
    pub bus_events: usize,
    /// Task writes whose end-to-end event latency (acknowledged → on `/api/stream`) is
    /// measured, 4 at a time (0 skips the phase).
    #[arg(long, default_value_t = 2_000)]
    pub event_writes: usize,
    /// Pending reminders the scheduler phase seeds and fires in this process (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    pub reminders: usize,
    /// How many of them come due per second.
    #[arg(long, default_value_t = 20_000)]
    pub reminder_rate: usize,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{parse_outbox_retention, parse_retention};

    #[test]
    fn retention_takes_humane_and_iso_durations() {
        let day = Duration::from_secs(86_400);
        for (raw, want) in [
            ("7d", 7 * day),
            ("2w", 14 * day),
            ("1w 2d", 9 * day),
            ("36h", Duration::from_secs(36 * 3600)),
            ("90m", Duration::from_secs(90 * 60)),
            ("P7D", 7 * day),
            ("PT12H", Duration::from_secs(12 * 3600)),
        ] {
            assert_eq!(parse_retention(raw), Ok(want), "{raw}");
        }
        for raw in ["", "7", "seven days", "0d", "-1d", "1 month", "P1Y"] {
            let e = parse_retention(raw).expect_err(raw);
            assert!(e.contains(&format!("'{raw}'")), "{raw}: {e}");
        }
    }

    #[test]
    fn outbox_retention_is_at_least_an_hour() {
        for (raw, want) in [
            ("1h", Duration::from_secs(3600)),
            ("60m", Duration::from_secs(3600)),
            ("PT1H", Duration::from_secs(3600)),
            ("7d", Duration::from_secs(7 * 86_400)),
        ] {
            assert_eq!(parse_outbox_retention(raw), Ok(want), "{raw}");
        }
        for raw in ["59m", "3599s", "PT30M", "1s"] {
            let e = parse_outbox_retention(raw).expect_err(raw);
            assert!(e.contains(&format!("'{raw}'")) && e.contains("at least 1h"), "{raw}: {e}");
        }
        // Malformed durations are refused as before.
        for raw in ["", "0d", "1 month"] {
            let e = parse_outbox_retention(raw).expect_err(raw);
            assert!(e.contains(&format!("'{raw}'")), "{raw}: {e}");
        }
        // `--delivery-backoff` shares the duration syntax but not the minimum.
        assert_eq!(parse_retention("10s"), Ok(Duration::from_secs(10)));
    }
}
