//! The template being built for one stage: stratosphere's typed template,
//! plus the few things its 0.1 model cannot say, kept here and merged in
//! when the template is rendered:
//!
//! * parameters other than plain strings (numbers with bounds, defaults,
//!   allowed values);
//! * a parameter in a property stratosphere types as a literal integer
//!   (`RetentionPeriodHours`, `SizeInMBs`, …): the typed resource is written
//!   with the default, and [`Stack::set`] puts the parameter's `Ref` there;
//! * resource attributes (`DependsOn`, `DeletionPolicy`, `UpdateReplacePolicy`).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use stratosphere::Tag_;
use stratosphere::template::{LogicalResourceName, Output, OutputExport, Template, ToResource};
use stratosphere::value::{ConditionName, ExpBool, ExpString, ToValue};

use crate::stage::Stage;

/// A template under construction for one stage.
pub struct Stack {
    pub stage: Stage,
    template: Template<'static>,
    parameters: Map<String, Value>,
    attributes: BTreeMap<String, Map<String, Value>>,
    overrides: Vec<(String, String, Value)>,
}

/// A template parameter, referred to by name.
#[derive(Clone, Debug)]
pub struct Parameter(String);

impl Parameter {
    /// `{"Ref": name}`, for a typed field.
    pub fn exp(&self) -> ExpString {
        ExpString::Ref(self.0.as_str().into())
    }

    /// `{"Ref": name}`, for [`Stack::set`] and JSON documents.
    pub fn value(&self) -> Value {
        json!({ "Ref": self.0 })
    }
}

impl Stack {
    pub fn new(stage: Stage) -> Self {
        Stack {
            stage,
            template: Template::new(),
            parameters: Map::new(),
            attributes: BTreeMap::new(),
            overrides: Vec::new(),
        }
    }

    /// The physical name of a part of this stage: `wenu-{stage}-{part}`.
    pub fn name(&self, part: &str) -> String {
        format!("wenu-{}-{part}", self.stage.name())
    }

    /// The tags every taggable resource carries.
    pub fn tags(&self) -> Vec<Tag_> {
        vec![
            Tag_ { key: "wenu:stage".into(), value: self.stage.name().into() },
            Tag_ { key: "wenu:component".into(), value: "wenu".into() },
        ]
    }

    /// The same tags as a map, for the resources that take one (API Gateway).
    pub fn tag_map(&self) -> BTreeMap<String, ExpString> {
        self.tags().into_iter().map(|tag| (literal(&tag.key), tag.value)).collect()
    }

    /// Declares a parameter; `definition` is CloudFormation's own
    /// (`Type`, `Default`, `MinValue`, …).
    pub fn parameter(&mut self, name: &str, definition: Value) -> Parameter {
        let previous = self.parameters.insert(name.to_owned(), definition);
        assert!(previous.is_none(), "parameter {name} declared twice");
        Parameter(name.to_owned())
    }

    pub fn resource<R: ToResource>(&mut self, logical: &str, resource: R) -> LogicalResourceName {
        self.template.resource(logical, resource)
    }

    /// A condition resources can be created under.
    pub fn condition(&mut self, name: &str, expression: ExpBool) -> ConditionName {
        self.template.condition(name, expression)
    }

    pub fn conditional_resource<R: ToResource>(
        &mut self,
        logical: &str,
        condition: &ConditionName,
        resource: R,
    ) -> LogicalResourceName {
        self.template.conditional_resource(logical, condition, resource)
    }

    /// Replaces the property at `pointer` (JSON pointer under `Properties`)
    /// of `logical` by `value`, typically a parameter's `Ref`.
    pub fn set(&mut self, logical: &LogicalResourceName, pointer: &str, value: Value) {
        self.overrides.push((logical.0.clone(), pointer.to_owned(), value));
    }

    pub fn depends_on(&mut self, logical: &LogicalResourceName, on: &LogicalResourceName) {
        let attributes = self.attributes.entry(logical.0.clone()).or_default();
        let list = attributes.entry("DependsOn").or_insert_with(|| json!([]));
        list.as_array_mut().expect("DependsOn is a list").push(json!(on.0));
    }

    /// What happens to stateful resources when the stack or the resource
    /// goes: production keeps them (`Retain`, or `Snapshot` for a database),
    /// other stages delete them so a dev stack tears down completely.
    pub fn keep_on_delete(&mut self, logical: &LogicalResourceName, production_policy: &str) {
        let policy = if self.stage.is_production() { production_policy } else { "Delete" };
        let attributes = self.attributes.entry(logical.0.clone()).or_default();
        attributes.insert("DeletionPolicy".into(), json!(policy));
        attributes.insert("UpdateReplacePolicy".into(), json!(policy));
    }

    /// An output exported as `wenu-{stage}-{key}`, for other stacks and scripts.
    pub fn output(&mut self, key: &str, description: &str, value: ExpString) {
        let export = OutputExport { name: self.name(key).as_str().into(), value: None };
        let output = Output { condition: None, description: description.into(), value, export: Some(export) };
        self.template.output(key, output);
    }

    /// The template as CloudFormation reads it.
    pub fn render(&self) -> Value {
        let mut template = serde_json::to_value(&self.template).expect("a template is plain JSON");
        template["Description"] = json!(format!(
            "Wenu IoT telemetry pipeline, stage {} (synthesized by infra-cdk {})",
            self.stage.name(),
            env!("CARGO_PKG_VERSION")
        ));
        if !self.parameters.is_empty() {
            template["Parameters"] = Value::Object(self.parameters.clone());
        }
        let resources = template["Resources"].as_object_mut().expect("Resources is an object");
        for (logical, attributes) in &self.attributes {
            let resource = resources.get_mut(logical).unwrap_or_else(|| panic!("no resource {logical}"));
            for (key, value) in attributes {
                resource[key] = value.clone();
            }
        }
        for (logical, pointer, value) in &self.overrides {
            let properties = &mut resources
                .get_mut(logical)
                .unwrap_or_else(|| panic!("no resource {logical}"))["Properties"];
            let slot = properties
                .pointer_mut(pointer)
                .unwrap_or_else(|| panic!("{logical} has no property {pointer}"));
            *slot = value.clone();
        }
        template
    }
}

/// `Fn::Sub` of `pattern`, which may name `${AWS::Region}`, resources, …
pub fn sub(pattern: impl Into<String>) -> ExpString {
    ExpString::Sub { pattern: pattern.into() }
}

/// The ARN attribute of a resource.
pub fn arn(logical: &LogicalResourceName) -> ExpString {
    stratosphere::value::get_att_arn(logical)
}

/// A typed expression as a JSON value, to put in a policy document.
pub fn value(expression: &ExpString) -> Value {
    expression.to_value()
}

fn literal(expression: &ExpString) -> String {
    match expression {
        ExpString::Literal(text) => text.clone(),
        other => panic!("tag keys are literals, not {other:?}"),
    }
}
