//! The outbound adapters of Docket: the `docket-ports` transports over real protocols.
//! [`HttpWebhooks`] posts webhooks with `reqwest` (pinned to the checked addresses, no
//! redirects, no proxy), [`SmtpMailer`] sends email through an SMTP relay with `lettre`, and
//! [`HttpJwks`] fetches a JWKS document.
//!
//! They decide nothing: which target is allowed, what is signed, when to retry and how keys
//! are cached belong to the use cases in `docket-app`.

mod jwks;
mod smtp;
mod webhooks;

pub use jwks::HttpJwks;
pub use smtp::{SmtpConfig, SmtpConfigError, SmtpMailer, SmtpTls};
pub use webhooks::HttpWebhooks;

/// `e` and its sources, joined, so a refused connection says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
