//! Category use cases: create, list, get, update, delete. Names are unique per user,
//! case-insensitively (the store reports a clash as a conflict); deleting a category clears it
//! from the user's tasks and keeps the tasks.

use docket_core::{Category, CategoryId, CategoryPatch, NewCategory, User};

use crate::App;
use crate::error::AppError;

fn name_taken(e: docket_ports::StoreError) -> AppError {
    match e {
        docket_ports::StoreError::Conflict(_) => AppError::Conflict(
            "a category with this name already exists; pick another name".to_owned(),
        ),
        e => e.into(),
    }
}

impl App {
    #[tracing::instrument(name = "create_category", skip_all, fields(user.id = %user.id), err(level = "debug"))]
    pub async fn create_category(
        &self,
        user: &User,
        new: NewCategory,
    ) -> Result<Category, AppError> {
        self.store.create_category(user.id, new, self.clock.now()).await.map_err(name_taken)
    }

    pub async fn list_categories(&self, user: &User) -> Result<Vec<Category>, AppError> {
        Ok(self.store.list_categories(user.id).await?)
    }

    pub async fn get_category(&self, user: &User, id: CategoryId) -> Result<Category, AppError> {
        Ok(self.store.get_category(user.id, id).await?)
    }

    #[tracing::instrument(name = "update_category", skip_all, fields(user.id = %user.id, category.id = %id), err(level = "debug"))]
    pub async fn update_category(
        &self,
        user: &User,
        id: CategoryId,
        patch: CategoryPatch,
    ) -> Result<Category, AppError> {
        self.store.update_category(user.id, id, patch).await.map_err(name_taken)
    }

    #[tracing::instrument(name = "delete_category", skip_all, fields(user.id = %user.id, category.id = %id))]
    pub async fn delete_category(&self, user: &User, id: CategoryId) -> Result<(), AppError> {
        Ok(self.store.delete_category(user.id, id, self.now()).await?)
    }
}
