//! A Lambda function the way every Wenu function is deployed: the
//! `bootstrap` zip that `cargo lambda build --release --arm64 --output-format zip`
//! makes, on `provided.al2023` and Graviton, with its own role, its own log
//! group (so logs expire), active tracing, and the registry's network when
//! it talks to the database.

use serde_json::{Value, json};
use stratosphere::services::aws::{events, lambda, logs};
use stratosphere::template::LogicalResourceName;
use stratosphere::value::ExpString;

use crate::iam;
use crate::network::Network;
use crate::stack::{Parameter, Stack, arn, sub};

/// What a function needs from the rest of the stack.
pub struct Platform {
    /// The bucket the function zips were uploaded to.
    pub artifacts_bucket: Parameter,
    pub network: Network,
}

/// One function of the pipeline.
pub struct FunctionSpec {
    /// `Decrypt` → resources `DecryptFunction`, `DecryptRole`, …, parameter `DecryptCodeKey`.
    pub id: &'static str,
    /// The binary of `wenu-lambdas` (`wenu-decrypt`, …), also the zip's default name.
    pub binary: &'static str,
    pub description: &'static str,
    pub memory_mb: i32,
    pub timeout_secs: i32,
    /// Whether it reaches the registry database (in the VPC's private subnets).
    pub in_vpc: bool,
    pub environment: Vec<(&'static str, ExpString)>,
    /// What it may do besides logging and tracing.
    pub statements: Vec<Value>,
}

/// A deployed function.
pub struct Function {
    pub id: &'static str,
    pub logical: LogicalResourceName,
    pub name: String,
    pub role: LogicalResourceName,
}

impl Function {
    pub fn arn(&self) -> ExpString {
        arn(&self.logical)
    }
}

pub fn function(stack: &mut Stack, platform: &Platform, spec: FunctionSpec) -> Function {
    let short = spec.binary.trim_start_matches("wenu-");
    let name = stack.name(short);
    let code_key = stack.parameter(
        &format!("{}CodeKey", spec.id),
        json!({
            "Type": "String",
            "Default": format!("{}.zip", spec.binary),
            "Description": format!("S3 key of the {} zip in ArtifactsBucket (change it to deploy new code)", spec.binary),
        }),
    );

    let retention = if stack.stage.is_production() { 90 } else { 14 };
    let log_group = stack.resource(
        &format!("{}LogGroup", spec.id),
        logs::LogGroup! {
            log_group_name: format!("/aws/lambda/{name}").as_str(),
            retention_in_days: retention,
            tags: stack.tags(),
        },
    );

    let mut statements = vec![
        iam::allow(
            &["logs:CreateLogStream", "logs:PutLogEvents"],
            &[sub(format!("${{{}.Arn}}", log_group.0))],
        ),
        iam::allow_unscoped(&["xray:PutTraceSegments", "xray:PutTelemetryRecords"]),
    ];
    if spec.in_vpc {
        // What Lambda needs to give the function a network interface in the
        // VPC (AWSLambdaVPCAccessExecutionRole, scoped where EC2 allows it).
        statements
            .push(iam::allow_unscoped(&["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces"]));
        statements.push(iam::allow(
            &["ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"],
            &[iam::regional_arn("ec2", "*/*")],
        ));
    }
    statements.extend(spec.statements);
    let role = iam::role(
        stack,
        &format!("{}Role", spec.id),
        "lambda.amazonaws.com",
        &format!("{}: {}", name, spec.description),
        statements,
    );

    let variables: std::collections::BTreeMap<String, ExpString> =
        spec.environment.into_iter().map(|(key, value)| (key.to_owned(), value)).collect();
    let vpc_config = spec.in_vpc.then(|| {
        lambda::function::VpcConfig! {
            security_group_ids: vec![(&platform.network.functions_security_group).into()],
            subnet_ids: platform.network.private_subnets.iter().map(Into::into).collect::<Vec<ExpString>>(),
        }
    });
    let logical = stack.resource(
        &format!("{}Function", spec.id),
        lambda::Function_ {
            architectures: Some(vec!["arm64".into()]),
            code: lambda::function::Code! { s3_bucket: platform.artifacts_bucket.exp(), s3_key: code_key.exp() },
            description: Some(spec.description.into()),
            environment: Some(lambda::function::Environment! { variables: variables }),
            function_name: Some(name.as_str().into()),
            handler: Some("bootstrap".into()),
            logging_config: Some(lambda::function::LoggingConfig! { log_group: (&log_group) }),
            memory_size: Some(spec.memory_mb),
            role: arn(&role),
            runtime: Some("provided.al2023".into()),
            tags: Some(stack.tags()),
            timeout: Some(spec.timeout_secs),
            tracing_config: Some(lambda::function::TracingConfig! { mode: "Active" }),
            vpc_config,
            ..lambda_defaults()
        },
    );
    Function { id: spec.id, logical, name, role }
}

/// Every optional property of a function unset.
fn lambda_defaults() -> lambda::Function_ {
    lambda::Function! { code: lambda::function::Code! {}, role: "" }
}

/// Invokes `function` every minute through an EventBridge rule `logical`
/// (`{stage}-{name}`): work that must happen even when no event comes.
pub fn every_minute(stack: &mut Stack, logical: &str, name: &str, description: &str, function: &Function) {
    let rule = stack.resource(
        logical,
        events::Rule! {
            name: stack.name(name).as_str(),
            description: description,
            schedule_expression: "rate(1 minute)",
            state: "ENABLED",
            targets: vec![events::rule::Target! {
                id: format!("{}-function", function.id.to_lowercase()).as_str(),
                arn: function.arn(),
            }],
        },
    );
    stack.resource(
        &format!("{logical}Invoke{}Function", function.id),
        lambda::Permission! {
            action: "lambda:InvokeFunction",
            function_name: function.arn(),
            principal: "events.amazonaws.com",
            source_arn: arn(&rule),
        },
    );
}
