//! IAM roles and policy statements. One role per function and per service
//! integration, each allowed only the actions it calls on the resources it
//! touches; `Resource: "*"` only for the actions listed in
//! [`WITHOUT_RESOURCE_TYPES`], which AWS does not let a policy scope.

use serde_json::{Value, json};
use stratosphere::services::aws::iam;
use stratosphere::template::LogicalResourceName;
use stratosphere::value::ExpString;

use crate::stack::{Stack, sub, value};

/// Actions whose authorization AWS checks against `*` only (the service
/// authorization reference lists no resource type for them: X-Ray's,
/// IoT Core's `DescribeEndpoint`), or that Lambda needs on `*` to attach a
/// function to a VPC.
pub const WITHOUT_RESOURCE_TYPES: [&str; 7] = [
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "iot:DescribeEndpoint",
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    // The keyring lists its secrets by name prefix, then reads them in
    // batches; each secret read is still checked by `GetSecretValue` on
    // the secret's own ARN.
    "secretsmanager:ListSecrets",
    "secretsmanager:BatchGetSecretValue",
];

/// An `Allow` statement of `actions` on `resources`.
pub fn allow(actions: &[&str], resources: &[ExpString]) -> Value {
    json!({
        "Effect": "Allow",
        "Action": actions,
        "Resource": resources.iter().map(value).collect::<Vec<_>>(),
    })
}

/// An `Allow` statement of actions that take no resource (see
/// [`WITHOUT_RESOURCE_TYPES`]).
pub fn allow_unscoped(actions: &[&str]) -> Value {
    for action in actions {
        assert!(WITHOUT_RESOURCE_TYPES.contains(action), "{action} can be scoped to a resource");
    }
    json!({ "Effect": "Allow", "Action": actions, "Resource": "*" })
}

/// An ARN in this account and region: `arn:{partition}:{service}:{region}:{account}:{rest}`.
pub fn regional_arn(service: &str, rest: &str) -> ExpString {
    sub(format!("arn:${{AWS::Partition}}:{service}:${{AWS::Region}}:${{AWS::AccountId}}:{rest}"))
}

/// A role that `service` (e.g. `lambda.amazonaws.com`) assumes, with one
/// inline policy of `statements`.
pub fn role(
    stack: &mut Stack,
    logical: &str,
    service: &str,
    description: &str,
    statements: Vec<Value>,
) -> LogicalResourceName {
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Service": service },
            "Action": "sts:AssumeRole",
        }],
    });
    let policy = iam::role::Policy! {
        policy_name: "least-privilege",
        policy_document: json!({ "Version": "2012-10-17", "Statement": statements }),
    };
    let tags = stack.tags();
    stack.resource(
        logical,
        iam::Role! {
            assume_role_policy_document: trust,
            description: description,
            policies: vec![policy],
            tags: tags,
        },
    )
}
