//! Account use cases: signup, login, the caller's profile, personal access tokens, and the
//! admin helpers the CLI runs directly against the database.
//!
//! Passwords are hashed with argon2id on the blocking pool. A login for an unknown email
//! verifies against a dummy hash so it costs the same as a wrong password; both answer the
//! same `Unauthorized` text. Rate limiting of logins is the edge's job (it knows the peer).

use docket_core::{
    DisplayName, Email, NewUser, Password, Timestamp, TokenId, User, UserId, ValidationErrors, Zone,
};
use docket_ports::TokenInfo;

use crate::App;
use crate::auth::{hash_password, hash_token, new_pat, verify_password};
use crate::error::AppError;

/// A signup request, parsed.
#[derive(Debug, Clone)]
pub struct Signup {
    pub email: Email,
    pub password: Password,
    pub name: Option<DisplayName>,
    pub timezone: Option<Zone>,
}

/// A signed-in user and the session JWT that proves it.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub token: String,
    pub expires_at: Timestamp,
}

/// A new personal access token: its listing and the secret, which is shown this once only.
#[derive(Debug, Clone)]
pub struct CreatedToken {
    pub info: TokenInfo,
    pub token: String,
}

/// What creating a personal access token asks for. The name reuses `DisplayName`'s rules
/// (1–100 characters, no control characters).
#[derive(Debug, Clone)]
pub struct NewToken {
    pub name: DisplayName,
    pub expires_at: Option<Timestamp>,
}

const BAD_LOGIN: &str = "email or password is wrong";

impl App {
    #[tracing::instrument(name = "signup", skip_all, err(level = "debug"))]
    pub async fn signup(&self, input: Signup) -> Result<Session, AppError> {
        let user = self.register(input).await?;
        let (token, expires_at) = self.issue_jwt(user.id)?;
        Ok(Session { user, token, expires_at })
    }

    async fn register(&self, input: Signup) -> Result<User, AppError> {
        let name = input.name.unwrap_or_else(|| DisplayName::from_email(&input.email));
        let password_hash = hash_password(input.password).await?;
        let new = NewUser {
            timezone: input.timezone,
            password_hash: Some(password_hash),
            ..NewUser::with_email(input.email, name)
        };
        match self.store.create_user(new, self.clock.now()).await {
            Err(docket_ports::StoreError::Conflict(_)) => Err(AppError::Conflict(
                "an account with this email already exists; log in instead".to_owned(),
            )),
            other => Ok(other?),
        }
    }

    /// Checks an email and password; the same answer and about the same time for an unknown
    /// email, an account without a password and a wrong password.
    #[tracing::instrument(name = "login", skip_all, err(level = "debug"))]
    pub async fn login(&self, email: &str, password: &str) -> Result<Session, AppError> {
        let record = match Email::parse(email) {
            Ok(email) => self.store.user_by_email(email.as_str()).await?,
            Err(_) => None,
        };
        let (user, hash) = match record {
            Some(r) => (Some(r.user), r.password_hash),
            None => (None, None),
        };
        let ok = verify_password(password.to_owned(), hash).await?;
        match user {
            Some(user) if ok => {
                let (token, expires_at) = self.issue_jwt(user.id)?;
                Ok(Session { user, token, expires_at })
            }
            _ => Err(AppError::unauthorized(BAD_LOGIN)),
        }
    }

    /// The caller's own account.
    pub async fn me(&self, user: &User) -> Result<User, AppError> {
        Ok(user.clone())
    }

    #[tracing::instrument(name = "create_token", skip_all, fields(user.id = %user.id), err(level = "debug"))]
    pub async fn create_token(&self, user: &User, new: NewToken) -> Result<CreatedToken, AppError> {
        self.issue_pat(user.id, new).await
    }

    pub async fn list_tokens(&self, user: &User) -> Result<Vec<TokenInfo>, AppError> {
        Ok(self.store.list_tokens(user.id).await?)
    }

    #[tracing::instrument(name = "delete_token", skip_all, fields(user.id = %user.id, token.id = %id))]
    pub async fn delete_token(&self, user: &User, id: TokenId) -> Result<(), AppError> {
        Ok(self.store.delete_token(user.id, id).await?)
    }

    async fn issue_pat(&self, user_id: UserId, new: NewToken) -> Result<CreatedToken, AppError> {
        let now = self.clock.now();
        if new.expires_at.is_some_and(|at| at <= now) {
            return Err(AppError::invalid(
                "expires_at",
                "in_the_past",
                "expires_at must be in the future (or left out for a token that does not expire)",
            ));
        }
        let token = new_pat();
        let info = TokenInfo {
            id: docket_ports::ids::new_id(),
            user_id,
            name: new.name.as_str().to_owned(),
            prefix: token.chars().take(12).collect(),
            created_at: now,
            expires_at: new.expires_at,
        };
        self.store.create_token(info.clone(), hash_token(&token)).await?;
        Ok(CreatedToken { info, token })
    }

    /// Admin helper (the CLI's `user add`): creates an account from raw text, validated like a
    /// signup.
    pub async fn create_user_admin(
        &self,
        email: &str,
        password: &str,
        name: Option<&str>,
        timezone: Option<&str>,
    ) -> Result<User, AppError> {
        let mut errors = ValidationErrors::new();
        let email = errors.check("email", Email::parse(email));
        let password = errors.check("password", Password::parse(password));
        let name = name.and_then(|n| errors.check("name", DisplayName::parse(n)));
        let timezone = timezone.and_then(|z| errors.check("timezone", Zone::parse(z)));
        errors.into_result()?;
        let (Some(email), Some(password)) = (email, password) else {
            return Err(AppError::Internal(anyhow::anyhow!("validated fields went missing")));
        };
        self.register(Signup { email, password, name, timezone }).await
    }

    /// Admin helper (the CLI's `token create`): a personal access token for any user.
    pub async fn create_token_for(
        &self,
        user_id: UserId,
        name: &str,
        expires: Option<Timestamp>,
    ) -> Result<CreatedToken, AppError> {
        let name = DisplayName::parse(name)
            .map_err(|e| AppError::Validation(docket_core::FieldError::new("name", &e).into()))?;
        if self.store.user_by_id(user_id).await?.is_none() {
            return Err(AppError::NotFound("user"));
        }
        self.issue_pat(user_id, NewToken { name, expires_at: expires }).await
    }
}
