//! Configuration for the PGM daemons and CLI.
//!
//! Not implemented yet: the schema, defaults and validation with file/line/key errors are
//! tracked by the "Operations" issue.
