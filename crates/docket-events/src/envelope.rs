//! The CloudEvents 1.0 envelope in structured JSON mode, as our own serde type.
//!
//! Why not `cloudevents-sdk`: its core `Event` keeps `time` as a chrono `DateTime` (we use
//! jiff everywhere, so every event would convert), stores extensions in an untyped map of
//! `ExtensionValue`s (our `partitionkey`, `sequence` and `traceparent` are part of the
//! contract and deserve typed fields), and its deserializer accepts what the spec allows,
//! not the stricter shape we publish (it cannot reject a malformed `traceparent`, a numeric
//! `sequence` or binary `data_base64` for us). Its broker integrations pin old rdkafka,
//! async-nats and reqwest, so we would use only these core types anyway. The envelope is
//! eleven fields; owning it keeps the JSON exact and the checks in one place ([`CloudEvent::parse`]).
//!
//! This module does not know topics or payload types; see `topics`, `types` and `payload`.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::trace::TraceContext;

/// The only `specversion` we read and write.
pub const SPEC_VERSION: &str = "1.0";
/// The `datacontenttype` of every event we write.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// A CloudEvent as published: context attributes, our extensions, and JSON `data`.
///
/// Serializes to the structured-mode JSON (`application/cloudevents+json`); absent optional
/// attributes are left out. Read events with [`CloudEvent::parse`], which checks them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CloudEvent {
    pub specversion: String,
    /// A UUIDv7 for the events we produce; consumers deduplicate on it.
    pub id: String,
    /// `/docket/{role}` for the events we produce.
    pub source: String,
    #[serde(rename = "type")]
    pub ty: String,
    /// The task id for task events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// Extension: the user id, the broker's partition (Kafka) key; order is kept per key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitionkey: Option<String>,
    /// Extension (CloudEvents `sequence`): the log position, set when read back from the
    /// outbox, as a zero-padded decimal string so string order equals log order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    /// Extension: W3C trace context, propagated through consumers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Other extension attributes (brokers and Dapr add some: `topic`, `pubsubname`, …),
    /// kept so that an event passes through unchanged.
    #[serde(flatten)]
    pub extensions: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// Why [`CloudEvent::parse`] rejected an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("cloudevent is not a json object: {0}")]
    NotJson(String),
    #[error("cloudevent attribute '{0}' is required")]
    Missing(&'static str),
    #[error("cloudevent attribute '{name}' must be {expected}, got {got}")]
    WrongType { name: String, expected: &'static str, got: String },
    #[error("cloudevent specversion '{0}' is not supported (expected 1.0)")]
    SpecVersion(String),
    #[error("cloudevent attribute '{0}' must not be empty")]
    Empty(&'static str),
    #[error(
        "cloudevent time '{0}' is not an RFC 3339 timestamp (expected e.g. 2026-11-18T09:30:00Z)"
    )]
    Time(String),
    #[error(
        "cloudevent traceparent '{0}' is not W3C trace context (expected 00-<32 hex>-<16 hex>-<2 hex>)"
    )]
    TraceParent(String),
    #[error("cloudevent datacontenttype '{0}' is not json (expected application/json)")]
    ContentType(String),
    #[error("cloudevent data_base64 is not supported (expected json data)")]
    BinaryData,
    #[error("cloudevent attribute name '{0}' is invalid (expected lower-case letters and digits)")]
    AttributeName(String),
    #[error("cloudevent data does not match {expected}: {message}")]
    Data { expected: &'static str, message: String },
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(_) => "a boolean".to_owned(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("'{s}'"),
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}

fn take_string(
    map: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, EnvelopeError> {
    match map.remove(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(EnvelopeError::WrongType {
            name: name.to_owned(),
            expected: "a string",
            got: kind(&other),
        }),
    }
}

fn required(map: &mut Map<String, Value>, name: &'static str) -> Result<String, EnvelopeError> {
    let s = take_string(map, name)?.ok_or(EnvelopeError::Missing(name))?;
    if s.is_empty() {
        return Err(EnvelopeError::Empty(name));
    }
    Ok(s)
}

/// `00-{trace-id:32 hex}-{parent-id:16 hex}-{flags:2 hex}`, lower-case, ids not all zero.
fn valid_traceparent(s: &str) -> bool {
    crate::trace::TraceContext::parse(s).is_some_and(|t| t.to_string() == s)
}

fn json_content_type(ct: &str) -> bool {
    let media = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    media == JSON_CONTENT_TYPE || media.ends_with("+json")
}

/// The `sequence` string of log position `seq`: zero-padded to 20 digits, so comparing the
/// strings (as the CloudEvents sequence extension does) orders events like their positions.
pub fn sequence_string(seq: i64) -> String {
    format!("{seq:020}")
}

/// What an event we produce carries besides its payload: its id, when and by whom it was
/// made, and the trace it belongs to. The caller makes it (the stores draw the id, a UUIDv7,
/// at the edge), so the event constructors read no clock and draw nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    pub id: Uuid,
    pub time: Timestamp,
    /// `/docket/{role}` (`task::source`).
    pub source: &'a str,
    pub trace: Option<TraceContext>,
}

impl CloudEvent {
    /// An event we produce: of type `ty` about `subject`, with JSON `data`, in the order of
    /// `partitionkey` (the user id), stamped by `origin`.
    pub(crate) fn produced(
        origin: Origin<'_>,
        ty: &str,
        subject: String,
        partitionkey: String,
        data: Value,
    ) -> CloudEvent {
        CloudEvent {
            specversion: SPEC_VERSION.to_owned(),
            id: origin.id.to_string(),
            source: origin.source.to_owned(),
            ty: ty.to_owned(),
            subject: Some(subject),
            time: Some(origin.time),
            datacontenttype: Some(JSON_CONTENT_TYPE.to_owned()),
            partitionkey: Some(partitionkey),
            sequence: None,
            traceparent: origin.trace.map(|t| t.to_string()),
            extensions: BTreeMap::new(),
            data: Some(data),
        }
    }

    /// Reads and checks a structured-mode JSON CloudEvent: `specversion` must be `1.0`; `id`,
    /// `source` and `type` non-empty strings; `time` RFC 3339; `subject`, `partitionkey`,
    /// `sequence` strings; `traceparent` W3C trace context; `datacontenttype` JSON; other
    /// attributes lower-case alphanumeric names with string, number or boolean values.
    pub fn parse(json: &[u8]) -> Result<CloudEvent, EnvelopeError> {
        let mut map: Map<String, Value> =
            serde_json::from_slice(json).map_err(|e| EnvelopeError::NotJson(e.to_string()))?;
        let specversion =
            take_string(&mut map, "specversion")?.ok_or(EnvelopeError::Missing("specversion"))?;
        if specversion != SPEC_VERSION {
            return Err(EnvelopeError::SpecVersion(specversion));
        }
        let id = required(&mut map, "id")?;
        let source = required(&mut map, "source")?;
        let ty = required(&mut map, "type")?;
        let subject = take_string(&mut map, "subject")?;
        let time = match take_string(&mut map, "time")? {
            None => None,
            Some(t) => Some(t.parse::<Timestamp>().map_err(|_| EnvelopeError::Time(t))?),
        };
        let datacontenttype = take_string(&mut map, "datacontenttype")?;
        if let Some(ct) = &datacontenttype
            && !json_content_type(ct)
        {
            return Err(EnvelopeError::ContentType(ct.clone()));
        }
        if map.contains_key("data_base64") {
            return Err(EnvelopeError::BinaryData);
        }
        let partitionkey = take_string(&mut map, "partitionkey")?;
        let sequence = take_string(&mut map, "sequence")?;
        let traceparent = take_string(&mut map, "traceparent")?;
        if let Some(tp) = &traceparent
            && !valid_traceparent(tp)
        {
            return Err(EnvelopeError::TraceParent(tp.clone()));
        }
        let data = map.remove("data");
        let mut extensions = BTreeMap::new();
        for (name, value) in map {
            if name.is_empty()
                || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return Err(EnvelopeError::AttributeName(name));
            }
            if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
                return Err(EnvelopeError::WrongType {
                    name,
                    expected: "a string, number or boolean",
                    got: kind(&value),
                });
            }
            extensions.insert(name, value);
        }
        Ok(CloudEvent {
            specversion,
            id,
            source,
            ty,
            subject,
            time,
            datacontenttype,
            partitionkey,
            sequence,
            traceparent,
            extensions,
            data,
        })
    }

    /// The structured-mode JSON of the event.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a CloudEvent of JSON values always serializes")
    }

    /// The log position in `sequence`, when it is one of ours.
    pub fn seq(&self) -> Option<i64> {
        self.sequence.as_deref()?.parse().ok()
    }

    /// `data` read as the payload type `T` (`TaskEventDataV1`, …).
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, EnvelopeError> {
        let expected = std::any::type_name::<T>().rsplit("::").next().unwrap_or("the payload");
        let data = self.data.clone().ok_or(EnvelopeError::Missing("data"))?;
        serde_json::from_value(data)
            .map_err(|e| EnvelopeError::Data { expected, message: e.to_string() })
    }
}
