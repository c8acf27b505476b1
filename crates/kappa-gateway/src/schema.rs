//! The actions a service accepts, each with the JSON Schema its `data` must match.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::error::GatewayError;

/// One schema violation: where in `data` (a JSON pointer) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// JSON pointer into the command's `data` (`""` is `data` itself).
    pub pointer: String,
    /// What the schema requires there.
    pub message: String,
}

struct Action {
    schema: Value,
    validator: jsonschema::Validator,
    description: String,
}

/// The registered actions and their schemas.
///
/// ```
/// use kappa_gateway::{Actions, Refusal};
/// let mut actions = Actions::new();
/// actions.register("set-limit", "Sets a card's limit", serde_json::json!({
///     "type": "object", "required": ["limit"],
///     "properties": {"limit": {"type": "integer", "minimum": 0}}
/// }))?;
/// assert!(actions.validate("set-limit", &serde_json::json!({"limit": 5})).is_ok());
/// let refused = actions.validate("set-limit", &serde_json::json!({"limit": -1}));
/// let Err(Refusal::Invalid(violations)) = refused else { panic!("{refused:?}") };
/// assert_eq!(violations[0].pointer, "/limit");
/// # Ok::<_, kappa_gateway::GatewayError>(())
/// ```
#[derive(Default)]
pub struct Actions {
    actions: BTreeMap<String, Action>,
}

/// Why a command's action or data is refused.
#[derive(Debug)]
pub enum Refusal {
    /// No such action is registered.
    UnknownAction,
    /// `data` breaks the action's schema.
    Invalid(Vec<Violation>),
}

impl Actions {
    /// No actions yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers an action with the schema of its `data`.
    ///
    /// # Errors
    ///
    /// The name is not kebab-case, is registered twice, or the schema is not
    /// a valid JSON Schema.
    pub fn register(
        &mut self,
        action: &str,
        description: &str,
        schema: Value,
    ) -> Result<(), GatewayError> {
        if !kappa_service::is_action_name(action) {
            return Err(GatewayError::Config(format!(
                "action {action:?} is not a kebab-case name"
            )));
        }
        if self.actions.contains_key(action) {
            return Err(GatewayError::Config(format!(
                "action {action:?} is registered twice"
            )));
        }
        let validator = jsonschema::validator_for(&schema).map_err(|e| {
            GatewayError::Config(format!("the schema of action {action:?} is invalid: {e}"))
        })?;
        self.actions.insert(
            action.to_owned(),
            Action {
                schema,
                validator,
                description: description.to_owned(),
            },
        );
        Ok(())
    }

    /// Checks `data` against the action's schema, listing every violation.
    ///
    /// # Errors
    ///
    /// The action is unknown or the data is invalid.
    pub fn validate(&self, action: &str, data: &Value) -> Result<(), Refusal> {
        let a = self.actions.get(action).ok_or(Refusal::UnknownAction)?;
        if a.validator.is_valid(data) {
            return Ok(());
        }
        let mut violations: Vec<Violation> = a
            .validator
            .iter_errors(data)
            .map(|e| Violation {
                pointer: e.instance_path().to_string(),
                message: e.to_string(),
            })
            .collect();
        violations.sort_by(|x, y| x.pointer.cmp(&y.pointer));
        violations.dedup();
        Err(Refusal::Invalid(violations))
    }

    /// Whether an action is registered.
    pub fn contains(&self, action: &str) -> bool {
        self.actions.contains_key(action)
    }

    /// The registered action names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.actions.keys().map(String::as_str)
    }

    /// (name, description, schema) of every action, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.actions
            .iter()
            .map(|(n, a)| (n.as_str(), a.description.as_str(), &a.schema))
    }
}
