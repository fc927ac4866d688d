//! Webhooks (§2.5, §3, §6): `GET`/`POST /api/webhooks`, `GET`/`PATCH`/`DELETE
//! /api/webhooks/{id}`, `GET /api/webhooks/{id}/deliveries` and
//! `POST /api/webhooks/{id}/deliveries/{did}/retry`.
//!
//! A webhook receives the events it names as `POST`s of the CloudEvent JSON, signed with
//! `X-Docket-Signature: sha256=<hex HMAC-SHA256(secret, body)>`; `X-Docket-Delivery` is the
//! delivery id (the same on every retry). The secret is returned once, by the create.

use axum::Json;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use docket_app::webhooks::{CreatedWebhook, WebhookInput};
use docket_core::{Delivery, Limit, Webhook, WebhookId};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::extract::{Caller, DeliveryIdParam, Id, JsonBody};
use crate::problem::{ApiError, Conflict, Unprocessable};
use crate::routes::{Deleted, Reply, deleted, list, one};

/// A webhook to create, or the fields of one to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookBody {
    /// An `http` or `https` URL on a public address (unless the server allows private ones).
    pub url: Option<String>,
    /// The event types it receives: any of `com.todo.task.created`, `…updated`,
    /// `…completed`, `…reopened`, `…deleted` and `com.todo.reminder.triggered` (a reminder
    /// reaches webhooks when it asks for the `webhook` channel).
    pub events: Option<Vec<String>>,
    /// False to stop deliveries without deleting it (default true).
    pub active: Option<bool>,
}

impl From<WebhookBody> for WebhookInput {
    fn from(b: WebhookBody) -> WebhookInput {
        WebhookInput { url: b.url, events: b.events, active: b.active }
    }
}

/// A webhook. `secret` appears only in the answer to its creation.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDto {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub active: bool,
    /// The HMAC-SHA256 key of `X-Docket-Signature`; shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Webhook> for WebhookDto {
    fn from(w: &Webhook) -> WebhookDto {
        WebhookDto {
            id: w.id.to_string(),
            url: w.url.clone(),
            events: w.events.clone(),
            active: w.active,
            secret: None,
            created_at: w.created_at.to_string(),
            updated_at: w.updated_at.to_string(),
        }
    }
}

/// One delivery to a webhook and where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDto {
    /// Also the `X-Docket-Delivery` header's value.
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    /// The CloudEvent id.
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed` (gave up after its last attempt).
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

impl From<&Delivery> for DeliveryDto {
    fn from(d: &Delivery) -> DeliveryDto {
        DeliveryDto {
            id: d.id.to_string(),
            event_id: d.event_id.clone(),
            event_type: d.event_type.clone(),
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.map(|t| t.to_string()),
            last_error: d.last_error.clone(),
            created_at: d.created_at.to_string(),
            delivered_at: d.delivered_at.map(|t| t.to_string()),
        }
    }
}

/// The caller's webhooks, oldest first.
#[utoipa::path(get, path = "/webhooks", operation_id = "list_webhooks", tag = "webhooks",
    responses((status = 200, description = "the webhooks", body = Vec<WebhookDto>)))]
pub async fn list_webhooks(Caller(app, user): Caller) -> Reply<Vec<WebhookDto>> {
    list(&app.list_webhooks(&user).await?)
}

/// Creates a webhook; the answer holds its secret, shown this once.
#[utoipa::path(post, path = "/webhooks", operation_id = "create_webhook", tag = "webhooks",
    request_body = WebhookBody,
    responses(
        (status = 201, description = "the new webhook with its secret", body = WebhookDto),
        (status = 409, response = Conflict),
    ))]
pub async fn create_webhook(
    Caller(app, user): Caller,
    JsonBody(body): JsonBody<WebhookBody>,
) -> Result<impl IntoResponse, ApiError> {
    let CreatedWebhook { webhook, secret } = app.create_webhook(&user, body.into()).await?;
    let mut dto = WebhookDto::from(&webhook);
    dto.secret = Some(secret);
    Ok((StatusCode::CREATED, Json(dto)))
}

/// One of the caller's webhooks (without its secret).
#[utoipa::path(get, path = "/webhooks/{id}", operation_id = "get_webhook", tag = "webhooks",
    params(Id<WebhookId>),
    responses((status = 200, description = "the webhook", body = WebhookDto)))]
pub async fn get_webhook(Caller(app, user): Caller, Id(id): Id<WebhookId>) -> Reply<WebhookDto> {
    one(&app.get_webhook(&user, id).await?)
}

/// Changes the fields given of one of the caller's webhooks.
#[utoipa::path(patch, path = "/webhooks/{id}", operation_id = "update_webhook", tag = "webhooks",
    params(Id<WebhookId>),
    request_body = WebhookBody,
    responses((status = 200, description = "the webhook", body = WebhookDto)))]
pub async fn update_webhook(
    Caller(app, user): Caller,
    Id(id): Id<WebhookId>,
    JsonBody(body): JsonBody<WebhookBody>,
) -> Reply<WebhookDto> {
    one(&app.update_webhook(&user, id, body.into()).await?)
}

/// Deletes one of the caller's webhooks and its deliveries.
#[utoipa::path(delete, path = "/webhooks/{id}", operation_id = "delete_webhook", tag = "webhooks",
    params(Id<WebhookId>),
    responses((status = 204, description = "deleted")))]
pub async fn delete_webhook(Caller(app, user): Caller, Id(id): Id<WebhookId>) -> Deleted {
    deleted(app.delete_webhook(&user, id).await)
}

/// `?limit=` of a delivery list.
#[derive(Debug, Deserialize, IntoParams)]
pub struct DeliveryParams {
    /// At most this many, newest first (1–200, default 50).
    pub limit: Option<String>,
}

/// The deliveries to one of the caller's webhooks, newest first.
#[utoipa::path(get, path = "/webhooks/{id}/deliveries", operation_id = "list_deliveries", tag = "webhooks",
    params(Id<WebhookId>, DeliveryParams),
    responses(
        (status = 200, description = "the deliveries", body = Vec<DeliveryDto>),
        (status = 422, response = Unprocessable),
    ))]
pub async fn list_deliveries(
    Caller(app, user): Caller,
    Id(id): Id<WebhookId>,
    Query(params): Query<DeliveryParams>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = match params.limit.as_deref() {
        Some(raw) => Limit::parse(raw).map_err(|e| {
            docket_app::AppError::Validation(docket_core::ValidationErrors::single(
                docket_core::FieldError::new("limit", &e),
            ))
        })?,
        None => Limit::default(),
    };
    let limit = usize::try_from(limit.get()).unwrap_or(usize::MAX);
    let items = app.list_deliveries(&user, id, limit).await?;
    Ok(Json(items.iter().map(DeliveryDto::from).collect::<Vec<_>>()))
}

/// Sends a failed delivery again (its attempts counted afresh); a delivery that has not
/// failed is returned as it is.
#[utoipa::path(post, path = "/webhooks/{id}/deliveries/{did}/retry", operation_id = "retry_delivery", tag = "webhooks",
    params(Id<WebhookId>, DeliveryIdParam),
    responses((status = 200, description = "the delivery, pending again", body = DeliveryDto)))]
pub async fn retry_delivery(
    Caller(app, user): Caller,
    Id(id): Id<WebhookId>,
    DeliveryIdParam(did): DeliveryIdParam,
) -> Reply<DeliveryDto> {
    one(&app.retry_delivery(&user, id, did).await?)
}
