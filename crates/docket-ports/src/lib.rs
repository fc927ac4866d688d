//! The ports of Docket: contracts the use cases (`docket-app`) call out through, written as
//! small traits with their rules, so that the use-case crate depends on no database driver,
//! HTTP client, mail or broker library and each adapter can be swapped or tested alone.
//!
//! This crate holds contracts only: no implementation, no IO, no dependency beyond
//! `async-trait`. The adapters live elsewhere (`docket-outbound` for HTTP and SMTP) and the
//! binary wires them in. The storage contracts are still in `docket-store`.

pub mod outbound;

pub use outbound::{
    JwksSource, MailTransport, OutboundMail, PostError, WebhookPost, WebhookTransport,
};
