//! Errors with file, line, column and key.

use std::fmt;

/// Every problem found in a configuration, in file order. Display: one line per error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// One problem in a configuration.
///
/// Displayed as `{file}:{line}:{column}: {key}: {reason}`. Errors without a position (the
/// file could not be read; `line` is 0) leave out `:{line}:{column}`, and errors without a
/// key (TOML syntax errors) leave out `{key}: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file's name, as given to [`Config::from_str`](crate::Config::from_str).
    pub file: String,
    /// 1-based line of the offending key or value; 0 when there is none.
    pub line: usize,
    /// 1-based column (in characters) of the offending key or value; 0 when there is none.
    pub column: usize,
    /// Dotted path of the key: `router.timers.nak_elim_ivl`, `router.interface[1].name`.
    /// Empty for syntax and I/O errors.
    pub key: String,
    /// What is wrong, and where useful how to fix it.
    pub reason: String,
    /// The class of the problem.
    pub kind: ErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        f.write_str(": ")?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// The class of a [`ConfigError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// The file is not valid TOML.
    Syntax,
    /// A key this schema does not have (often a typo; the reason suggests the closest).
    UnknownKey,
    /// A required key is absent.
    MissingKey,
    /// A value of the wrong TOML type (a string where an integer belongs, ...).
    WrongType,
    /// A value of the right type that does not parse or is not allowed: a bad duration or
    /// address, an unknown mode, a group that is not multicast, a meaningless zero.
    InvalidValue,
    /// A number outside its range.
    OutOfRange,
    /// Values that contradict each other (timers, roles, modes).
    Contradiction,
    /// An entry listed twice.
    Duplicate,
    /// A route naming an interface not listed under `[[router.interface]]`.
    UndefinedInterface,
    /// An interface that does not exist on this host ([`Config::check_interfaces`](crate::Config::check_interfaces)).
    NoSuchInterface,
}
