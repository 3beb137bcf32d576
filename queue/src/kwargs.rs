//! Reading a task's keyword arguments from the JSON a user typed (`runner
//! call --kwargs`, `runner put --kwargs`, the guest's `put`): one parser, each
//! caller words the error for its audience.

use serde_json::{Map, Value};

/// Why a kwargs text was refused.
#[derive(Debug)]
pub enum KwargsError {
    /// The text is not JSON.
    NotJson(serde_json::Error),
    /// The text is JSON but not an object.
    NotObject(Value),
}

/// The keyword arguments in `json`, which must be one JSON object.
///
/// # Errors
///
/// [`KwargsError`] when `json` is not JSON or not an object.
pub fn parse_kwargs(json: &str) -> Result<Map<String, Value>, KwargsError> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(KwargsError::NotObject(other)),
        Err(e) => Err(KwargsError::NotJson(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::{KwargsError, parse_kwargs};

    #[test]
    fn an_object_is_kwargs() {
        let map = parse_kwargs(r#"{"a": 1}"#).unwrap();
        assert_eq!(map["a"], 1);
    }

    #[test]
    fn anything_else_is_refused_with_what_it_was() {
        assert!(matches!(
            parse_kwargs("[1]"),
            Err(KwargsError::NotObject(serde_json::Value::Array(_)))
        ));
        assert!(matches!(parse_kwargs("{"), Err(KwargsError::NotJson(_))));
    }
}
