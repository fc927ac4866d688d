//! Validation errors: one `FieldError` per bad field, gathered into `ValidationErrors`.
//!
//! Each value type has its own typed error (`LineError`, `EmailError`, …) implementing [`Invalid`], which
//! gives a stable machine code; the message is the error's `Display`. The HTTP edge turns
//! `ValidationErrors` into a 422 problem with `errors: [{field, code, message}]`.

use std::fmt;

/// A typed validation error that can name its problem with a stable code.
pub trait Invalid: fmt::Display {
    /// A short snake_case code, stable across releases (`too_long`, `unknown_zone`, …).
    fn code(&self) -> &'static str;
}

/// `invalid_code!(ErrorType, "code")`: `Invalid` for an error whose every value has one code.
macro_rules! invalid_code {
    ($ty:ty, $code:literal) => {
        impl $crate::error::Invalid for $ty {
            fn code(&self) -> &'static str {
                $code
            }
        }
    };
}

pub(crate) use invalid_code;

/// `value_error!(#[error("…")] NameError(Input) = "code")`: the error of a value type that
/// carries the refused input, with one code.
macro_rules! value_error {
    ($(#[$meta:meta])* $name:ident($input:ty) = $code:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        $(#[$meta])*
        pub struct $name(pub $input);

        $crate::error::invalid_code!($name, $code);
    };
}

pub(crate) use value_error;

/// One bad field of an input.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, err: &dyn Invalid) -> Self {
        FieldError { field: field.into(), code: err.code().to_owned(), message: err.to_string() }
    }

    pub fn custom(field: impl Into<String>, code: &str, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), code: code.to_owned(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All the problems found in one input; never empty when returned as an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn single(err: FieldError) -> Self {
        ValidationErrors(vec![err])
    }

    pub fn push(&mut self, err: FieldError) {
        self.0.push(err);
    }

    /// Records the error of `result` under `field` and returns its value, if any.
    pub fn check<T, E: Invalid>(&mut self, field: &str, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(FieldError::new(field, &e));
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was recorded.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for ValidationErrors {}

impl From<FieldError> for ValidationErrors {
    fn from(e: FieldError) -> Self {
        ValidationErrors::single(e)
    }
}
