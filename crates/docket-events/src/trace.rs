//! W3C trace context (`traceparent`) carried from a request through the events it causes and
//! through the consumers that react to them (§5).
//!
//! This module is the value and its wire form only: every event constructor takes the context
//! as an argument and stamps it as `traceparent`. Which context is current (a task-local the
//! HTTP edge and the consumer runtime set, the stores read), and drawing the random ids of a
//! new trace or span (`docket_trace::new_span`), are `docket-trace`'s.

use std::fmt;

/// One span's place in a trace: `00-{trace_id}-{span_id}-{flags}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    trace_id: u128,
    span_id: u64,
    flags: u8,
}

impl TraceContext {
    /// A new trace (sampled) with the given ids; `None` when either is zero (W3C reserves
    /// the all-zero ids).
    pub fn root(trace_id: u128, span_id: u64) -> Option<TraceContext> {
        (trace_id != 0 && span_id != 0).then_some(TraceContext { trace_id, span_id, flags: 0x01 })
    }

    /// Parses a `traceparent` header value; `None` unless it is valid version-00 context
    /// (lower-case hex, ids not all zero).
    pub fn parse(value: &str) -> Option<TraceContext> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let lower_hex = |p: &str, n: usize| {
            p.len() == n && p.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if parts.next().is_some()
            || version != "00"
            || !lower_hex(trace, 32)
            || !lower_hex(span, 16)
            || !lower_hex(flags, 2)
        {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(TraceContext { trace_id, span_id, flags })
    }

    /// New span `span_id` in the same trace, this one its parent; `None` when `span_id` is
    /// zero.
    pub fn child(&self, span_id: u64) -> Option<TraceContext> {
        (span_id != 0).then_some(TraceContext { span_id, ..*self })
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}
