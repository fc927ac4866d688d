//! Webhooks (§6): the use cases — create with a secret shown once and stored sealed with the
//! server key (`secret_key`), list, get, update, delete, a webhook's deliveries and their
//! retry, sealing the plain secrets of older rows at start — over the parts that live beside
//! them: [`signature`] (the `X-Docket-Signature`), [`target`] (which URLs and addresses a
//! webhook may reach) and [`dispatcher`] (the consumer turning task events into deliveries).
//! Sending is the delivery worker's (`crate::delivery`).

pub mod dispatcher;
pub mod signature;
pub mod target;

pub use dispatcher::{CONSUMER, config, handle, handler};
pub use signature::signature;
pub use target::{TargetError, is_public, public_addresses, target};

use docket_core::{
    Delivery, DeliveryId, FieldError, NewWebhook, User, ValidationErrors, Webhook, WebhookId,
    WebhookPatch,
};
use docket_events::types;

use crate::AppError;
use crate::secret_key::is_sealed;

/// The event types a webhook may subscribe to.
pub const EVENTS: [&str; 6] = [
    types::TASK_CREATED,
    types::TASK_UPDATED,
    types::TASK_COMPLETED,
    types::TASK_REOPENED,
    types::TASK_DELETED,
    types::REMINDER_TRIGGERED,
];

/// A webhook as the caller gives it.
#[derive(Debug, Clone, Default)]
pub struct WebhookInput {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub active: Option<bool>,
}

/// A new webhook and its secret, shown this once.
#[derive(Debug, Clone)]
pub struct CreatedWebhook {
    pub webhook: Webhook,
    pub secret: String,
}

/// A fresh signing secret: `whsec_` and 32 random bytes in hex.
fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("whsec_{}", hex::encode(bytes))
}

fn field(name: &str, code: &str, message: impl Into<String>) -> AppError {
    AppError::Validation(ValidationErrors::single(FieldError::custom(name, code, message)))
}

impl crate::App {
    /// Checks a URL as a webhook target: shape, then (unless private targets are allowed)
    /// that every address it resolves to is public.
    async fn checked_url(&self, raw: &str) -> Result<String, AppError> {
        let url = target(raw).map_err(|e| field("url", "invalid", e.to_string()))?;
        public_addresses(&url, self.webhooks_allow_private).await.map_err(|e| match e {
            TargetError::NotPublic { .. } => {
                field("url", "not_public", format!("{e}; webhooks may only reach public addresses"))
            }
            other => field("url", "unresolved", other.to_string()),
        })?;
        Ok(url.to_string())
    }

    fn checked_events(events: Vec<String>) -> Result<Vec<String>, AppError> {
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let e = e.trim().to_owned();
            if !EVENTS.contains(&e.as_str()) {
                return Err(field(
                    "events",
                    "unknown",
                    format!(
                        "'{e}' is not an event a webhook can receive (one of {})",
                        EVENTS.join(", ")
                    ),
                ));
            }
            out.push(e);
        }
        out.sort();
        out.dedup();
        if out.is_empty() {
            return Err(field("events", "required", "name at least one event type"));
        }
        Ok(out)
    }

    /// Creates a webhook of the caller; its secret is returned this once.
    pub async fn create_webhook(
        &self,
        user: &User,
        input: WebhookInput,
    ) -> Result<CreatedWebhook, AppError> {
        let raw = input.url.ok_or_else(|| field("url", "required", "a webhook needs a url"))?;
        let url = self.checked_url(&raw).await?;
        let events = Self::checked_events(input.events.unwrap_or_default())?;
        if self.store.list_webhooks(user.id).await?.len() >= MAX_WEBHOOKS {
            return Err(AppError::Conflict(format!(
                "a user has at most {MAX_WEBHOOKS} webhooks; delete one first"
            )));
        }
        let secret = new_secret();
        let id = docket_ports::ids::new_id();
        let new = NewWebhook {
            id,
            url,
            events,
            secret: self.secret_key.seal(id, &secret),
            active: input.active.unwrap_or(true),
        };
        let webhook = self.store.create_webhook(user.id, new, self.clock.now()).await?;
        Ok(CreatedWebhook { webhook, secret })
    }

    pub async fn list_webhooks(&self, user: &User) -> Result<Vec<Webhook>, AppError> {
        Ok(self.store.list_webhooks(user.id).await?)
    }

    pub async fn get_webhook(&self, user: &User, id: WebhookId) -> Result<Webhook, AppError> {
        Ok(self.store.get_webhook(user.id, id).await?)
    }

    /// Changes the caller's webhook: the fields given, checked as on create.
    pub async fn update_webhook(
        &self,
        user: &User,
        id: WebhookId,
        input: WebhookInput,
    ) -> Result<Webhook, AppError> {
        let url = match input.url {
            Some(raw) => Some(self.checked_url(&raw).await?),
            None => None,
        };
        let events = input.events.map(Self::checked_events).transpose()?;
        let patch = WebhookPatch { url, events, active: input.active };
        Ok(self.store.update_webhook(user.id, id, patch, self.clock.now()).await?)
    }

    pub async fn delete_webhook(&self, user: &User, id: WebhookId) -> Result<(), AppError> {
        Ok(self.store.delete_webhook(user.id, id).await?)
    }

    /// Seals every webhook secret still stored in plain text (rows from before sealing, or
    /// written by an older version during a rolling upgrade); returns how many it sealed.
    /// Safe to run from several processes at once: each replacement happens only while the
    /// row still holds the plain value it read, so a secret is sealed once.
    pub async fn seal_webhook_secrets(&self) -> Result<usize, AppError> {
        let mut sealed = 0;
        let mut after = None;
        loop {
            let page = self.store.webhook_secrets(after, SEAL_PAGE).await?;
            let Some(&(last, _)) = page.last() else { break };
            after = Some(last);
            for (id, stored) in page {
                if is_sealed(&stored) {
                    continue;
                }
                let new = self.secret_key.seal(id, &stored);
                if self.store.replace_webhook_secret(id, stored, new).await? {
                    sealed += 1;
                }
            }
        }
        Ok(sealed)
    }

    /// The deliveries to the caller's webhook, newest first.
    pub async fn list_deliveries(
        &self,
        user: &User,
        id: WebhookId,
        limit: usize,
    ) -> Result<Vec<Delivery>, AppError> {
        Ok(self.store.list_deliveries(user.id, id, limit).await?)
    }

    /// Puts a failed delivery to the caller's webhook back in line, due now.
    pub async fn retry_delivery(
        &self,
        user: &User,
        webhook: WebhookId,
        id: DeliveryId,
    ) -> Result<Delivery, AppError> {
        Ok(self.store.retry_delivery(user.id, webhook, id, self.clock.now()).await?)
    }
}

/// Most webhooks one user may have.
pub const MAX_WEBHOOKS: usize = 25;

/// Stored secrets read per page by `App::seal_webhook_secrets`.
const SEAL_PAGE: usize = 200;
