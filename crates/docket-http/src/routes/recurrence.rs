//! `POST /api/recurrence/preview` (DESIGN §2.3): the next occurrences of a preset, an RRULE or
//! a cron expression from a local start, each as local time and as a UTC instant.
//!
//! The body is converted here into `docket-core` values (a 422 names each bad field: `rule`,
//! `cron`, `preset`, `interval`, `timezone`, `start`, `count`); the computation is the app's
//! `preview_recurrence`. Nothing is stored.

use axum::Json;
use axum::response::IntoResponse;
use docket_core::recurrence::Occurrence;
use docket_core::{
    PreviewCount, Recurrence, RecurrenceSpec, User, ValidationErrors, Zone, parse_local_start,
};
use jiff::civil::DateTime;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::{Caller, JsonBody};
use crate::problem::ApiError;

/// What to preview: exactly one of `preset`, `rule` or `cron`, and where it starts.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct PreviewBody {
    /// `daily`, `weekly`, `monthly` or `yearly`.
    pub preset: Option<String>,
    /// Every N periods of the preset (1–10000, default 1); only with `preset`.
    pub interval: Option<i64>,
    /// RFC 5545 RRULE text, with or without the `RRULE:` prefix
    /// (`FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9`).
    pub rule: Option<String>,
    /// A cron expression: 5 fields, or 6 with seconds first (`0 9 * * 1-5`).
    pub cron: Option<String>,
    /// The series' first local date-time, without an offset (`2026-03-29T09:00:00`).
    #[schema(value_type = String, required = true)]
    pub start: Option<String>,
    /// IANA zone the rule runs in; default the caller's zone, else UTC.
    pub timezone: Option<String>,
    /// How many occurrences, 1–500 (default 10).
    pub count: Option<i64>,
}

/// One occurrence.
#[derive(Debug, Serialize, ToSchema)]
pub struct OccurrenceDto {
    /// Local date-time in the recurrence's zone, as the rule produced it.
    pub local: String,
    /// The instant it maps to (a local time in a DST gap moves forward, one in an overlap
    /// takes the earlier instant), RFC 3339 UTC.
    #[schema(format = DateTime)]
    pub utc: String,
}

impl From<&Occurrence> for OccurrenceDto {
    fn from(o: &Occurrence) -> Self {
        OccurrenceDto {
            local: o.local.strftime("%Y-%m-%dT%H:%M:%S").to_string(),
            utc: o.at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        }
    }
}

/// The next occurrences, in order; empty when the recurrence never matches.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewDto {
    pub occurrences: Vec<OccurrenceDto>,
}

/// The parsed body: every bad field reported at once.
fn parse_body(
    body: PreviewBody,
    user: &User,
) -> Result<(Recurrence, DateTime, PreviewCount), ValidationErrors> {
    let mut errors = ValidationErrors::new();
    let spec = RecurrenceSpec {
        preset: body.preset,
        interval: body.interval,
        rule: body.rule,
        cron: body.cron,
        timezone: body.timezone,
        ..RecurrenceSpec::default()
    };
    let default_zone = user.timezone.clone().unwrap_or_else(Zone::utc);
    let recurrence = match Recurrence::parse_at(&spec, &default_zone, "") {
        Ok(r) => Some(r),
        Err(e) => {
            errors.0.extend(e.0);
            None
        }
    };
    let start = match body.start.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(raw) => errors.check("start", parse_local_start(raw)),
        None => {
            errors.push(docket_core::FieldError::custom(
                "start",
                "required",
                "start is required: the series' first local date-time, such as '2026-03-29T09:00:00'",
            ));
            None
        }
    };
    let count = match body.count {
        Some(n) => errors.check("count", PreviewCount::parse(n)),
        None => Some(PreviewCount::default()),
    };
    errors.into_result()?;
    match (recurrence, start, count) {
        (Some(r), Some(s), Some(c)) => Ok((r, s, c)),
        _ => unreachable!("every part that failed recorded an error"),
    }
}

/// Previews a recurrence: its next occurrences from `start`, in local time and UTC.
#[utoipa::path(post, path = "/recurrence/preview", operation_id = "preview_recurrence",
    tag = "recurrence",
    request_body = PreviewBody,
    responses((status = 200, description = "the next occurrences", body = PreviewDto)))]
pub async fn preview(
    Caller(app, user): Caller,
    JsonBody(body): JsonBody<PreviewBody>,
) -> Result<impl IntoResponse, ApiError> {
    let (recurrence, start, count) = parse_body(body, &user)?;
    let occurrences = app.preview_recurrence(&user, &recurrence, start, count)?;
    Ok(Json(PreviewDto { occurrences: occurrences.iter().map(OccurrenceDto::from).collect() }))
}
