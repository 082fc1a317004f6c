//! Switchyard: a reverse proxy that keeps services up.
pub mod plugin;
