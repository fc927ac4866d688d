//! Users (accounts) and their credentials' value types.

use crate::error::{Invalid, value_error};
use crate::ids::UserId;
use crate::line::line_type;
use crate::time::{Timestamp, Zone};

/// An email address, trimmed and lower-cased; checked for shape only (one `@`, a dot in the
/// domain, no spaces), since only a confirmation mail could prove more.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

value_error!(
    #[error("'{0}' is not an email address (expected name@example.com)")]
    EmailError(String) = "invalid_email"
);

impl Email {
    pub fn parse(raw: &str) -> Result<Email, EmailError> {
        let t = raw.trim().to_lowercase();
        let bad = || EmailError(raw.chars().take(100).collect());
        if t.len() > 254 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = t.split_once('@').ok_or_else(bad)?;
        let domain_ok = !domain.contains('@')
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(bad());
        }
        Ok(Email(t))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password as typed: 8–256 characters. Never stored or logged; only its argon2id hash is.
#[derive(Clone)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least 8 characters long")]
    TooShort,
    #[error("password must be at most 256 characters long")]
    TooLong,
}

impl Invalid for PasswordError {
    fn code(&self) -> &'static str {
        match self {
            PasswordError::TooShort => "too_short",
            PasswordError::TooLong => "too_long",
        }
    }
}

impl Password {
    pub fn parse(raw: &str) -> Result<Password, PasswordError> {
        let n = raw.chars().count();
        if n < 8 {
            return Err(PasswordError::TooShort);
        }
        if n > 256 {
            return Err(PasswordError::TooLong);
        }
        Ok(Password(raw.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

line_type!(
    /// A display name: trimmed, 1–100 characters, no control characters.
    DisplayName, "name", 100
);

impl DisplayName {
    /// The name a new account gets when none is given: the email's local part.
    pub fn from_email(email: &Email) -> DisplayName {
        let local = email.as_str().split('@').next().unwrap_or("user");
        DisplayName::parse(local).unwrap_or_else(|_| DisplayName("user".to_owned()))
    }
}

/// An account. `email` is absent only for users provisioned from an external identity
/// provider whose token carried no email; `external_subject` is that provider's `sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub email: Option<Email>,
    pub name: DisplayName,
    pub timezone: Option<Zone>,
    pub external_subject: Option<String>,
    pub created_at: Timestamp,
}

/// What creating an account stores. `password_hash` is the argon2id PHC string, or `None`
/// for an externally authenticated user.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Option<Email>,
    pub name: DisplayName,
    pub timezone: Option<Zone>,
    pub password_hash: Option<String>,
    pub external_subject: Option<String>,
}

impl NewUser {
    /// An account known by its email, with no password, time zone or external subject yet
    /// (set the fields that apply).
    pub fn with_email(email: Email, name: DisplayName) -> NewUser {
        NewUser {
            email: Some(email),
            name,
            timezone: None,
            password_hash: None,
            external_subject: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(Email::parse(" Ada@Example.COM ").unwrap().as_str(), "ada@example.com");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.com",
            "ada@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("long enough").is_ok());
        assert!(Password::parse(&"x".repeat(257)).is_err());
        assert_eq!(format!("{:?}", Password::parse("secret123").unwrap()), "Password(..)");
    }
}
