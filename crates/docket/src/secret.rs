//! The JWT signing secret: from configuration, else generated once and kept in the data
//! directory so tokens survive restarts.
//!
//! The file holds 32 random bytes as hex, created with mode 0600 and written atomically
//! (temp file + rename), so a crash never leaves a truncated secret behind.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, bail};
use rand::RngCore as _;

const FILE_NAME: &str = "jwt-secret";

/// Returns the configured secret, or the one kept in `data_dir` (generating it on first use).
/// A generated secret is used in its hex form: 64 characters carrying 32 random bytes.
pub fn jwt_secret(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(s) = configured {
        if s.len() < 32 {
            bail!("DOCKET_JWT_SECRET is {} bytes long; use at least 32 random bytes", s.len());
        }
        return Ok(s.to_owned());
    }
    let path = data_dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = text.trim();
            let secret = hex_decode(text).with_context(|| {
                format!(
                    "the secret in '{}' is not hex; delete it to make a new one",
                    path.display()
                )
            })?;
            if secret.len() < 32 {
                bail!(
                    "the secret in '{}' is shorter than 32 bytes; delete it to make a new one",
                    path.display()
                );
            }
            Ok(text.to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => generate(data_dir, &path),
        Err(e) => Err(e).with_context(|| format!("cannot read '{}'", path.display())),
    }
}

fn generate(data_dir: &Path, path: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory '{}'", data_dir.display()))?;
    let mut secret = vec![0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let text: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = data_dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut f =
            options.open(&tmp).with_context(|| format!("cannot create '{}'", tmp.display()))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    // Another process may have won the race: keep whichever secret landed first.
    if path.exists() {
        let _ = std::fs::remove_file(&tmp);
        return jwt_secret(None, data_dir);
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write '{}'", path.display()))?;
    tracing::info!(path = %path.display(), "generated a new JWT secret");
    Ok(text)
}

fn hex_decode(s: &str) -> anyhow::Result<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        bail!("odd length");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(anyhow::Error::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = jwt_secret(None, dir.path()).unwrap();
        let b = jwt_secret(None, dir.path()).unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(a, b);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn configured_secret_wins_and_must_be_long() {
        let dir = tempfile::tempdir().unwrap();
        assert!(jwt_secret(Some("short"), dir.path()).is_err());
        let s = "x".repeat(40);
        assert_eq!(jwt_secret(Some(&s), dir.path()).unwrap(), s);
        assert!(!dir.path().join(FILE_NAME).exists());
    }

    #[test]
    fn corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "not hex").unwrap();
        assert!(jwt_secret(None, dir.path()).is_err());
    }
}
