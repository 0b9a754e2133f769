//! An environment of the deployment (`dev`, `staging`, `prod`, or a
//! developer's own): its name goes into every physical name, export and tag,
//! so several stages live side by side in one account.

use crate::Error;

/// A validated stage name and the profile it implies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    name: String,
}

/// Stages that keep their data when deleted and run the database in two
/// availability zones.
const PRODUCTION_STAGES: [&str; 3] = ["prod", "production", "staging"];

impl Stage {
    /// A stage name is 1–12 lower-case letters, digits or dashes starting
    /// with a letter: it goes into bucket, role and function names, whose
    /// limits (63–64 characters) leave it that much room.
    pub fn new(name: &str) -> Result<Self, Error> {
        let valid = (1..=12).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && !name.ends_with('-')
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid { Ok(Stage { name: name.to_owned() }) } else { Err(Error::StageName(name.to_owned())) }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name where only letters, digits and underscores are allowed
    /// (Glue databases, IoT rules).
    pub fn identifier(&self) -> String {
        self.name.replace('-', "_")
    }

    /// The MQTT topic filter of this stage's devices. IoT Core's topics and
    /// rules are account-wide, so only the production stage uses the bare
    /// `wenu/{device}/telemetry`; another stage's devices publish under its
    /// name (`wenu sim --topic-prefix dev`), or both stages' rules would take
    /// every message.
    pub fn telemetry_topic_filter(&self) -> String {
        match self.topic_prefix() {
            None => "wenu/+/telemetry".to_owned(),
            Some(prefix) => format!("{prefix}/wenu/+/telemetry"),
        }
    }

    /// What comes before `wenu/{device}/telemetry` on this stage, if anything.
    pub fn topic_prefix(&self) -> Option<&str> {
        (!matches!(self.name.as_str(), "prod" | "production")).then_some(self.name.as_str())
    }

    pub fn is_production(&self) -> bool {
        PRODUCTION_STAGES.contains(&self.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_fit_every_resource_name() {
        for good in ["dev", "prod", "staging", "alice-2", "a"] {
            assert!(Stage::new(good).is_ok(), "{good}");
        }
        for bad in ["", "Dev", "2dev", "dev_1", "dev-", "a-very-long-stage", "dév"] {
            assert!(Stage::new(bad).is_err(), "{bad}");
        }
        assert!(Stage::new("prod").unwrap().is_production());
        assert!(!Stage::new("dev").unwrap().is_production());
        assert_eq!(Stage::new("qa-eu").unwrap().identifier(), "qa_eu");
        assert_eq!(Stage::new("prod").unwrap().telemetry_topic_filter(), "wenu/+/telemetry");
        assert_eq!(Stage::new("dev").unwrap().telemetry_topic_filter(), "dev/wenu/+/telemetry");
    }
}
