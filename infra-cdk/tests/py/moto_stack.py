"""Creates a synthesized template in moto's CloudFormation and reports
what moto made of it, as JSON on stdout.

moto models only some resource types; for the others it creates nothing,
and a `Fn::GetAtt` on them (or on an attribute moto does not model) fails
the whole stack. So the template is first reduced, and every change is
reported (`skipped`): outputs that name an unmodelled resource are dropped,
attributes moto does not model are replaced by a placeholder string, and
the few properties moto fails on (MOTO_FAILS_ON) are left out.

Usage: python moto_stack.py TEMPLATE.json STACK_NAME
"""

import io
import json
import re
import sys
import zipfile

import boto3
import botocore.exceptions
from moto.cloudformation.parsing import get_model_map
from moto.server import ThreadedMotoServer

PLACEHOLDER = "moto-does-not-model:{}"

# Properties moto's CloudFormation fails on although AWS takes them:
# (resource type, property, why).
MOTO_FAILS_ON = [
    ("AWS::KMS::Key", "Tags", "moto reads KMS tags as TagKey/TagValue, not CloudFormation's Key/Value"),
]


def names_in(value):
    """Logical ids a value refers to by Ref, GetAtt or Sub."""
    text = json.dumps(value)
    return (
        set(re.findall(r'"Ref": "([A-Za-z0-9]+)"', text))
        | set(re.findall(r'"Fn::GetAtt": \["([A-Za-z0-9]+)"', text))
        | set(re.findall(r"\$\{([A-Za-z0-9]+)[.}]", text))
    )


def reduce(template, models):
    resources = template["Resources"]
    unmodelled = {k for k, r in resources.items() if r["Type"] not in models}
    skipped = {
        "resources": sorted(f"{k} ({resources[k]['Type']})" for k in unmodelled),
        "outputs": [],
        "attributes": [],
        "properties": [],
    }
    for logical, resource in resources.items():
        for resource_type, prop, why in MOTO_FAILS_ON:
            if resource["Type"] == resource_type and prop in resource.get("Properties", {}):
                del resource["Properties"][prop]
                skipped["properties"].append(f"{logical}.{prop}: {why}")
    for key in [k for k, o in template.get("Outputs", {}).items() if names_in(o) & unmodelled]:
        del template["Outputs"][key]
        skipped["outputs"].append(key)

    def modelled_attribute(logical, attribute):
        resource = resources.get(logical)
        if resource is None:
            return True  # not a resource (a pseudo parameter): moto resolves it
        if logical in unmodelled:
            return False  # moto creates nothing to read it from
        return models[resource["Type"]].has_cfn_attr(attribute)

    def walk(value, where):
        if isinstance(value, dict):
            if "Fn::GetAtt" in value:
                logical, attribute = value["Fn::GetAtt"]
                if not modelled_attribute(logical, attribute):
                    skipped["attributes"].append(f"{where}: {logical}.{attribute}")
                    return PLACEHOLDER.format(f"{logical}.{attribute}")
            if "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
                text = value["Fn::Sub"]
                for logical, attribute in re.findall(r"\$\{([A-Za-z0-9]+)\.([A-Za-z0-9.]+)\}", text):
                    if not modelled_attribute(logical, attribute):
                        skipped["attributes"].append(f"{where}: {logical}.{attribute}")
                        text = text.replace(f"${{{logical}.{attribute}}}", PLACEHOLDER.format(f"{logical}.{attribute}"))
                return {"Fn::Sub": text}
            return {k: walk(v, where) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, where) for v in value]
        return value

    for key, resource in resources.items():
        resources[key] = walk(resource, key)
    for key, output in template.get("Outputs", {}).items():
        template["Outputs"][key] = walk(output, f"output {key}")
    skipped["attributes"] = sorted(set(skipped["attributes"]))
    return skipped


def upload_function_zips(s3, template):
    """moto's Lambda reads each function's zip at creation (it does not run
    them: that needs Docker), so the artifacts bucket gets one zip per code
    key parameter, holding a `bootstrap` that only says what it is."""
    s3.create_bucket(Bucket="wenu-artifacts", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for name, parameter in template["Parameters"].items():
        if name.endswith("CodeKey"):
            archive = io.BytesIO()
            with zipfile.ZipFile(archive, "w") as zip_file:
                zip_file.writestr("bootstrap", "#!/bin/sh\necho 'not a real function: moto does not run code'\n")
            s3.put_object(Bucket="wenu-artifacts", Key=parameter["Default"], Body=archive.getvalue())


def read(call):
    """A setting read back, or `{"missing": error code}` where moto did not apply it."""
    try:
        return call()
    except botocore.exceptions.ClientError as error:
        return {"missing": error.response["Error"]["Code"]}


def main():
    template = json.load(open(sys.argv[1]))
    stack_name = sys.argv[2]
    skipped = reduce(template, get_model_map())

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{server.get_host_and_port()[1]}"
        session = boto3.session.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name="eu-west-1"
        )
        client = lambda service: session.client(service, endpoint_url=endpoint)
        upload_function_zips(client("s3"), template)
        cloudformation = client("cloudformation")
        cloudformation.create_stack(
            StackName=stack_name,
            TemplateBody=json.dumps(template),
            Parameters=[{"ParameterKey": "ArtifactsBucket", "ParameterValue": "wenu-artifacts"}],
            Capabilities=["CAPABILITY_IAM"],
        )
        stack = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
        summaries = cloudformation.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
        created = {r["LogicalResourceId"]: r for r in summaries}
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

        # What the created resources are, read back from the services.
        stream = client("kinesis").describe_stream(StreamName=outputs["StreamName"])["StreamDescription"]
        sqs = client("sqs")
        queues = {}
        for url in sqs.list_queues()["QueueUrls"]:
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
            queues[url.rsplit("/", 1)[1]] = attributes
        dynamodb = client("dynamodb")
        tables = {}
        for name in dynamodb.list_tables()["TableNames"]:
            table = dynamodb.describe_table(TableName=name)["Table"]
            ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            tables[name] = {
                "keys": [k["AttributeName"] + ":" + k["KeyType"] for k in table["KeySchema"]],
                "billing": table.get("BillingModeSummary", {}).get("BillingMode"),
                "ttl": ttl,
            }
        functions = {}
        for function in client("lambda").list_functions()["Functions"]:
            functions[function["FunctionName"]] = {
                "runtime": function["Runtime"],
                "architectures": function.get("Architectures"),
                "tracing": function.get("TracingConfig", {}).get("Mode"),
                "environment": sorted(function.get("Environment", {}).get("Variables", {})),
            }
        mappings = client("lambda").list_event_source_mappings()["EventSourceMappings"]
        bucket = outputs["LakeBucketName"]
        s3 = client("s3")
        encryption = read(lambda: s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"])
        public_access = read(lambda: s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"])
        lifecycle = read(lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"])

        print(
            json.dumps(
                {
                    "status": stack["StackStatus"],
                    "skipped": skipped,
                    "created": {k: [r["ResourceType"], r["ResourceStatus"]] for k, r in created.items()},
                    "outputs": outputs,
                    "stream": {
                        "retention_hours": stream["RetentionPeriodHours"],
                        "shards": len(stream["Shards"]),
                        "encryption": stream.get("EncryptionType"),
                    },
                    "queues": queues,
                    "tables": tables,
                    "functions": functions,
                    "mappings": [
                        {
                            "source": m["EventSourceArn"].rsplit(":", 1)[1],
                            "function": m["FunctionArn"].rsplit(":", 1)[1],
                            "batch_size": m.get("BatchSize"),
                            "response_types": m.get("FunctionResponseTypes"),
                        }
                        for m in mappings
                    ],
                    "bucket": {"encryption": encryption, "public_access": public_access, "lifecycle": lifecycle},
                },
                indent=1,
                default=str,
            )
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
