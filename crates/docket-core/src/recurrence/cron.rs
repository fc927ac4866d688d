//! Cron expressions: 5 fields (`minute hour day-of-month month day-of-week`) or 6 with seconds
//! first, parsed and matched by `croner` (which also reads `L`, `#` and `W`).
//!
//! `croner` is given civil date-times only (its `jiff::civil::DateTime` support), so it never
//! sees a time zone: the expansion maps each local match to an instant itself, the same way
//! as for RRULEs (see `expand.rs`), and croner's own DST policy does not apply. Day-of-month
//! and day-of-week combine with OR when both are restricted, as in Vixie cron.

use croner::parser::{CronParser, Seconds, Year};
use jiff::civil::DateTime;

use crate::error::Invalid;
use crate::names::known_by_text;

/// A parsed cron expression, kept with its normalised text (fields separated by one space).
#[derive(Clone)]
pub struct CronExpr {
    text: String,
    cron: croner::Cron,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    #[error(
        "cron expression is empty (expected 5 fields 'minute hour day-of-month month day-of-week', or 6 with seconds first, such as '0 9 * * 1-5')"
    )]
    Empty,
    #[error(
        "cron expression '{0}' has {1} fields (expected 5: 'minute hour day-of-month month day-of-week', or 6 with seconds first)"
    )]
    FieldCount(String, usize),
    #[error("cron expression '{expr}' is not valid: {reason}")]
    Invalid { expr: String, reason: String },
}

impl Invalid for CronError {
    fn code(&self) -> &'static str {
        match self {
            CronError::Empty => "required",
            _ => "invalid_cron",
        }
    }
}

impl CronExpr {
    pub fn parse(raw: &str) -> Result<CronExpr, CronError> {
        let fields: Vec<&str> = raw.split_whitespace().collect();
        let text = fields.join(" ");
        if fields.is_empty() {
            return Err(CronError::Empty);
        }
        if text.len() > 200 {
            let shown: String = text.chars().take(200).collect();
            return Err(CronError::Invalid { expr: shown, reason: "too long".to_owned() });
        }
        if !(5..=6).contains(&fields.len()) {
            return Err(CronError::FieldCount(text, fields.len()));
        }
        let parser =
            CronParser::builder().seconds(Seconds::Optional).year(Year::Disallowed).build();
        let cron = parser.parse(&text).map_err(|e| CronError::Invalid {
            expr: text.clone(),
            reason: e.to_string().trim_end_matches('.').to_owned(),
        })?;
        Ok(CronExpr { text, cron })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first local date-time at or after `from` (after it when not `inclusive`) that the
    /// expression matches; `None` when there is none before croner's search limit.
    pub(crate) fn next_local(&self, from: DateTime, inclusive: bool) -> Option<DateTime> {
        self.cron.find_next_occurrence(&from, inclusive).ok()
    }
}

known_by_text!(CronExpr, text);
