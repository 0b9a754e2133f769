//! The network the registry database lives in: a VPC over two availability
//! zones, private subnets for the database and the functions that reach it,
//! public subnets only for the NAT gateway through which those functions
//! call the AWS APIs without endpoints and deliver alarm webhooks. S3 and
//! DynamoDB are reached through (free) gateway endpoints.

use stratosphere::services::aws::ec2;
use stratosphere::template::LogicalResourceName;
use stratosphere::value::{ExpString, fn_get_azs, fn_select_string};

use crate::stack::{Stack, sub};

pub struct Network {
    pub vpc: LogicalResourceName,
    pub private_subnets: Vec<LogicalResourceName>,
    /// The functions' network interfaces.
    pub functions_security_group: LogicalResourceName,
}

const ZONES: u8 = 2;

pub fn network(stack: &mut Stack) -> Network {
    let vpc = stack.resource(
        "Vpc",
        ec2::VPC! {
            cidr_block: "10.40.0.0/16",
            enable_dns_hostnames: true,
            enable_dns_support: true,
            tags: named(stack, stack.name("vpc")),
        },
    );
    let internet = stack.resource("InternetGateway", ec2::InternetGateway! { tags: stack.tags() });
    let attachment = stack.resource(
        "InternetGatewayAttachment",
        ec2::VPCGatewayAttachment! { vpc_id: (&vpc), internet_gateway_id: (&internet) },
    );

    let public_routes =
        stack.resource("PublicRouteTable", ec2::RouteTable! { vpc_id: (&vpc), tags: stack.tags() });
    let to_internet = stack.resource(
        "PublicDefaultRoute",
        ec2::Route! { route_table_id: (&public_routes), destination_cidr_block: "0.0.0.0/0", gateway_id: (&internet) },
    );
    stack.depends_on(&to_internet, &attachment);

    let mut public_subnets = Vec::new();
    let mut private_subnets = Vec::new();
    for zone in 0..ZONES {
        let public =
            subnet(stack, &vpc, &format!("PublicSubnet{}", zone + 1), zone, &format!("10.40.{zone}.0/24"));
        stack.resource(
            &format!("PublicSubnet{}Routes", zone + 1),
            ec2::SubnetRouteTableAssociation! { route_table_id: (&public_routes), subnet_id: (&public) },
        );
        public_subnets.push(public);
        let private = subnet(
            stack,
            &vpc,
            &format!("PrivateSubnet{}", zone + 1),
            zone,
            &format!("10.40.{}.0/22", 16 + zone * 4),
        );
        private_subnets.push(private);
    }

    // One NAT gateway: a second (one per zone) doubles its hourly cost for
    // resilience to a zone failure; see docs/aws.md.
    let address = stack.resource("NatAddress", ec2::EIP! { domain: "vpc", tags: stack.tags() });
    stack.depends_on(&address, &attachment);
    let nat = stack.resource(
        "NatGateway",
        ec2::NatGateway! {
            allocation_id: sub("${NatAddress.AllocationId}"),
            subnet_id: (&public_subnets[0]),
            tags: stack.tags(),
        },
    );
    let private_routes =
        stack.resource("PrivateRouteTable", ec2::RouteTable! { vpc_id: (&vpc), tags: stack.tags() });
    stack.resource(
        "PrivateDefaultRoute",
        ec2::Route! { route_table_id: (&private_routes), destination_cidr_block: "0.0.0.0/0", nat_gateway_id: (&nat) },
    );
    for (index, private) in private_subnets.iter().enumerate() {
        stack.resource(
            &format!("PrivateSubnet{}Routes", index + 1),
            ec2::SubnetRouteTableAssociation! { route_table_id: (&private_routes), subnet_id: private },
        );
    }
    for (logical, service) in [("S3Endpoint", "s3"), ("DynamoDbEndpoint", "dynamodb")] {
        stack.resource(
            logical,
            ec2::VPCEndpoint! {
                vpc_id: (&vpc),
                service_name: sub(format!("com.amazonaws.${{AWS::Region}}.{service}")),
                vpc_endpoint_type: "Gateway",
                route_table_ids: vec![ExpString::from(&private_routes)],
            },
        );
    }

    let functions_security_group = stack.resource(
        "FunctionsSecurityGroup",
        ec2::SecurityGroup! {
            group_description: "Wenu functions that reach the registry database",
            vpc_id: (&vpc),
            security_group_egress: vec![ec2::securitygroup::Egress! {
                ip_protocol: "-1",
                cidr_ip: "0.0.0.0/0",
                description: "AWS APIs, the registry database and alarm webhooks",
            }],
            tags: stack.tags(),
        },
    );
    Network { vpc, private_subnets, functions_security_group }
}

fn subnet(
    stack: &mut Stack,
    vpc: &LogicalResourceName,
    logical: &str,
    zone: u8,
    cidr: &str,
) -> LogicalResourceName {
    let tags = named(stack, format!("{}-{}", stack.name("subnet"), logical.to_lowercase()));
    stack.resource(
        logical,
        ec2::Subnet! {
            vpc_id: vpc,
            cidr_block: cidr,
            availability_zone: fn_select_string(zone, fn_get_azs("")),
            tags: tags,
        },
    )
}

/// The stage's tags and a `Name`, which the EC2 console shows.
fn named(stack: &Stack, name: String) -> Vec<stratosphere::Tag_> {
    let mut tags = stack.tags();
    tags.push(stratosphere::Tag_ { key: "Name".into(), value: name.as_str().into() });
    tags
}
