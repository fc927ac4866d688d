//! The JWKS document over HTTP: a plain `GET` with a time limit and a size limit.

use std::time::Duration;

use async_trait::async_trait;
use docket_ports::JwksSource;

/// A JWKS is given this long to answer.
const TIMEOUT: Duration = Duration::from_secs(5);
/// A JWKS larger than this is refused (a real one is a few kilobytes).
const MAX_BYTES: usize = 1 << 20;

/// Fetches the JWKS at one URL.
#[derive(Debug)]
pub struct HttpJwks {
    url: String,
    client: Option<reqwest::Client>,
}

impl HttpJwks {
    pub fn new(url: impl Into<String>) -> HttpJwks {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .inspect_err(|e| tracing::error!(error = %e, "cannot build the JWKS HTTP client"))
            .ok();
        HttpJwks { url: url.into(), client }
    }
}

#[async_trait]
impl JwksSource for HttpJwks {
    async fn fetch(&self) -> Result<Vec<u8>, String> {
        let client = self.client.as_ref().ok_or("no HTTP client")?;
        let resp = client.get(&self.url).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("JWKS answered {}", resp.status()));
        }
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_BYTES {
            return Err("JWKS is larger than 1 MiB".to_owned());
        }
        Ok(body.to_vec())
    }
}
