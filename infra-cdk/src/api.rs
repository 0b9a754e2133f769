//! The API: one function behind an API Gateway HTTP API, serving the
//! dashboard API, the registry API and the backoffice pages (the same
//! router as `wenu serve`).

use stratosphere::services::aws::{apigatewayv2, lambda};
use stratosphere::value::ExpString;

use crate::alarms::Alarms;
use crate::functions::{Function, FunctionSpec, Platform, function};
use crate::registry::Registry;
use crate::stack::{Stack, sub};
use crate::stats::Stats;
use crate::tables;

pub fn api(
    stack: &mut Stack,
    platform: &Platform,
    registry: &Registry,
    stats: &Stats,
    alarms: &Alarms,
) -> Function {
    let mut statements = registry.read_statements();
    statements.extend(registry.keys_read_statements());
    statements.extend(registry.keys_write_statements());
    statements.push(tables::read(&stats.table));
    statements.push(tables::read_write(&alarms.table));
    let mut environment = registry.environment();
    environment.extend([
        ("WENU_STATS_TABLE", ExpString::from(&stats.table)),
        ("WENU_ALARMS_TABLE", ExpString::from(&alarms.table)),
        ("WENU_KEYS_KMS_KEY", registry.keys_kms_key()),
    ]);
    let function = function(
        stack,
        platform,
        FunctionSpec {
            id: "Api",
            binary: "wenu-api",
            description: "Dashboard API, registry API and backoffice pages",
            memory_mb: 512,
            timeout_secs: 29,
            in_vpc: true,
            environment,
            statements,
        },
    );
    // Quick create: one Lambda proxy integration on `$default`, auto-deployed.
    let http_api = stack.resource(
        "HttpApi",
        apigatewayv2::Api! {
            name: stack.name("api").as_str(),
            protocol_type: "HTTP",
            target: function.arn(),
            tags: stack.tag_map(),
        },
    );
    stack.resource(
        "HttpApiInvokesApiFunction",
        lambda::Permission! {
            action: "lambda:InvokeFunction",
            function_name: function.arn(),
            principal: "apigateway.amazonaws.com",
            source_arn: sub(format!(
                "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{{}}}/*",
                http_api.0
            )),
        },
    );
    stack.output("ApiUrl", "The dashboard and registry API", sub(format!("${{{}.ApiEndpoint}}", http_api.0)));
    function
}
