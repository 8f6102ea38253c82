//! The served OpenAPI document: poem-openapi's, plus what the service does that the
//! handlers' types cannot declare: identifier members (emails, phone numbers, ids, tokens,
//! URLs: see `control_chars`) carry no control character, and optional members accept null
//! (read as absent; a PATCH's null clears the value).

use serde_json::Value;

/// A string without control characters (the identifier rule of `control_chars`).
const NO_CONTROL: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// The document as served at `/openapi.json` and committed in `openapi/openapi.json`.
pub fn finish(spec: &str) -> String {
    let Ok(mut document) = serde_json::from_str::<Value>(spec) else {
        return spec.to_string();
    };
    if let Some(schemas) = document["components"]["schemas"].as_object_mut() {
        for schema in schemas.values_mut() {
            declare_identifiers(schema);
        }
    }
    if let Some(paths) = document["paths"].as_object_mut() {
        for operation in paths.values_mut().filter_map(Value::as_object_mut) {
            for op in operation.values_mut() {
                let Some(parameters) = op.get_mut("parameters").and_then(Value::as_array_mut)
                else {
                    continue;
                };
                for parameter in parameters {
                    declare_parameter(parameter);
                }
            }
        }
    }
    serde_json::to_string_pretty(&document).unwrap_or_else(|_| spec.to_string())
}

/// Query parameters the handlers parse themselves: times (`from`, `to`: RFC 3339, a date or
/// epoch milliseconds) and full-text queries (`q`: 1 to 500 characters; "at least one word"
/// is Unicode-aware and has no JSON Schema pattern).
fn declare_parameter(parameter: &mut Value) {
    if parameter["in"] != "query" {
        return;
    }
    let schema = match parameter["name"].as_str() {
        Some("from" | "to") => serde_json::json!({
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "format": "date"},
                {"type": "string", "pattern": "^[0-9]{1,15}$"}
            ]
        }),
        Some("q") => serde_json::json!({
            "type": "string", "minLength": 1, "maxLength": 500
        }),
        _ => return,
    };
    parameter["schema"] = schema;
}

fn declare_identifiers(schema: &mut Value) {
    let required: Vec<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_string))
        .collect();
    // `get_mut`, not indexing: indexing a JSON object mutably inserts a null member.
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, property) in properties.iter_mut() {
        if !required.contains(name) && property.is_object() {
            property["nullable"] = Value::Bool(true);
        }
        if !super::control_chars::is_identifier(name) {
            continue;
        }
        if property["type"] == "string" && property.get("pattern").is_none() {
            property["pattern"] = Value::String(NO_CONTROL.into());
        }
        if property["type"] == "array" && property["items"]["type"] == "string" {
            property["items"]["pattern"] = Value::String(NO_CONTROL.into());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn identifier_members_declare_that_they_carry_no_control_character() {
        let document: serde_json::Value =
            serde_json::from_str(&crate::http::openapi_json()).unwrap();
        let email = &document["components"]["schemas"]["ForgotPassword"]["properties"]["email"];
        assert!(email["pattern"].is_string(), "{email}");
        let phone = &document["components"]["schemas"]["NewContact"]["properties"]["phone_number"];
        assert!(
            phone["pattern"].as_str().unwrap().contains("u0000"),
            "{phone}"
        );
    }
}
