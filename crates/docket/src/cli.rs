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
    Serve(ServeArgs),
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
