//! Outbound ports: webhook POSTs, email, and the JWKS document external identities are
//! verified with.
//!
//! What to send, to whom, signed how, and whether a target may be reached at all is decided
//! by the caller (the delivery worker checks a webhook's addresses and signs its body; the
//! authenticator caches keys and limits refetches); a transport only moves bytes and reports
//! what happened, in words a person can act on.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;

/// One webhook request, fully decided by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookPost {
    /// The absolute `http`/`https` URL, already checked.
    pub url: String,
    /// The addresses the URL's host was checked against: the request MUST go to one of them
    /// and nowhere else (no fresh name resolution, no proxy, no redirect).
    pub addrs: Vec<SocketAddr>,
    /// Extra headers besides `Content-Type: application/json` (signature, delivery id, event).
    pub headers: Vec<(String, String)>,
    /// The JSON body, sent as it is.
    pub body: String,
    /// The time limit of the whole exchange.
    pub timeout: Duration,
}

/// Why a webhook request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostError {
    /// The receiver answered with a status outside 2xx, e.g. `500 Internal Server Error`.
    Status(String),
    /// No answer: the connection, TLS or time limit failed (with the chain of causes).
    Transport(String),
}

impl fmt::Display for PostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PostError::Status(status) => write!(f, "answered {status}"),
            PostError::Transport(error) => f.write_str(error),
        }
    }
}

/// Sends webhook requests.
///
/// # Contract
/// * `post` MUST send exactly one `POST` of `body` with `Content-Type: application/json` and
///   the given headers, to one of `addrs` (the URL's host goes in `Host` and TLS's server name),
///   and MUST NOT follow redirects, use a proxy or resolve the host again.
/// * Any 2xx answer is `Ok`; another status is `PostError::Status`; no answer within
///   `timeout` (or a failed connection) is `PostError::Transport`.
#[async_trait]
pub trait WebhookTransport: Send + Sync + 'static {
    async fn post(&self, request: WebhookPost) -> Result<(), PostError>;
}

/// One plain-text email, fully decided by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMail {
    /// The recipient's address (`ada@example.com`), as stored.
    pub to: String,
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// A stable id (the delivery's): a retry carries the same `Message-ID`.
    pub message_id: String,
}

/// Sends email through a relay.
///
/// # Contract
/// * `send` MUST hand the message to the relay once and return `Ok` only when the relay
///   accepted it; the `From` mailbox is the transport's own.
/// * An address that is not a mailbox, or a relay that refuses or cannot be reached, is `Err`
///   with the reason (for the delivery's recorded error), never a panic.
#[async_trait]
pub trait MailTransport: Send + Sync + 'static {
    async fn send(&self, mail: OutboundMail) -> Result<(), String>;
}

/// Where the JWKS document of an external identity provider comes from.
///
/// # Contract
/// * `fetch` returns the document's bytes as served (the caller parses them and keeps the
///   keys it accepts); an unreachable source, a status outside 2xx, or a document larger than
///   the source's limit is `Err` with the reason. It caches nothing: the caller decides how
///   often to ask.
#[async_trait]
pub trait JwksSource: fmt::Debug + Send + Sync + 'static {
    async fn fetch(&self) -> Result<Vec<u8>, String>;
}
