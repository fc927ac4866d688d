//! Admin commands that work on the database directly, without a running server:
//! `docket migrate`, `docket user add`, `docket token create`.

use anyhow::{Context as _, anyhow};

use std::sync::Arc;

use docket_app::{App, AuthConfig};
use docket_ports::Store;

use crate::cli::{DatabaseArgs, TokenCreateArgs, UserAddArgs};
use crate::server::{open_store, redact};

/// An `App` for admin commands. They never issue or verify JWTs, so the signing secret is a
/// fresh random one rather than the server's.
fn admin_app(store: Arc<dyn Store>) -> App {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    App::new(store, AuthConfig::new(secret))
}

pub async fn migrate(args: &DatabaseArgs) -> anyhow::Result<()> {
    // Opening a store applies every pending migration.
    let store = open_store(&args.database).await?;
    store.ping().await.context("database does not answer after migrating")?;
    println!("migrated {} ({})", redact(&args.database), store.backend());
    Ok(())
}

pub async fn user_add(args: UserAddArgs) -> anyhow::Result<()> {
    let store = open_store(&args.db.database).await?;
    let app = admin_app(store);
    let user = app
        .create_user_admin(
            &args.email,
            &args.password,
            args.name.as_deref(),
            args.timezone.as_deref(),
        )
        .await
        .map_err(|e| anyhow!("{e}"))?;
    println!("created user {} ({})", user.id, args.email.trim().to_lowercase());
    Ok(())
}

pub async fn token_create(args: TokenCreateArgs) -> anyhow::Result<()> {
    let store = open_store(&args.db.database).await?;
    let record =
        store.user_by_email(&args.email.trim().to_lowercase()).await?.ok_or_else(|| {
            anyhow!("no account with email '{}'; create it with `docket user add`", args.email)
        })?;
    let app = admin_app(store);
    let expires = match args.expires_in_days {
        Some(days) => Some(
            jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_hours(i64::from(days) * 24))
                .context("--expires-in-days is too far in the future")?,
        ),
        None => None,
    };
    let created = app
        .create_token_for(record.user.id, &args.name, expires)
        .await
        .map_err(|e| anyhow!("{e}"))?;
    // The token goes alone on stdout so `DOCKET_TOKEN=$(docket token create …)` works.
    eprintln!("token '{}' created for {}; it is shown only once:", args.name, args.email);
    println!("{}", created.token);
    Ok(())
}
