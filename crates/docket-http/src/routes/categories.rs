//! `/api/categories`: the caller's categories, CRUD.

use docket_core::{CategoryId, CategoryPatch, NewCategory};

use crate::dto::{CategoryBody, CategoryDto, CategoryPatchBody};
use crate::extract::{Caller, Id, JsonBody};
use crate::problem::Conflict;
use crate::routes::{Created, Deleted, Reply, created, deleted, list, one};

/// The caller's categories by name.
#[utoipa::path(get, path = "/categories", operation_id = "list_categories", tag = "categories",
    responses((status = 200, description = "the categories", body = Vec<CategoryDto>)))]
pub async fn list_categories(Caller(app, user): Caller) -> Reply<Vec<CategoryDto>> {
    list(&app.list_categories(&user).await?)
}

/// Creates a category.
#[utoipa::path(post, path = "/categories", operation_id = "create_category", tag = "categories",
    request_body = CategoryBody,
    responses(
        (status = 201, description = "the new category", body = CategoryDto),
        (status = 409, response = Conflict),
    ))]
pub async fn create_category(
    Caller(app, user): Caller,
    JsonBody(body): JsonBody<CategoryBody>,
) -> Created<CategoryDto> {
    let new = NewCategory::try_from(body)?;
    created(&app.create_category(&user, new).await?)
}

/// One category.
#[utoipa::path(get, path = "/categories/{id}", operation_id = "get_category", tag = "categories",
    params(Id<CategoryId>),
    responses((status = 200, description = "the category", body = CategoryDto)))]
pub async fn get_category(Caller(app, user): Caller, Id(id): Id<CategoryId>) -> Reply<CategoryDto> {
    one(&app.get_category(&user, id).await?)
}

/// Renames or recolours a category.
#[utoipa::path(patch, path = "/categories/{id}", operation_id = "update_category", tag = "categories",
    params(Id<CategoryId>),
    request_body = CategoryPatchBody,
    responses(
        (status = 200, description = "the category after the change", body = CategoryDto),
        (status = 409, response = Conflict),
    ))]
pub async fn update_category(
    Caller(app, user): Caller,
    Id(id): Id<CategoryId>,
    JsonBody(body): JsonBody<CategoryPatchBody>,
) -> Reply<CategoryDto> {
    let patch = CategoryPatch::try_from(body)?;
    one(&app.update_category(&user, id, patch).await?)
}

/// Deletes a category; its tasks are kept, without a category.
#[utoipa::path(delete, path = "/categories/{id}", operation_id = "delete_category", tag = "categories",
    params(Id<CategoryId>),
    responses((status = 204, description = "deleted")))]
pub async fn delete_category(Caller(app, user): Caller, Id(id): Id<CategoryId>) -> Deleted {
    deleted(app.delete_category(&user, id).await)
}
