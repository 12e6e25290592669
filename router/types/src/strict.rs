//! Reading what the OpenAPI document says, strictly, where serde is lenient by default.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// `#[serde(default, deserialize_with = "strict::object")]` for an optional member that must
/// be a JSON object: serde's derived structs also read an array, by position
/// (`"cache": [null, null]`), which the document does not allow.
pub fn object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    match Option::<Map<String, Value>>::deserialize(d)? {
        None => Ok(None),
        Some(map) => T::deserialize(Value::Object(map))
            .map(Some)
            .map_err(D::Error::custom),
    }
}
