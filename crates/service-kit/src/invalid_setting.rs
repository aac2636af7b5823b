//! The error every settings check returns: it names the key. A leaf (the
//! settings sections of other modules use it without depending on
//! `settings`, which embeds them).

/// An error naming an invalid setting.
pub fn invalid(key: &str, why: &str) -> config::ConfigError {
    config::ConfigError::Message(format!("invalid setting `{key}`: {why}"))
}
