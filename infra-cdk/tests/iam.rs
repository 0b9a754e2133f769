//! Least privilege, checked on every IAM statement of the templates: no
//! wildcard action, and `Resource: "*"` only for the actions AWS cannot
//! scope to a resource.

mod common;

use common::{of_type, template};
use infra_cdk::iam::WITHOUT_RESOURCE_TYPES;
use serde_json::{Value, json};

/// What is wrong with the IAM statements of `template`, one line each.
fn violations(template: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for (role, resource) in of_type(template, "AWS::IAM::Role") {
        let policies = resource["Properties"]["Policies"].as_array().cloned().unwrap_or_default();
        assert!(
            resource["Properties"].get("ManagedPolicyArns").is_none(),
            "{role}: managed policies are not checked here"
        );
        for policy in policies {
            for statement in as_list(&policy["PolicyDocument"]["Statement"]) {
                check(&format!("{role}/{}", policy["PolicyName"]), &statement, &mut found);
            }
        }
    }
    found
}

fn check(at: &str, statement: &Value, found: &mut Vec<String>) {
    if statement.get("NotAction").is_some() || statement.get("NotResource").is_some() {
        found.push(format!("{at}: NotAction/NotResource grant everything else"));
    }
    if statement["Effect"] != "Allow" {
        return;
    }
    let actions: Vec<String> =
        as_list(&statement["Action"]).iter().map(|a| a.as_str().unwrap_or("?").to_owned()).collect();
    for action in &actions {
        if action == "*" || action.ends_with(":*") || action.contains('*') {
            found.push(format!("{at}: wildcard action {action}"));
        }
    }
    let resources = as_list(&statement["Resource"]);
    if resources.is_empty() {
        found.push(format!("{at}: no resource"));
    }
    if resources.contains(&json!("*")) {
        for action in &actions {
            if !WITHOUT_RESOURCE_TYPES.contains(&action.as_str()) {
                found.push(format!("{at}: {action} on \"*\", but it can be scoped to an ARN"));
            }
        }
    }
}

fn as_list(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(list) => list.clone(),
        Value::Null => Vec::new(),
        one => vec![one.clone()],
    }
}

#[test]
fn no_role_of_any_stage_has_wildcards_where_an_arn_exists() {
    for stage in ["dev", "staging", "prod"] {
        let template = template(stage);
        let roles = of_type(&template, "AWS::IAM::Role").len();
        assert_eq!(roles, 8, "six functions, Firehose and the IoT rule");
        assert_eq!(violations(&template), Vec::<String>::new(), "{stage}");
    }
}

#[test]
fn the_check_finds_wildcards() {
    let role = |statement: Value| {
        json!({ "Resources": { "Bad": { "Type": "AWS::IAM::Role", "Properties": {
            "Policies": [{ "PolicyName": "p", "PolicyDocument": { "Statement": [statement] } }]
        } } } })
    };
    let bad = [
        json!({ "Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b" }),
        json!({ "Effect": "Allow", "Action": ["s3:*"], "Resource": "arn:aws:s3:::b" }),
        json!({ "Effect": "Allow", "Action": ["s3:Get*"], "Resource": "arn:aws:s3:::b" }),
        json!({ "Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": "*" }),
        json!({ "Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:s3:::b" }),
    ];
    for statement in bad {
        assert_eq!(violations(&role(statement.clone())).len(), 1, "{statement}");
    }
    let allowed = json!({ "Effect": "Allow", "Action": ["xray:PutTraceSegments"], "Resource": "*" });
    assert!(violations(&role(allowed)).is_empty());
}

#[test]
fn only_the_functions_that_open_readings_read_device_keys_and_only_the_api_writes_them() {
    let template = template("dev");
    let statements_of = |role: &str| {
        template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].to_string()
    };
    for role in ["DecryptRole", "EnrichRole", "AlarmsRole", "ApiRole"] {
        assert!(statements_of(role).contains("device-keys/*"), "{role}");
    }
    for role in ["StatsRole", "LakeDeliveryRole", "TopicRuleRole"] {
        assert!(!statements_of(role).contains("secretsmanager"), "{role}");
    }
    for role in ["DecryptRole", "EnrichRole", "AlarmsRole"] {
        assert!(!statements_of(role).contains("PutSecretValue"), "{role}");
        assert!(!statements_of(role).contains("UpdateSecretVersionStage"), "{role}");
    }
    // Writers swap a secret's current version: put a pending one, then move the label.
    assert!(statements_of("ApiRole").contains("PutSecretValue"));
    assert!(statements_of("ApiRole").contains("UpdateSecretVersionStage"));
}

#[test]
fn the_device_keys_kms_key_decrypts_only_for_those_functions_and_only_through_secrets_manager() {
    let template = template("dev");
    let key = &template["Resources"]["DeviceKeysKey"]["Properties"];
    assert_eq!(key["EnableKeyRotation"], true);
    let statements = key["KeyPolicy"]["Statement"].as_array().unwrap();
    let by_sid =
        |sid: &str| statements.iter().find(|s| s["Sid"] == sid).unwrap_or_else(|| panic!("no {sid}"));

    // The account administers the key but is given no use of it.
    let administration = by_sid("Administration").to_string();
    for usage in ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncrypt", "kms:*\""] {
        assert!(!administration.contains(usage), "{usage} in {administration}");
    }
    let roles = |statement: &Value| {
        let mut names: Vec<String> = as_list(&statement["Principal"]["AWS"])
            .iter()
            .map(|p| p["Fn::GetAtt"][0].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    let read = by_sid("ReadDeviceKeys");
    assert_eq!(read["Action"], "kms:Decrypt");
    assert_eq!(roles(read), ["AlarmsRole", "ApiRole", "DecryptRole", "EnrichRole"]);
    let write = by_sid("WriteDeviceKeys");
    assert_eq!(roles(write), ["ApiRole"]);
    for statement in [read, write] {
        assert_eq!(
            statement["Condition"]["StringEquals"]["kms:ViaService"],
            json!({ "Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com" })
        );
    }
    // The CLI's operator only when named.
    let operator = statements.iter().find(|s| s.get("Fn::If").is_some()).unwrap();
    assert_eq!(operator["Fn::If"][0], "HasKeyOperator");
    assert_eq!(operator["Fn::If"][1]["Principal"]["AWS"], json!({ "Ref": "KeyOperatorArn" }));

    let api = &template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"];
    assert_eq!(api["WENU_KEYS_KMS_KEY"], json!({ "Fn::GetAtt": ["DeviceKeysKey", "Arn"] }));
}
