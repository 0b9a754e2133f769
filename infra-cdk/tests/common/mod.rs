//! Reading synthesized templates in the tests.

#![allow(dead_code)]

use serde_json::Value;

pub fn template(stage: &str) -> Value {
    infra_cdk::synth(infra_cdk::Stage::new(stage).unwrap())
}

pub fn resource<'a>(template: &'a Value, logical: &str) -> &'a Value {
    template["Resources"].get(logical).unwrap_or_else(|| panic!("no resource {logical}"))
}

pub fn properties<'a>(template: &'a Value, logical: &str) -> &'a Value {
    &resource(template, logical)["Properties"]
}

/// The logical ids and resources of one type.
pub fn of_type<'a>(template: &'a Value, resource_type: &str) -> Vec<(&'a str, &'a Value)> {
    template["Resources"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, resource)| resource["Type"] == resource_type)
        .map(|(logical, resource)| (logical.as_str(), resource))
        .collect()
}

pub fn get_att(logical: &str, attribute: &str) -> Value {
    serde_json::json!({ "Fn::GetAtt": [logical, attribute] })
}

pub fn reference(logical: &str) -> Value {
    serde_json::json!({ "Ref": logical })
}
