//! [`Secrets`]: Docket's secrets (JWT secret, webhook secret key, SMTP password, database URL) from a Dapr secret
//! store, falling back to the environment (`--secrets dapr`).
//!
//! The layout is the deployment's (`deploy/`): one secret, `docket` by default — a Kubernetes
//! Secret, or a multi-valued key of the local-file store — whose keys are the environment
//! names: [`JWT_SECRET`] (`DOCKET_JWT_SECRET`), [`SECRET_KEY`], [`SMTP_PASSWORD`],
//! [`DATABASE_URL`].
//! [`Secrets::get`] reads that secret once (the first call; the answer is kept for the
//! process) and returns its key, else the environment variable of the same name; an empty value
//! counts as unset. A store without the secret (Dapr answers 204) leaves every key to the
//! environment; an unreachable sidecar or a misnamed store is an error, not a fallback, so a
//! wrong setting fails at boot instead of silently using another value. Values are
//! `SecretString`s and never logged.

use std::collections::BTreeMap;
use std::sync::Arc;

use secrecy::SecretString;
use tokio::sync::OnceCell;

use crate::client::{DaprClient, DaprError};

/// The JWT signing secret.
pub const JWT_SECRET: &str = "DOCKET_JWT_SECRET";
/// The key webhook signing secrets are encrypted with at rest.
pub const SECRET_KEY: &str = "DOCKET_SECRET_KEY";
/// The SMTP relay password.
pub const SMTP_PASSWORD: &str = "DOCKET_SMTP_PASSWORD";
/// The database URL.
pub const DATABASE_URL: &str = "DOCKET_DATABASE_URL";
/// The secret holding them, by default.
pub const DEFAULT_SECRET: &str = "docket";

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

struct Source {
    client: DaprClient,
    store: String,
    secret: String,
    read: OnceCell<BTreeMap<String, SecretString>>,
}

/// Where Docket's secrets come from.
#[derive(Clone)]
pub struct Secrets {
    dapr: Option<Arc<Source>>,
    env: EnvLookup,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("store", &self.dapr.as_ref().map(|s| (&s.store, &s.secret)))
            .finish()
    }
}

impl Secrets {
    /// Secrets from the process environment only.
    pub fn env() -> Secrets {
        Secrets { dapr: None, env: Arc::new(|name| std::env::var(name).ok()) }
    }

    /// Secrets from the keys of secret `secret` in the Dapr secret store component `store`,
    /// then the environment.
    pub fn dapr(
        client: DaprClient,
        store: impl Into<String>,
        secret: impl Into<String>,
    ) -> Secrets {
        let source =
            Source { client, store: store.into(), secret: secret.into(), read: OnceCell::new() };
        Secrets { dapr: Some(Arc::new(source)), ..Secrets::env() }
    }

    /// Replaces the environment lookup (tests: no process-wide variables).
    pub fn with_env(
        self,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Secrets {
        Secrets { env: Arc::new(lookup), ..self }
    }

    /// The secret `key` (an environment name such as [`JWT_SECRET`]): from the store, else
    /// from the environment, else `None`.
    pub async fn get(&self, key: &str) -> Result<Option<SecretString>, DaprError> {
        if let Some(source) = &self.dapr {
            let keys = source
                .read
                .get_or_try_init(|| async {
                    let read = source.client.secret(&source.store, &source.secret).await?;
                    Ok::<_, DaprError>(read.unwrap_or_default())
                })
                .await?;
            if let Some(value) = keys.get(key) {
                return Ok(Some(value.clone()));
            }
        }
        Ok((self.env)(key).filter(|v| !v.is_empty()).map(SecretString::from))
    }
}
