//! Built-in assistant templates and the seed's four assistant functions (their JSON schemas
//! as VAPI tools). A template's system prompt and first message contain `{{variables}}`;
//! [`Template::render`] substitutes them (a missing required variable is an error naming it;
//! values for undeclared variables are ignored).

use std::collections::BTreeMap;

use serde_json::{json, Value};

pub const DEFAULT_VOICE_ID: &str = "pNInz6obpgDQGcFmaJgB";
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub name: &'static str,
    pub description: &'static str,
    pub required: bool,
    pub default: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub slug: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub system_prompt: &'static str,
    pub first_message: &'static str,
    pub variables: Vec<Variable>,
    pub functions: Vec<&'static str>,
    pub voice_id: &'static str,
    pub model: &'static str,
}

/// A variable the caller had to give and did not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the template variable `{0}` is required")]
pub struct MissingVariable(pub String);

const fn var(
    name: &'static str,
    description: &'static str,
    required: bool,
    default: Option<&'static str>,
) -> Variable {
    Variable {
        name,
        description,
        required,
        default,
    }
}

/// The built-in templates, in a stable order.
pub fn all() -> Vec<Template> {
    vec![
        Template {
            slug: "trucking-dispatch",
            name: "Trucking dispatch",
            description: "Answers a trucking company's dispatch line: logs driver call-outs \
                          (sick, vehicle issues), takes messages and transfers urgent calls to \
                          dispatch or a manager.",
            system_prompt: "You are the phone receptionist for {{company_name}}, a trucking \
company. Drivers and customers call this line.\n\
When a driver calls out (sick, emergency, vehicle issue, personal reason), collect their name, \
the reason, their route number and when they expect to return, then call logDriverCallout.\n\
For load questions, breakdowns on the road or anything urgent, call transferCall with \
destination \"dispatch\" ({{dispatcher_name}} is the dispatcher on duty). Escalate complaints to \
destination \"manager\".\n\
For everything else, take a message with takeMessage.\n\
Be brief and friendly; drivers are often on the road. Dispatch hours: {{dispatch_hours}}.",
            first_message: "Thanks for calling {{company_name}} dispatch. Are you a driver \
                            calling out, or how can I help?",
            variables: vec![
                var(
                    "company_name",
                    "The company's name as callers know it",
                    true,
                    None,
                ),
                var(
                    "dispatcher_name",
                    "Who is on dispatch (used when transferring)",
                    false,
                    Some("the dispatcher"),
                ),
                var(
                    "dispatch_hours",
                    "When dispatch is staffed",
                    false,
                    Some("24/7"),
                ),
            ],
            functions: vec!["logDriverCallout", "transferCall", "takeMessage"],
            voice_id: DEFAULT_VOICE_ID,
            model: DEFAULT_MODEL,
        },
        Template {
            slug: "after-hours-answering",
            name: "After-hours answering service",
            description: "Answers outside business hours: takes messages, schedules callbacks \
                          for the next business day and transfers true emergencies to the \
                          on-call number.",
            system_prompt: "You are the after-hours answering service for {{business_name}}. \
The office is closed; business hours are {{business_hours}}.\n\
Take a message with takeMessage (caller name, phone number, who it is for, the message), or \
offer a callback during business hours with scheduleCallback.\n\
Only if the caller describes an emergency ({{emergency_definition}}), call transferCall with \
destination \"emergency\" and a short reason.\n\
Never promise a specific callback time outside business hours.",
            first_message: "Thank you for calling {{business_name}}. Our office is closed right \
                            now, but I can take a message or arrange a callback.",
            variables: vec![
                var("business_name", "The business's name", true, None),
                var(
                    "business_hours",
                    "Opening hours, as they should be spoken",
                    false,
                    Some("Monday to Friday, 8 AM to 5 PM"),
                ),
                var(
                    "emergency_definition",
                    "What counts as an emergency for this business",
                    false,
                    Some("a risk to people or property that cannot wait until morning"),
                ),
            ],
            functions: vec!["takeMessage", "scheduleCallback", "transferCall"],
            voice_id: DEFAULT_VOICE_ID,
            model: DEFAULT_MODEL,
        },
        Template {
            slug: "home-services-booking",
            name: "Home services booking",
            description: "Books service visits for plumbers, electricians, HVAC and similar \
                          trades: collects the job and a preferred time and schedules a \
                          callback to confirm; takes messages otherwise.",
            system_prompt: "You book service visits for {{business_name}}, a {{trade}} \
business serving {{service_area}}.\n\
Ask what the problem is, the address, and when the caller would like someone to come. Then \
call scheduleCallback with their phone number, name, the job as the reason, their preferred \
time and the urgency (high for leaks, no heat, no power).\n\
If they only want to leave a message, use takeMessage. Do not quote prices; say a technician \
will confirm the estimate.",
            first_message: "Hi, thanks for calling {{business_name}}! What can we help you fix \
                            today?",
            variables: vec![
                var("business_name", "The business's name", true, None),
                var(
                    "trade",
                    "The kind of work (plumbing, HVAC, electrical, ...)",
                    false,
                    Some("home services"),
                ),
                var(
                    "service_area",
                    "Where the business works",
                    false,
                    Some("the local area"),
                ),
            ],
            functions: vec!["scheduleCallback", "takeMessage"],
            voice_id: DEFAULT_VOICE_ID,
            model: DEFAULT_MODEL,
        },
    ]
}

pub fn find(slug: &str) -> Option<Template> {
    all().into_iter().find(|t| t.slug == slug)
}

/// Replaces `{{name}}` (spaces inside the braces allowed) with the value of `name`; unknown
/// names are left as they are.
pub fn substitute(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                let name = after[..end].trim();
                match values.get(name) {
                    Some(value) => out.push_str(value),
                    None => out.push_str(&rest[start..start + 2 + end + 2]),
                }
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The `{{names}}` still present in `text`.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        names.push(after[..end].trim().to_string());
        rest = &after[end + 2..];
    }
    names
}

impl Template {
    /// The values to substitute: given values for declared variables, else defaults. A
    /// required variable without a (non-blank) value is an error; undeclared values are
    /// ignored.
    pub fn values(
        &self,
        given: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, MissingVariable> {
        let mut values = BTreeMap::new();
        for v in &self.variables {
            let value = given
                .get(v.name)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .or_else(|| v.default.map(str::to_string));
            match value {
                Some(value) => {
                    values.insert(v.name.to_string(), value);
                }
                None if v.required => return Err(MissingVariable(v.name.to_string())),
                None => {
                    values.insert(v.name.to_string(), String::new());
                }
            }
        }
        Ok(values)
    }

    /// The system prompt and first message with the variables substituted.
    pub fn render(
        &self,
        given: &BTreeMap<String, String>,
    ) -> Result<(String, String), MissingVariable> {
        let values = self.values(given)?;
        Ok((
            substitute(self.system_prompt, &values),
            substitute(self.first_message, &values),
        ))
    }
}

/// Names of the functions an assistant may enable.
pub const FUNCTIONS: [&str; 4] = [
    "transferCall",
    "logDriverCallout",
    "scheduleCallback",
    "takeMessage",
];

/// The seed's function definition (`{name, description, parameters}`) for `name`.
pub fn function(name: &str) -> Option<Value> {
    Some(match name {
        "transferCall" => json!({
            "name": "transferCall",
            "description": "Transfer the call to another number (dispatch, manager, etc.)",
            "parameters": {
                "type": "object",
                "properties": {
                    "destination": {
                        "type": "string",
                        "enum": ["dispatch", "manager", "emergency"],
                        "description": "Who to transfer to"
                    },
                    "reason": {"type": "string", "description": "Brief reason for the transfer"},
                    "warm": {
                        "type": "boolean",
                        "description": "Whether to do a warm transfer (announce caller first)",
                        "default": false
                    }
                },
                "required": ["destination", "reason"]
            }
        }),
        "logDriverCallout" => json!({
            "name": "logDriverCallout",
            "description": "Log when a driver calls out sick or unavailable",
            "parameters": {
                "type": "object",
                "properties": {
                    "driverName": {"type": "string", "description": "Name of the driver"},
                    "reason": {
                        "type": "string",
                        "enum": ["sick", "emergency", "vehicle_issue", "personal", "other"],
                        "description": "Reason for calling out"
                    },
                    "routeNumber": {"type": "string", "description": "Route number or area assigned"},
                    "expectedReturn": {
                        "type": "string",
                        "description": "When they expect to return (e.g., \"tomorrow\", \"Monday\")"
                    },
                    "additionalNotes": {"type": "string", "description": "Any additional information"}
                },
                "required": ["driverName", "reason"]
            }
        }),
        "scheduleCallback" => json!({
            "name": "scheduleCallback",
            "description": "Schedule a callback for the caller",
            "parameters": {
                "type": "object",
                "properties": {
                    "phoneNumber": {"type": "string", "description": "Phone number to call back"},
                    "callerName": {"type": "string", "description": "Name of the caller"},
                    "reason": {"type": "string", "description": "What they need help with"},
                    "preferredTime": {"type": "string", "description": "When they prefer to be called back"},
                    "urgency": {"type": "string", "enum": ["low", "normal", "high"], "default": "normal"}
                },
                "required": ["phoneNumber", "reason"]
            }
        }),
        "takeMessage" => json!({
            "name": "takeMessage",
            "description": "Take a message for someone",
            "parameters": {
                "type": "object",
                "properties": {
                    "callerName": {"type": "string"},
                    "callerPhone": {"type": "string"},
                    "messageFor": {"type": "string", "description": "Who the message is for"},
                    "message": {"type": "string", "description": "The message content"},
                    "urgent": {"type": "boolean", "default": false}
                },
                "required": ["message"]
            }
        }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_template_declares_the_variables_its_texts_use_and_known_functions() {
        for t in all() {
            let declared: Vec<_> = t.variables.iter().map(|v| v.name).collect();
            for name in placeholders(t.system_prompt)
                .into_iter()
                .chain(placeholders(t.first_message))
            {
                assert!(declared.contains(&name.as_str()), "{}: {name}", t.slug);
            }
            for f in &t.functions {
                assert!(function(f).is_some(), "{}: {f}", t.slug);
            }
        }
    }

    #[test]
    fn rendering_substitutes_defaults_and_ignores_unknown_values() {
        let t = find("trucking-dispatch").expect("template");
        let (prompt, first) = t
            .render(&values(&[("company_name", "Acme"), ("unknown", "x")]))
            .expect("renders");
        assert!(prompt.contains("for Acme, a trucking"));
        assert!(prompt.contains("24/7"));
        assert!(first.contains("Acme dispatch"));
        assert!(placeholders(&prompt).is_empty());
    }

    #[test]
    fn a_missing_required_variable_is_named() {
        let t = find("after-hours-answering").expect("template");
        assert_eq!(
            t.render(&values(&[("business_name", "  ")])),
            Err(MissingVariable("business_name".into()))
        );
    }

    #[test]
    fn substitution_leaves_unknown_and_unclosed_placeholders() {
        let v = values(&[("a", "1")]);
        assert_eq!(substitute("{{a}} {{ a }} {{b}} {{c", &v), "1 1 {{b}} {{c");
    }
}
