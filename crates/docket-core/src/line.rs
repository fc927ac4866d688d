//! One-line texts: a task title, a category name, a display name. They share their rules
//! (trimmed, 1 to a maximum of characters, no control characters) and their error, which
//! names the field it is about.

use crate::error::Invalid;

/// Why a one-line text was refused; the first field names the text (`title`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("{0} is {1} characters long (at most {2})")]
    TooLong(&'static str, usize, usize),
    #[error("{0} must not contain control characters")]
    ControlChars(&'static str),
}

impl Invalid for LineError {
    fn code(&self) -> &'static str {
        match self {
            LineError::Empty(_) => "required",
            LineError::TooLong(..) => "too_long",
            LineError::ControlChars(_) => "invalid_characters",
        }
    }
}

/// `line_type!(/// doc  Name, "what", max)`: a newtype over a one-line text of at most `max`
/// characters, with `MAX`, `parse` (by [`parse_line`], `what` naming it in errors) and `as_str`.
macro_rules! line_type {
    ($(#[$meta:meta])* $name:ident, $what:literal, $max:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            pub const MAX: usize = $max;

            pub fn parse(raw: &str) -> Result<$name, $crate::line::LineError> {
                $crate::line::parse_line(raw, $what, Self::MAX).map(|t| $name(t.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

pub(crate) use line_type;

/// `raw` trimmed, when that is 1 to `max` characters without control characters; `what`
/// names the text in the error.
pub(crate) fn parse_line<'a>(
    raw: &'a str,
    what: &'static str,
    max: usize,
) -> Result<&'a str, LineError> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(LineError::Empty(what));
    }
    let n = t.chars().count();
    if n > max {
        return Err(LineError::TooLong(what, n, max));
    }
    if t.chars().any(char::is_control) {
        return Err(LineError::ControlChars(what));
    }
    Ok(t)
}
