//! The enums that are words on the wire and in the database (`Priority` is `low` … `urgent`,
//! `SortField` is `due_date` …): one table per enum gives both directions, so a name cannot be
//! written one way and read another.
//!
//! [`named!`] makes `as_str`, an exact `from_name` and `Display` from the table;
//! [`known_by_text!`] gives a parsed value that keeps its text (`Zone`, `CronExpr`) its
//! `Debug`, `Display` and equality through that text. How a name
//! is read from input (trimmed, case folded, which error) stays with each type's `FromStr` or
//! `parse`, since those differ on purpose.

/// `named!(Type { Variant => "name", … })`: `Type::NAMES`, `as_str`, `from_name` (exact
/// match, `None` for anything else) and `Display` (the name). With `, else Error` (or
/// `, else make: Error`) after the table it also makes `FromStr`, which reads a name trimmed and
/// in any case and fails with `Error(input)` (`make(input)`).
macro_rules! named {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }, else $err:ident) => {
        named!($ty { $($variant => $name),+ }, else $err: $err);
    };
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }, else $make:path: $err:ty) => {
        named!($ty { $($variant => $name),+ });

        impl std::str::FromStr for $ty {
            type Err = $err;
            fn from_str(s: &str) -> Result<$ty, $err> {
                $ty::from_name(&s.trim().to_ascii_lowercase()).ok_or_else(|| $make(s.to_owned()))
            }
        }
    };
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every name, in the order of the variants.
            pub const NAMES: &'static [&'static str] = &[$($name),+];

            /// The name of this variant.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),+
                }
            }

            /// The variant called exactly `name`.
            pub fn from_name(name: &str) -> Option<$ty> {
                match name {
                    $($name => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use named;

/// `known_by_text!(Type, field)`: `Debug` (`Type(text)`), `Display` and equality through the
/// text a parsed value keeps in `field` (a zone's name, a cron expression as written), for
/// types whose parsed form has no equality of its own.
macro_rules! known_by_text {
    ($ty:ident, $field:ident) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($ty), self.$field)
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.$field)
            }
        }

        impl PartialEq for $ty {
            fn eq(&self, other: &Self) -> bool {
                self.$field == other.$field
            }
        }

        impl Eq for $ty {}
    };
}

pub(crate) use known_by_text;

#[cfg(test)]
mod tests {
    use crate::query::SortField;
    use crate::recurrence::{Frequency, Mode};
    use crate::reminder::ReminderStatus;
    use crate::task::Priority;
    use crate::webhook::DeliveryStatus;

    /// Every name reads back as the variant it was written from, and nothing else does.
    fn check<T: Copy + PartialEq + std::fmt::Debug>(
        names: &[&str],
        from_name: fn(&str) -> Option<T>,
        as_str: fn(T) -> &'static str,
    ) {
        for name in names {
            let v = from_name(name).unwrap_or_else(|| panic!("{name} reads"));
            assert_eq!(as_str(v), *name);
        }
        assert_eq!(from_name("no such name"), None);
    }

    #[test]
    fn names_round_trip() {
        check(Priority::NAMES, Priority::from_name, Priority::as_str);
        check(SortField::NAMES, SortField::from_name, SortField::as_str);
        check(Frequency::NAMES, Frequency::from_name, Frequency::as_str);
        check(Mode::NAMES, Mode::from_name, Mode::as_str);
        check(ReminderStatus::NAMES, ReminderStatus::from_name, ReminderStatus::as_str);
        check(DeliveryStatus::NAMES, DeliveryStatus::from_name, DeliveryStatus::as_str);
        assert_eq!(Priority::NAMES, ["low", "medium", "high", "urgent"]);
        assert_eq!(Priority::from_name("High"), None, "exact: case folding is FromStr's");
        assert_eq!(Priority::Urgent.to_string(), "urgent");
        assert_eq!(" High ".parse(), Ok(Priority::High));
        assert_eq!("highest".parse::<Priority>().map_err(|e| e.0), Err("highest".to_owned()));
        assert_eq!("FIXED".parse(), Ok(Mode::Fixed));
    }
}
