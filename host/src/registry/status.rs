//! What the dashboard shows of each module: which version serves (content
//! hash), when and how fast it loaded, and the last load error.

use serde::Serialize;

/// One module's state, as [`super::Registry::modules`] reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModuleStatus {
    /// The module's name (its file stem; its tube with no config).
    pub name: String,
    /// SHA-256 of the serving version's file, as 64 hex digits; `None`
    /// while no version serves.
    pub hash: Option<String>,
    /// When the serving version was loaded, in Unix seconds.
    pub loaded_at: Option<u64>,
    /// Seconds the serving version took to load (compile, or read from the
    /// code cache).
    pub load_seconds: Option<f64>,
    /// Why the latest version on disk did not load, if it did not (the
    /// previous one, if any, keeps serving).
    pub error: Option<String>,
}

impl ModuleStatus {
    /// The status of module `name` in `all`, a blank one if it has none yet.
    pub(super) fn of<'a>(
        all: &'a mut std::collections::HashMap<String, ModuleStatus>,
        name: &str,
    ) -> &'a mut ModuleStatus {
        all.entry(name.to_owned()).or_insert_with(|| ModuleStatus {
            name: name.to_owned(),
            ..ModuleStatus::default()
        })
    }

    /// A version loaded: it serves, and no error stands.
    pub(super) fn loaded(&mut self, hash: String, at: u64, seconds: f64) {
        self.hash = Some(hash);
        self.loaded_at = Some(at);
        self.load_seconds = Some(seconds);
        self.error = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_clears_the_last_error_and_a_failure_keeps_the_serving_version() {
        let mut status = ModuleStatus {
            name: "m".into(),
            error: Some("bad".into()),
            ..ModuleStatus::default()
        };
        status.loaded("ab".into(), 10, 0.5);
        assert_eq!(status.error, None);
        status.error = Some("newer version broken".into());
        assert_eq!(
            status.hash.as_deref(),
            Some("ab"),
            "the old version still serves"
        );
    }
}
