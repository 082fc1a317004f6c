//! Switchyard: a reverse proxy that keeps services up.
