//! `/api/auth`: signup, login, the caller's profile and personal access tokens.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use docket_app::AppError;
use docket_core::TokenId;

use crate::AppState;
use crate::dto::{
    AuthResponse, CreatedTokenDto, LoginBody, SignupBody, TokenBody, TokenDto, UserDto,
};
use crate::extract::{Caller, ClientIp, Id, JsonBody};
use crate::problem::{ApiError, AuthProblems, Conflict, TooManyRequests, Unavailable};
use crate::routes::{Deleted, Reply, deleted, list, one};

/// Creates an account and signs it in.
#[utoipa::path(post, path = "/auth/signup", operation_id = "signup", tag = "auth",
    request_body = SignupBody,
    responses(
        (status = 201, description = "the new account and a session token", body = AuthResponse),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
    ))]
pub async fn signup(
    State(st): State<AppState>,
    JsonBody(body): JsonBody<SignupBody>,
) -> Result<impl IntoResponse, ApiError> {
    let input = docket_app::Signup::try_from(body)?;
    let session = st.app.signup(input).await?;
    Ok((StatusCode::CREATED, Json(AuthResponse::from(session))))
}

/// Signs in with email and password. Rate-limited per client address and email.
#[utoipa::path(post, path = "/auth/login", operation_id = "login", tag = "auth",
    request_body = LoginBody,
    responses(
        (status = 200, description = "the account and a session token", body = AuthResponse),
        (status = 429, response = TooManyRequests),
        AuthProblems,
    ))]
pub async fn login(
    State(st): State<AppState>,
    ClientIp(ip): ClientIp,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<impl IntoResponse, ApiError> {
    st.login_limiter
        .check(ip, &body.email)
        .map_err(|retry_after_secs| AppError::RateLimited { retry_after_secs })?;
    let session = st.app.login(&body.email, &body.password).await?;
    Ok(Json(AuthResponse::from(session)))
}

/// The caller's account.
#[utoipa::path(get, path = "/auth/me", operation_id = "me", tag = "auth",
    responses((status = 200, description = "the caller", body = UserDto)))]
pub async fn me(Caller(app, user): Caller) -> Reply<UserDto> {
    one(&app.me(&user).await?)
}

/// Creates a personal access token; its secret is in this response only.
#[utoipa::path(post, path = "/auth/tokens", operation_id = "create_token", tag = "auth",
    request_body = TokenBody,
    responses((status = 201, description = "the token, shown once", body = CreatedTokenDto)))]
pub async fn create_token(
    Caller(app, user): Caller,
    JsonBody(body): JsonBody<TokenBody>,
) -> Result<impl IntoResponse, ApiError> {
    let new = body.into_new_token(&user)?;
    let created = app.create_token(&user, new).await?;
    Ok((StatusCode::CREATED, Json(CreatedTokenDto::from(created))))
}

/// The caller's personal access tokens (never their secrets).
#[utoipa::path(get, path = "/auth/tokens", operation_id = "list_tokens", tag = "auth",
    responses((status = 200, description = "the tokens", body = Vec<TokenDto>)))]
pub async fn list_tokens(Caller(app, user): Caller) -> Reply<Vec<TokenDto>> {
    list(&app.list_tokens(&user).await?)
}

/// Revokes a personal access token.
#[utoipa::path(delete, path = "/auth/tokens/{id}", operation_id = "delete_token", tag = "auth",
    params(Id<TokenId>),
    responses((status = 204, description = "revoked")))]
pub async fn delete_token(Caller(app, user): Caller, Id(id): Id<TokenId>) -> Deleted {
    deleted(app.delete_token(&user, id).await)
}
