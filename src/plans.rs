//! The plan catalogue: what an organization can subscribe to, and what each plan includes.
//!
//! Configuration, not data: `CALLFLEX_PLANS_FILE` (a JSON file) or `CALLFLEX_PLANS` (the same
//! JSON inline) replaces the built-in sandbox catalogue. Each plan names its Stripe price
//! (how a Stripe subscription is recognised) and the Stripe Billing Meter its overage is
//! reported to. See README, "Plans".

use serde::{Deserialize, Serialize};

/// One plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Stable id (`starter`): what checkout takes and what the billing page shows.
    pub id: String,
    pub name: String,
    /// The Stripe recurring price a checkout subscribes to.
    pub stripe_price_id: String,
    /// The monthly fee, for display (Stripe's price is what is charged).
    #[serde(default)]
    pub monthly_price_cents: i64,
    /// Minutes included per billing period.
    pub included_minutes: i64,
    /// Price of each minute beyond the included ones, in cents.
    pub overage_cents_per_minute: i64,
    /// The `event_name` of the Stripe Billing Meter overage minutes are reported to.
    pub meter_event_name: String,
}

/// The catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plans(Vec<Plan>);

/// The meter every built-in plan reports to.
pub const DEFAULT_METER: &str = "callflex_overage_minutes";

fn plan(id: &str, name: &str, fee: i64, included: i64, overage: i64) -> Plan {
    Plan {
        id: id.into(),
        name: name.into(),
        stripe_price_id: format!("price_sandbox_{id}"),
        monthly_price_cents: fee,
        included_minutes: included,
        overage_cents_per_minute: overage,
        meter_event_name: DEFAULT_METER.into(),
    }
}

impl Default for Plans {
    /// The sandbox catalogue the embedded default ships with.
    fn default() -> Self {
        Plans(vec![
            plan("starter", "Starter", 4_900, 500, 12),
            plan("professional", "Professional", 14_900, 2_000, 10),
            plan("business", "Business", 34_900, 5_000, 8),
        ])
    }
}

impl Plans {
    /// Parses a catalogue: a JSON array of plans, ids and price ids unique, numbers sane.
    pub fn parse(json: &str) -> Result<Self, String> {
        let plans: Vec<Plan> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if plans.is_empty() {
            return Err("the catalogue has no plan".into());
        }
        for (i, p) in plans.iter().enumerate() {
            let fields = [&p.id, &p.name, &p.stripe_price_id, &p.meter_event_name];
            if fields.iter().any(|f| f.trim().is_empty()) {
                return Err(format!(
                    "plan {i}: id, name, price and meter must not be empty"
                ));
            }
            if p.included_minutes < 0 || p.overage_cents_per_minute < 0 || p.monthly_price_cents < 0
            {
                return Err(format!("plan `{}`: amounts must not be negative", p.id));
            }
            let later = &plans[i + 1..];
            if later.iter().any(|q| q.id == p.id) {
                return Err(format!("plan id `{}` appears twice", p.id));
            }
            if later.iter().any(|q| q.stripe_price_id == p.stripe_price_id) {
                return Err(format!("price `{}` appears twice", p.stripe_price_id));
            }
        }
        Ok(Plans(plans))
    }

    pub fn all(&self) -> &[Plan] {
        &self.0
    }

    pub fn by_id(&self, id: &str) -> Option<&Plan> {
        self.0.iter().find(|p| p.id == id)
    }

    pub fn by_price(&self, price_id: &str) -> Option<&Plan> {
        self.0.iter().find(|p| p.stripe_price_id == price_id)
    }

    /// The plan a Stripe subscription is on: by its price, else by the plan id its metadata
    /// carries.
    pub fn resolve(&self, price_id: Option<&str>, plan: Option<&str>) -> Option<&Plan> {
        price_id
            .and_then(|p| self.by_price(p))
            .or_else(|| plan.and_then(|p| self.by_id(p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sandbox_catalogue_resolves_by_price_and_by_id() {
        let plans = Plans::default();
        assert_eq!(
            plans
                .resolve(Some("price_sandbox_professional"), None)
                .map(|p| p.included_minutes),
            Some(2_000)
        );
        assert_eq!(
            plans
                .resolve(Some("price_unknown"), Some("starter"))
                .map(|p| p.id.as_str()),
            Some("starter")
        );
        assert_eq!(plans.resolve(Some("price_unknown"), None), None);
    }

    #[test]
    fn a_configured_catalogue_is_checked() {
        let one = r#"[{"id":"solo","name":"Solo","stripe_price_id":"price_1","included_minutes":100,
            "overage_cents_per_minute":15,"meter_event_name":"minutes"}]"#;
        let plans = Plans::parse(one).expect("valid");
        assert_eq!(plans.by_id("solo").map(|p| p.monthly_price_cents), Some(0));
        assert!(Plans::parse("[]").is_err());
        assert!(Plans::parse("{").is_err());
        let twice = format!("[{},{}]", &one[1..one.len() - 1], &one[1..one.len() - 1]);
        assert!(Plans::parse(&twice).unwrap_err().contains("twice"));
        let negative = one.replace("\"included_minutes\":100", "\"included_minutes\":-1");
        assert!(Plans::parse(&negative).is_err());
        let unknown = one.replace("\"name\"", "\"nam\"");
        assert!(Plans::parse(&unknown).is_err());
    }
}
