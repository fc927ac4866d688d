//! Email through an SMTP relay with `lettre`: plain text, one message per call, TLS none,
//! STARTTLS or TLS from the first byte.

use std::time::Duration;

use async_trait::async_trait;
use docket_ports::{MailTransport, OutboundMail};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret as _, SecretString};

use crate::error_chain;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (a relay on the same host or network).
    None,
    /// STARTTLS required.
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

/// The SMTP relay email goes through.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    /// The `From` mailbox, e.g. `Docket <docket@example.com>`.
    pub from: String,
}

/// Why a mailer cannot be built from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    #[error("the SMTP from address '{0}' is not a mailbox")]
    From(String),
    #[error("the SMTP relay '{host}' cannot be used: {error}")]
    Relay { host: String, error: String },
}

/// Sends email through one relay; built once (at start, so a bad setting stops the start).
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// A mailer for `smtp`, each exchange limited to `timeout`.
    pub fn new(smtp: &SmtpConfig, timeout: Duration) -> Result<SmtpMailer, SmtpConfigError> {
        let from: Mailbox =
            smtp.from.parse().map_err(|_| SmtpConfigError::From(smtp.from.clone()))?;
        let relay_error = |e: lettre::transport::smtp::Error| SmtpConfigError::Relay {
            host: smtp.host.clone(),
            error: e.to_string(),
        };
        let mut builder = match smtp.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
            SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                .map_err(relay_error)?,
            SmtpTls::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(relay_error)?
            }
        };
        builder = builder.port(smtp.port).timeout(Some(timeout));
        if let Some(user) = &smtp.username {
            let password =
                smtp.password.as_ref().map(|p| p.expose_secret().to_owned()).unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(SmtpMailer { transport: builder.build(), from })
    }
}

#[async_trait]
impl MailTransport for SmtpMailer {
    async fn send(&self, mail: OutboundMail) -> Result<(), String> {
        let to: Mailbox =
            mail.to.parse().map_err(|e| format!("'{}' is not a mailbox: {e}", mail.to))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .message_id(Some(mail.message_id))
            .body(mail.text)
            .map_err(|e| format!("cannot build the email: {e}"))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("SMTP: {}", error_chain(&e)))
    }
}
