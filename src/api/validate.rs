//! What the API server checks when a CR is applied, done here for objects that never reach one (the local
//! pipeline, `fireweave-ai run`): the structural schema (types, required fields, enums, unknown fields) and
//! the CEL rules of the generated CRDs. Pure: a value in, the field errors `kubectl apply` would print out.

use kube::CustomResourceExt;
use kube::core::cel::Validator;
use serde_json::{Value, json};

use super::{Dataset, ModelServing, TrainingRun};

/// One problem with an object, at a field path such as `spec.hyperparameters.learningRate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// The kinds of `ai.fireweave.io/v1alpha1`.
pub const KINDS: [&str; 3] = ["Dataset", "TrainingRun", "ModelServing"];

/// The OpenAPI v3 schema of a kind's CRD, or `None` for a kind that is not ours.
pub fn schema_of(kind: &str) -> Option<Value> {
    let crd = match kind {
        "Dataset" => Dataset::crd(),
        "TrainingRun" => TrainingRun::crd(),
        "ModelServing" => ModelServing::crd(),
        _ => return None,
    };
    let schema = crd
        .spec
        .versions
        .first()?
        .schema
        .as_ref()?
        .open_api_v3_schema
        .as_ref()?;
    serde_json::to_value(schema).ok()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Structural checks the API server makes before CEL. Unknown fields are errors, as with `kubectl apply`'s
/// default strict field validation: a misspelt field must not silently fall back to its default.
pub fn structural_errors(schema: &Value, value: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    walk(schema, value, "", &mut errors);
    errors
}

fn walk(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let mut push = |field: String, message: String| errors.push(FieldError { field, message });
    if value.is_null() && schema["nullable"] == true {
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        push(path.into(), format!("Unsupported value: {value}"));
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&json!(true)) {
        return;
    }
    let ok = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !ok {
        let want = schema["type"].as_str().unwrap_or("?");
        push(path.into(), format!("expected {want}, got {value}"));
        return;
    }
    if let Some(x) = value.as_f64() {
        if let Some(min) = schema["minimum"].as_f64()
            && x < min
        {
            push(
                path.into(),
                format!("Invalid value: {value}: should be greater than or equal to {min}"),
            );
        }
        if let Some(max) = schema["maximum"].as_f64()
            && x > max
        {
            push(
                path.into(),
                format!("Invalid value: {value}: should be less than or equal to {max}"),
            );
        }
    }
    if let Some(obj) = value.as_object() {
        let props = schema["properties"].as_object();
        for req in schema["required"].as_array().into_iter().flatten() {
            let key = req.as_str().unwrap_or_default();
            if !obj.contains_key(key) {
                push(join(path, key), "Required value".into());
            }
        }
        for (k, v) in obj {
            let child = join(path, k);
            match (props.and_then(|p| p.get(k)), schema.get("additionalProperties")) {
                (Some(s), _) => walk(s, v, &child, errors),
                (None, Some(s)) if s.is_object() => walk(s, v, &child, errors),
                _ if schema["x-kubernetes-preserve-unknown-fields"] == true => {}
                // ObjectMeta is not part of a CRD's schema; the API server validates it itself.
                _ if path.is_empty() && (k == "apiVersion" || k == "kind" || k == "metadata") => {}
                _ => errors.push(FieldError {
                    field: child,
                    message: "unknown field".into(),
                }),
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            walk(items, v, &format!("{path}[{i}]"), errors);
        }
    }
}

/// The CRD's `x-kubernetes-validations` rules evaluated on `value` (`old` for transition rules).
pub fn cel_errors(schema: &Value, value: &Value, old: Option<&Value>) -> Vec<FieldError> {
    match Validator::new().validate(schema, value, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_iter()
            .map(|e| FieldError {
                field: e.field_path.trim_start_matches('.').to_string(),
                message: e.message,
            })
            .collect(),
    }
}

/// Everything the API server would reject in a new object of one of our kinds: structural errors first (CEL
/// rules are not evaluated on a structurally broken object, as in the API server).
pub fn validate(kind: &str, value: &Value) -> Vec<FieldError> {
    let Some(schema) = schema_of(kind) else {
        return vec![FieldError {
            field: "kind".into(),
            message: format!("unknown kind {kind:?}; expected one of {}", KINDS.join(", ")),
        }];
    };
    let errors = structural_errors(&schema, value);
    if !errors.is_empty() {
        return errors;
    }
    cel_errors(&schema, value, None)
}
