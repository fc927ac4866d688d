//! `/api/categories`: the caller's categories, CRUD.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use docket_core::{CategoryPatch, NewCategory};

use crate::AppState;
use crate::dto::{CategoryBody, CategoryDto, CategoryPatchBody};
use crate::extract::{Caller, CategoryIdParam, JsonBody};
use crate::problem::{
    ApiError, BadRequest, Conflict, NotFound, PayloadTooLarge, Unauthorized, Unavailable,
    Unprocessable, UnsupportedMediaType,
};

/// The caller's categories by name.
#[utoipa::path(get, path = "/categories", operation_id = "list_categories", tag = "categories",
    responses(
        (status = 200, description = "the categories", body = Vec<CategoryDto>),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn list_categories(
    State(st): State<AppState>,
    Caller(user): Caller,
) -> Result<impl IntoResponse, ApiError> {
    let items = st.app.list_categories(&user).await?;
    Ok(Json(items.iter().map(CategoryDto::from).collect::<Vec<_>>()))
}

/// Creates a category.
#[utoipa::path(post, path = "/categories", operation_id = "create_category", tag = "categories",
    request_body = CategoryBody,
    responses(
        (status = 201, description = "the new category", body = CategoryDto),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn create_category(
    State(st): State<AppState>,
    Caller(user): Caller,
    JsonBody(body): JsonBody<CategoryBody>,
) -> Result<impl IntoResponse, ApiError> {
    let new = NewCategory::try_from(body)?;
    let c = st.app.create_category(&user, new).await?;
    Ok((StatusCode::CREATED, Json(CategoryDto::from(&c))))
}

/// One category.
#[utoipa::path(get, path = "/categories/{id}", operation_id = "get_category", tag = "categories",
    params(("id" = String, Path, description = "category id")),
    responses(
        (status = 200, description = "the category", body = CategoryDto),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn get_category(
    State(st): State<AppState>,
    Caller(user): Caller,
    CategoryIdParam(id): CategoryIdParam,
) -> Result<impl IntoResponse, ApiError> {
    let c = st.app.get_category(&user, id).await?;
    Ok(Json(CategoryDto::from(&c)))
}

/// Renames or recolours a category.
#[utoipa::path(patch, path = "/categories/{id}", operation_id = "update_category", tag = "categories",
    params(("id" = String, Path, description = "category id")),
    request_body = CategoryPatchBody,
    responses(
        (status = 200, description = "the category after the change", body = CategoryDto),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn update_category(
    State(st): State<AppState>,
    Caller(user): Caller,
    CategoryIdParam(id): CategoryIdParam,
    JsonBody(body): JsonBody<CategoryPatchBody>,
) -> Result<impl IntoResponse, ApiError> {
    let patch = CategoryPatch::try_from(body)?;
    let c = st.app.update_category(&user, id, patch).await?;
    Ok(Json(CategoryDto::from(&c)))
}

/// Deletes a category; its tasks are kept, without a category.
#[utoipa::path(delete, path = "/categories/{id}", operation_id = "delete_category", tag = "categories",
    params(("id" = String, Path, description = "category id")),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
    security(("bearer" = [])))]
pub async fn delete_category(
    State(st): State<AppState>,
    Caller(user): Caller,
    CategoryIdParam(id): CategoryIdParam,
) -> Result<StatusCode, ApiError> {
    st.app.delete_category(&user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
