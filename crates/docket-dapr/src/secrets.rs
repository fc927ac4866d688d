//! [`Secrets`]: Docket's secrets (JWT secret, SMTP password, database URL) from a Dapr secret
//! store, falling back to the environment.
//!
//! For the server (`--secrets dapr`): build it with [`Secrets::dapr`] (or [`Secrets::env`]
//! without Dapr) and ask [`Secrets::get`] for [`JWT_SECRET`], [`SMTP_PASSWORD`] or
//! [`DATABASE_URL`] at boot. The secret named `name` is read from the store; when the store
//! has no such secret (Dapr answers 204, or the secret's map has neither a `name` entry nor a
//! single entry) or Dapr is not configured, the environment variable `DOCKET_` + `name` in
//! upper case with `-` as `_` is used (`jwt-secret` → `DOCKET_JWT_SECRET`). A sidecar that is
//! unreachable or has no such secret store is an error, not a fallback, so a misnamed store
//! fails at boot instead of silently using another value. Values are `SecretString`s and never
//! logged; this module does not cache or rotate them.

use std::sync::Arc;

use secrecy::SecretString;

use crate::client::{DaprClient, DaprError};

/// The JWT signing secret (`DOCKET_JWT_SECRET`).
pub const JWT_SECRET: &str = "jwt-secret";
/// The SMTP relay password (`DOCKET_SMTP_PASSWORD`).
pub const SMTP_PASSWORD: &str = "smtp-password";
/// The database URL (`DOCKET_DATABASE_URL`).
pub const DATABASE_URL: &str = "database-url";

type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where Docket's secrets come from.
#[derive(Clone)]
pub struct Secrets {
    dapr: Option<(DaprClient, String)>,
    env: EnvLookup,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").field("store", &self.dapr.as_ref().map(|(_, s)| s)).finish()
    }
}

impl Secrets {
    /// Secrets from the process environment only.
    pub fn env() -> Secrets {
        Secrets { dapr: None, env: Arc::new(|name| std::env::var(name).ok()) }
    }

    /// Secrets from the Dapr secret store component `store`, then the environment.
    pub fn dapr(client: DaprClient, store: impl Into<String>) -> Secrets {
        Secrets { dapr: Some((client, store.into())), ..Secrets::env() }
    }

    /// Replaces the environment lookup (tests: no process-wide variables).
    pub fn with_env(
        self,
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Secrets {
        Secrets { env: Arc::new(lookup), ..self }
    }

    /// The environment variable a secret falls back to.
    pub fn env_var(name: &str) -> String {
        let upper: String = name
            .chars()
            .map(|c| if c == '-' || c == '.' { '_' } else { c.to_ascii_uppercase() })
            .collect();
        format!("DOCKET_{upper}")
    }

    /// The secret `name`: from the store, else from the environment, else `None`. An empty
    /// environment value counts as unset.
    pub async fn get(&self, name: &str) -> Result<Option<SecretString>, DaprError> {
        if let Some((client, store)) = &self.dapr
            && let Some(mut map) = client.secret(store, name).await?
        {
            if let Some(value) = map.remove(name) {
                return Ok(Some(value));
            }
            if map.len() == 1
                && let Some((_, value)) = map.pop_first()
            {
                return Ok(Some(value));
            }
        }
        Ok((self.env)(&Secrets::env_var(name)).filter(|v| !v.is_empty()).map(SecretString::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names() {
        assert_eq!(Secrets::env_var(JWT_SECRET), "DOCKET_JWT_SECRET");
        assert_eq!(Secrets::env_var(SMTP_PASSWORD), "DOCKET_SMTP_PASSWORD");
        assert_eq!(Secrets::env_var(DATABASE_URL), "DOCKET_DATABASE_URL");
    }
}
