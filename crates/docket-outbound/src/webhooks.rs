//! Webhook POSTs over `reqwest`: one client per request, so the host can be pinned to the
//! addresses the caller checked (a name re-pointed at an internal address between the check
//! and the request cannot be reached).

use async_trait::async_trait;
use docket_ports::{PostError, WebhookPost, WebhookTransport};

use crate::error_chain;

/// Posts webhooks over HTTP(S) with `reqwest` (rustls).
#[derive(Debug, Default, Clone)]
pub struct HttpWebhooks;

impl HttpWebhooks {
    pub fn new() -> HttpWebhooks {
        HttpWebhooks
    }
}

#[async_trait]
impl WebhookTransport for HttpWebhooks {
    async fn post(&self, request: WebhookPost) -> Result<(), PostError> {
        let url = reqwest::Url::parse(&request.url)
            .map_err(|e| PostError::Transport(format!("'{}' is not a URL: {e}", request.url)))?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let client = reqwest::Client::builder()
            .timeout(request.timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve the host itself, around the caller's address check.
            .no_proxy()
            .resolve_to_addrs(&host, &request.addrs)
            .user_agent(concat!("Docket/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| PostError::Transport(format!("cannot build the HTTP client: {e}")))?;
        let mut builder =
            client.post(url).header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let response = builder
            .body(request.body)
            .send()
            .await
            .map_err(|e| PostError::Transport(error_chain(&e)))?;
        let status = response.status();
        if status.is_success() { Ok(()) } else { Err(PostError::Status(status.to_string())) }
    }
}
