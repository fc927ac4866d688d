//! The `docket` binary: parses the command line and hands off to the server, the admin
//! commands that work on the database directly, the HTTP client commands, or the benchmark.
//!
//! No business logic lives here; it wires `docket-store`, `docket-app` and `docket-http`.

mod admin;
mod bench;
mod bench_reminders;
mod cli;
mod client;
mod secret;
mod server;

/// mimalloc rather than glibc malloc: request handling allocates and frees many short-lived
/// buffers (a 50-task page is tens of kilobytes of JSON) on several threads, where glibc spends
/// its time consolidating and locking arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser as _;

use crate::cli::{Cli, Command, TokenCommand, UserCommand};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            init_tracing(&args.log_format);
            server::serve(*args).await
        }
        Command::Migrate(args) => admin::migrate(&args).await,
        Command::User { command: UserCommand::Add(args) } => admin::user_add(args).await,
        Command::Token { command: TokenCommand::Create(args) } => admin::token_create(args).await,
        Command::Add(args) => client::add(args).await,
        Command::Ls(args) => client::ls(args).await,
        Command::Done(args) => client::done(args).await,
        Command::Rm(args) => client::rm(args).await,
        Command::Bench(args) => bench::run(args).await,
    }
}

fn init_tracing(format: &cli::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("DOCKET_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (never expected) is harmless; ignore its error.
    let _ = match format {
        cli::LogFormat::Json => builder.json().try_init(),
        cli::LogFormat::Text => builder.try_init(),
    };
}
