"""The Terraform deployment matches the code: functions, triggers, configuration, IAM, buckets."""

from __future__ import annotations

import re
from typing import Any

import pytest
from terraform_hcl import (
    FUNCTIONS_DIR,
    REPO_ROOT,
    TERRAFORM_DIR,
    TerraformConfig,
    dynamic_block,
    first_block,
    function_folders,
    references,
)

from srp_bundle import settings
from srp_bundle.task_state import TaskRecord

FUNCTION_RESOURCE = ("google_cloudfunctions2_function", "main")
FUNCTION_ADDRESS = "google_cloudfunctions2_function.main"

# The design's trigger of each function; a new function needs its row here.
EXPECTED_TRIGGERS: dict[str, dict[str, str | None]] = {
    "submit_task": {"kind": "push_subscription", "topic": "google_pubsub_topic.render_requests"},
    "ingest_webhook": {"kind": "public_http", "topic": None},
    "postprocess_render": {
        "kind": "eventarc",
        "event_type": "google.cloud.storage.object.v1.finalized",
        "bucket": "google_storage_bucket.renders",
    },
    "reconcile_tasks": {
        "kind": "eventarc",
        "event_type": "google.cloud.pubsub.topic.v1.messagePublished",
        "topic": "google_pubsub_topic.reconcile",
    },
    "record_dead_letter": {
        "kind": "eventarc",
        "event_type": "google.cloud.pubsub.topic.v1.messagePublished",
        "topic": "google_pubsub_topic.render_requests_dead_letter",
    },
}

# Project-level grants that have no narrower scope, and who may hold them (see iam.tf).
ALLOWED_PROJECT_ROLES = {
    "function_firestore": "roles/datastore.user",
    "eventarc_event_receiver": "roles/eventarc.eventReceiver",
    "storage_agent_publisher": "roles/pubsub.publisher",
    "build_log_writer": "roles/logging.logWriter",
    "build_reads_staged_sources": "roles/storage.objectViewer",
}

IAM_RESOURCE_TYPES = re.compile(r"^google_.*_iam_(member|binding|policy)$")


def expected_functions() -> set[str]:
    """Every function the code says exists: the settings table and the function folders."""
    return set(settings.REQUIRED_BY_FUNCTION) | function_folders()


def deployed_functions(bundle_module: TerraformConfig) -> dict[str, dict[str, Any]]:
    """local.functions of the module: one entry per deployed function."""
    functions: dict[str, dict[str, Any]] = bundle_module.locals["functions"]
    return functions


def known_variables() -> set[str]:
    """Environment variable names the settings module defines."""
    return {
        value
        for name, value in vars(settings).items()
        if name.isupper() and isinstance(value, str) and value == name
    }


def test_every_function_is_deployed_with_its_entry_point_and_runtime(
    bundle_module: TerraformConfig,
) -> None:
    functions = deployed_functions(bundle_module)
    assert set(functions) == expected_functions()

    deployment = bundle_module.resource(*FUNCTION_RESOURCE)
    assert deployment["for_each"] == "${local.functions}"
    build = first_block(deployment, "build_config")
    assert build["runtime"] == "python312"
    # The map key is the entry point, and the keys are exactly the function names.
    assert build["entry_point"] == "${each.key}"
    storage_source = first_block(first_block(build, "source"), "storage_source")
    assert references(storage_source["object"], "google_storage_bucket_object.function_source")


def test_function_folders_define_their_entry_point() -> None:
    for name in function_folders():
        source = (FUNCTIONS_DIR / name / "main.py").read_text()
        assert re.search(rf"^def {name}\(", source, re.MULTILINE), f"functions/{name}/main.py"


def test_function_zips_are_named_by_content_hash(bundle_module: TerraformConfig) -> None:
    source_object = bundle_module.resource("google_storage_bucket_object", "function_source")
    assert source_object["for_each"] == "${local.functions}"
    assert "${each.key}.zip" in source_object["source"]
    assert re.search(r"\$\{filesha256\(.*\$\{each\.key\}\.zip", source_object["name"])


@pytest.mark.parametrize("function_name", sorted(expected_functions()))
def test_function_has_the_designed_trigger(
    bundle_module: TerraformConfig, function_name: str
) -> None:
    assert function_name in EXPECTED_TRIGGERS, f"add the trigger of {function_name} to this test"
    expected = EXPECTED_TRIGGERS[function_name]
    function = deployed_functions(bundle_module)[function_name]
    trigger = function["event_trigger"]
    own_function = f'{FUNCTION_ADDRESS}["{function_name}"]'

    if expected["kind"] == "eventarc":
        assert trigger is not None
        assert trigger["event_type"] == expected["event_type"]
        assert function["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
        if "topic" in expected:
            assert references(trigger["pubsub_topic"], str(expected["topic"]))
        if "bucket" in expected:
            assert references(trigger["bucket"], str(expected["bucket"]))
            # GCS triggers must live in the bucket's location.
            assert "local.bucket_location" in trigger["region"]
    elif expected["kind"] == "push_subscription":
        assert trigger is None
        assert function["ingress_settings"] == "ALLOW_INTERNAL_ONLY"
        pushing = [
            subscription
            for subscription in bundle_module.resources_of_type(
                "google_pubsub_subscription"
            ).values()
            if references(
                first_block(subscription, "push_config").get("push_endpoint"), own_function
            )
        ]
        assert len(pushing) == 1, f"one push subscription must deliver to {function_name}"
        subscription = pushing[0]
        assert references(subscription["topic"], str(expected["topic"]))
        assert first_block(first_block(subscription, "push_config"), "oidc_token")
        assert first_block(subscription, "retry_policy")
        dead_letter = first_block(subscription, "dead_letter_policy")
        assert references(
            dead_letter["dead_letter_topic"], "google_pubsub_topic.render_requests_dead_letter"
        )
        assert dead_letter["max_delivery_attempts"]
    elif expected["kind"] == "public_http":
        assert trigger is None
        assert function["ingress_settings"] == "ALLOW_ALL"
        public = [
            binding
            for binding in iam_resources(bundle_module).values()
            if binding.get("member") == "allUsers"
        ]
        assert len(public) == 1 and references(public[0]["name"], own_function)
        assert public[0]["role"] == "roles/run.invoker"
    else:
        pytest.fail(f"unknown trigger kind {expected['kind']}")


def test_dead_letter_topic_drives_record_dead_letter_and_agent_may_use_it(
    bundle_module: TerraformConfig,
) -> None:
    publishers = bundle_module.resource("google_pubsub_topic_iam_binding", "dead_letter_publishers")
    assert references(publishers["topic"], "google_pubsub_topic.render_requests_dead_letter")
    assert publishers["role"] == "roles/pubsub.publisher"
    assert publishers["members"] == ["${local.pubsub_service_agent}"]
    subscriber = bundle_module.resource(
        "google_pubsub_subscription_iam_member", "pubsub_agent_submit_subscriber"
    )
    assert references(subscriber["subscription"], "google_pubsub_subscription.submit_task")
    assert subscriber["role"] == "roles/pubsub.subscriber"
    assert "gcp-sa-pubsub" in bundle_module.locals["pubsub_service_agent"]


# Who may publish where through topic IAM (issue 21, item 8): producers on render-requests
# only; on the topics record_dead_letter and the events' subscribers trust, only the Pub/Sub
# service agent (dead letters) and our functions (events), authoritatively.
TOPIC_PUBLISHERS = {
    "google_pubsub_topic.render_requests": ("google_pubsub_topic_iam_member", "${each.key}"),
    "google_pubsub_topic.render_events": (
        "google_pubsub_topic_iam_binding",
        "${[for function_name in keys(local.functions) : "
        "google_service_account.function[function_name].member]}",
    ),
    "google_pubsub_topic.render_requests_dead_letter": (
        "google_pubsub_topic_iam_binding",
        ["${local.pubsub_service_agent}"],
    ),
}


def topic_publisher_grants(config: TerraformConfig) -> dict[str, list[tuple[str, Any]]]:
    """Topic address -> (resource type, member or members) of every topic publisher grant."""
    grants: dict[str, list[tuple[str, Any]]] = {}
    for (resource_type, _), body in iam_resources(config).items():
        if resource_type.startswith("google_pubsub_topic_iam_") and body["role"] in (
            "roles/pubsub.publisher",
            "roles/pubsub.editor",
        ):
            topic = re.fullmatch(r"\$\{(google_pubsub_topic\.\w+)\.(?:name|id)\}", body["topic"])
            assert topic, body["topic"]
            grants.setdefault(topic.group(1), []).append(
                (resource_type, body.get("member", body.get("members")))
            )
    return grants


def test_each_topic_has_exactly_its_designed_publishers(bundle_module: TerraformConfig) -> None:
    grants = topic_publisher_grants(bundle_module)

    assert grants == {topic: [grant] for topic, grant in TOPIC_PUBLISHERS.items()}
    producers = bundle_module.resource(
        "google_pubsub_topic_iam_member", "producer_publishes_requests"
    )
    assert producers["for_each"] == "${toset(var.producer_members)}"
    # Our functions are the only event publishers: the map keys are the function names.
    assert set(bundle_module.locals["functions"]) == expected_functions()


def test_producer_members_is_typed_described_and_validated(
    bundle_module: TerraformConfig, environments: dict[str, TerraformConfig]
) -> None:
    variable = bundle_module.variables["producer_members"]
    assert variable["type"] == "${list(string)}" and variable["default"] == []
    assert "render-requests topic and nothing else" in variable["description"]
    (validation,) = variable["validation"]
    found = re.search(r'regex\("(.*)", member\)', validation["condition"])
    assert found, validation["condition"]
    pattern = re.compile(found.group(1).replace("\\\\", "\\"))
    for member in (
        "serviceAccount:minter@studio.iam.gserviceaccount.com",
        "user:ops@studio.example",
        "group:producers@studio.example",
        "domain:studio.example",
        "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/s",
    ):
        assert pattern.fullmatch(member), member
    for member in (
        "allUsers",
        "allAuthenticatedUsers",
        "serviceAccount:minter",
        "minter@studio.iam.gserviceaccount.com",
        "serviceAccount:a@b.com serviceAccount:c@d.com",
        "projectEditor:my-project",
    ):
        assert not pattern.fullmatch(member), member
    for name, environment in environments.items():
        assert environment.modules["srp_bundle"]["producer_members"] == "${var.producer_members}"
        assert environment.variables["producer_members"]["type"] == "${list(string)}", name


def test_cloud_scheduler_feeds_the_reconcile_topic(bundle_module: TerraformConfig) -> None:
    (job,) = bundle_module.resources_of_type("google_cloud_scheduler_job").values()
    assert references(
        first_block(job, "pubsub_target")["topic_name"], "google_pubsub_topic.reconcile"
    )


def test_private_functions_are_invoked_only_by_their_delivery_identity(
    bundle_module: TerraformConfig,
) -> None:
    invokers = {
        name: binding
        for name, binding in bundle_module.resources_of_type(
            "google_cloud_run_v2_service_iam_member"
        ).items()
    }
    assert references(invokers["pubsub_push_invoker"]["name"], f'{FUNCTION_ADDRESS}["submit_task"]')
    assert references(
        invokers["pubsub_push_invoker"]["member"], "google_service_account.pubsub_push"
    )
    eventarc = invokers["eventarc_invoker"]
    assert eventarc["for_each"] == "${local.functions_with_event_trigger}"
    assert references(eventarc["member"], "google_service_account.eventarc_trigger")
    deployment = bundle_module.resource(*FUNCTION_RESOURCE)
    trigger = dynamic_block(deployment, "event_trigger")
    assert trigger is not None
    assert references(
        first_block(trigger, "content")["service_account_email"],
        "google_service_account.eventarc_trigger",
    )


def test_every_required_variable_is_set_on_every_function_that_reads_it(
    bundle_module: TerraformConfig,
) -> None:
    for name, function in deployed_functions(bundle_module).items():
        provided = set(function["environment"]) | set(function["secret_environment"])
        required = set(settings.REQUIRED_BY_FUNCTION.get(name, ()))
        assert required <= provided, f"{name} lacks {sorted(required - provided)}"
        unknown = provided - known_variables()
        assert not unknown, f"{name} sets variables the code does not read: {sorted(unknown)}"


def test_every_function_that_checks_producer_callbacks_gets_the_forwarding_switch(
    bundle_module: TerraformConfig, environments: dict[str, TerraformConfig]
) -> None:
    variable = bundle_module.variables["forward_producer_callbacks"]
    assert variable["type"] == "bool"
    assert variable["default"] is settings.Settings.forward_producer_callbacks is True
    functions = deployed_functions(bundle_module)
    # submit_task checks new requests, reconcile_tasks the ones it re-drives.
    for name in ("submit_task", "reconcile_tasks"):
        value = functions[name]["environment"][settings.FORWARD_PRODUCER_CALLBACKS]
        assert value == "${tostring(var.forward_producer_callbacks)}", name
    for name, environment in environments.items():
        call = environment.modules["srp_bundle"]
        assert call["forward_producer_callbacks"] == "${var.forward_producer_callbacks}", name
        assert environment.variables["forward_producer_callbacks"]["default"] is True, name


def test_secrets_arrive_only_as_secret_environment_variables(
    bundle_module: TerraformConfig,
) -> None:
    secret_ids = bundle_module.locals["secret_ids"]
    assert set(secret_ids) == set(settings.SECRET_VARIABLES)
    for name, function in deployed_functions(bundle_module).items():
        plain = set(function["environment"]) & set(settings.SECRET_VARIABLES)
        assert not plain, f"{name} gets secrets as plain environment variables: {sorted(plain)}"
        assert set(function["secret_environment"]) <= set(settings.SECRET_VARIABLES)

    deployment = bundle_module.resource(*FUNCTION_RESOURCE)
    service = first_block(deployment, "service_config")
    secret_block = dynamic_block(service, "secret_environment_variables")
    assert secret_block is not None
    content = first_block(secret_block, "content")
    assert references(content["secret"], "google_secret_manager_secret.main")
    assert "each.value.secret_environment" in secret_block["for_each"]


def test_terraform_never_holds_a_secret_value() -> None:
    for path in TERRAFORM_DIR.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text()
        assert "google_secret_manager_secret_version" not in text, path
        assert "secret_data" not in text, path
        if path.name.endswith(".tfvars.example"):
            for variable in settings.SECRET_VARIABLES:
                assert variable not in text, f"{path} mentions {variable}"


def test_each_function_may_read_exactly_the_secrets_it_mounts(
    bundle_module: TerraformConfig,
) -> None:
    access = bundle_module.resource("google_secret_manager_secret_iam_member", "function_access")
    assert access["for_each"] == "${local.function_secret_access}"
    assert access["role"] == "roles/secretmanager.secretAccessor"
    assert references(access["secret_id"], "google_secret_manager_secret.main")
    assert "each.value.function" in access["member"]


def iam_resources(config: TerraformConfig) -> dict[tuple[str, str], dict[str, Any]]:
    """Every IAM grant of a configuration, by address."""
    return {
        address: body
        for address, body in config.resources.items()
        if IAM_RESOURCE_TYPES.match(address[0])
    }


# Authoritative bindings only where the module owns the resource and must say who holds the
# role: the publishers of the events and dead-letter topics.
AUTHORITATIVE_BINDINGS = {
    ("google_pubsub_topic_iam_binding", "event_publishers"),
    ("google_pubsub_topic_iam_binding", "dead_letter_publishers"),
}


def test_no_broad_or_authoritative_roles(bundle_module: TerraformConfig) -> None:
    for (resource_type, name), body in iam_resources(bundle_module).items():
        assert resource_type.endswith("_iam_member") or (
            (resource_type, name) in AUTHORITATIVE_BINDINGS
            and body["role"] == "roles/pubsub.publisher"
        ), f"{resource_type}.{name}: use additive members, not authoritative bindings or policies"
        role = body["role"]
        assert role not in {"roles/owner", "roles/editor", "roles/viewer"}, name
        assert "admin" not in role.lower(), f"{resource_type}.{name} grants {role}"


def test_project_level_grants_are_the_unavoidable_ones(bundle_module: TerraformConfig) -> None:
    project_grants = bundle_module.resources_of_type("google_project_iam_member")
    assert {name: body["role"] for name, body in project_grants.items()} == ALLOWED_PROJECT_ROLES
    # Firestore access is narrowed to our database by an IAM condition.
    condition = first_block(project_grants["function_firestore"], "condition")
    assert "google_firestore_database.main.name" in condition["expression"]
    # Only the Cloud Storage service agent may publish project-wide (for Eventarc's topic).
    assert (
        "google_storage_project_service_account"
        in project_grants["storage_agent_publisher"]["member"]
    )
    # The build account reads project-wide only the bucket Cloud Functions stages sources in.
    staged = first_block(project_grants["build_reads_staged_sources"], "condition")
    bucket = "${local.staged_sources_bucket}"
    assert staged["expression"] == (
        f'resource.name == "{bucket}" || resource.name.startsWith("{bucket}/")'
    )
    assert bundle_module.locals["staged_sources_bucket"].startswith(
        "projects/_/buckets/gcf-v2-sources-${data.google_project.main.number}-"
    )


def test_functions_build_as_a_dedicated_account_granted_only_build_needs(
    bundle_module: TerraformConfig,
) -> None:
    build = first_block(bundle_module.resource(*FUNCTION_RESOURCE), "build_config")
    assert build["service_account"] == "${google_service_account.function_build.id}"
    assert references(
        build["docker_repository"], "google_artifact_registry_repository.function_images"
    )
    builder = "${google_service_account.function_build.member}"
    grants = {
        (resource_type, body["role"])
        for (resource_type, _), body in iam_resources(bundle_module).items()
        if body.get("member") == builder
    }
    assert grants == {
        ("google_project_iam_member", "roles/logging.logWriter"),
        ("google_project_iam_member", "roles/storage.objectViewer"),
        ("google_storage_bucket_iam_member", "roles/storage.objectViewer"),
        ("google_artifact_registry_repository_iam_member", "roles/artifactregistry.writer"),
    }
    source_read = bundle_module.resource(
        "google_storage_bucket_iam_member", "build_reads_function_source"
    )
    assert references(source_read["bucket"], "google_storage_bucket.function_source")


def test_data_access_audit_logs_cover_storage_and_firestore_when_asked(
    bundle_module: TerraformConfig, environments: dict[str, TerraformConfig]
) -> None:
    audit = bundle_module.resource("google_project_iam_audit_config", "data_access")
    # datastore.googleapis.com is the name that configures Firestore's audit logs.
    assert audit["for_each"] == (
        '${var.manage_data_access_audit_logs ? toset(["storage.googleapis.com", '
        '"datastore.googleapis.com"]) : toset([])}'
    )
    assert {config["log_type"] for config in audit["audit_log_config"]} == {
        "DATA_READ",
        "DATA_WRITE",
    }
    # Authoritative per service, so the module leaves a project's audit config alone unless
    # asked; the environments, each meant to own its project, ask.
    variable = bundle_module.variables["manage_data_access_audit_logs"]
    assert variable["type"] == "bool" and variable["default"] is False
    assert "exempted members" in variable["description"]
    for name, environment in environments.items():
        call = environment.modules["srp_bundle"]
        assert call["manage_data_access_audit_logs"] == "${var.manage_data_access_audit_logs}"
        assert environment.variables["manage_data_access_audit_logs"]["default"] is True, name


def test_firestore_rules_deny_every_client(bundle_module: TerraformConfig) -> None:
    ruleset = bundle_module.resource("google_firebaserules_ruleset", "firestore_deny_clients")
    rules = first_block(first_block(ruleset, "source"), "files")["content"]
    statements = re.findall(r"allow [^;]*;", rules)
    assert statements == ["allow read, write: if false;"]
    assert "match /{document=**}" in rules
    release = bundle_module.resource("google_firebaserules_release", "firestore")
    assert release["name"] == "cloud.firestore"
    ruleset_address = "google_firebaserules_ruleset.firestore_deny_clients"
    assert references(release["ruleset_name"], ruleset_address)


def test_bucket_grants_are_bucket_scoped_and_srp_only_creates_renders(
    bundle_module: TerraformConfig,
) -> None:
    grants = bundle_module.resources_of_type("google_storage_bucket_iam_member")
    srp = [grant for grant in grants.values() if grant["member"] == "${var.srp_writer_member}"]
    assert len(srp) == 1
    assert srp[0]["role"] == "roles/storage.objectCreator"
    assert references(srp[0]["bucket"], "google_storage_bucket.renders")
    for grant in grants.values():
        assert grant["bucket"].startswith("${google_storage_bucket.")


def test_one_service_account_per_function(bundle_module: TerraformConfig) -> None:
    accounts = bundle_module.resource("google_service_account", "function")
    assert accounts["for_each"] == "${local.functions}"
    service = first_block(bundle_module.resource(*FUNCTION_RESOURCE), "service_config")
    assert service["service_account_email"] == "${google_service_account.function[each.key].email}"


def test_buckets_enforce_uniform_access_and_public_access_prevention(
    bundle_module: TerraformConfig,
) -> None:
    buckets = bundle_module.resources_of_type("google_storage_bucket")
    assert {"renders", "derivatives", "function_source"} <= set(buckets)
    for name, bucket in buckets.items():
        assert bucket["uniform_bucket_level_access"] is True, name
        assert bucket["public_access_prevention"] == "enforced", name
        assert bucket.get("lifecycle_rule"), f"{name} has no lifecycle rule"


def test_derivatives_never_go_to_the_renders_bucket(bundle_module: TerraformConfig) -> None:
    environment = deployed_functions(bundle_module)["postprocess_render"]["environment"]
    assert references(environment["RENDERS_BUCKET"], "google_storage_bucket.renders")
    assert references(environment["DERIVATIVES_BUCKET"], "google_storage_bucket.derivatives")


def test_scaling_is_a_variable_for_every_function(bundle_module: TerraformConfig) -> None:
    defaults = bundle_module.locals["default_scaling"]
    assert set(defaults) == expected_functions()
    for name, scaling in defaults.items():
        assert {"max_instances", "max_concurrency"} <= set(scaling), name
    validation = bundle_module.variables["function_scaling"]["validation"][0]["condition"]
    for name in expected_functions():
        assert f'"{name}"' in validation, f"function_scaling does not accept {name}"
    service = first_block(bundle_module.resource(*FUNCTION_RESOURCE), "service_config")
    assert service["max_instance_count"] == "${local.scaling[each.key].max_instances}"
    assert (
        service["max_instance_request_concurrency"] == "${local.scaling[each.key].max_concurrency}"
    )


def test_firestore_indexes_and_no_ttl_policy_nothing_writes(
    bundle_module: TerraformConfig,
) -> None:
    indexes = bundle_module.resources_of_type("google_firestore_index")
    fields = {
        name: [(field["field_path"], field["order"]) for field in index["fields"]]
        for name, index in indexes.items()
    }
    assert fields == {
        "tasks_by_state_and_update": [("state", "ASCENDING"), ("updated_at", "ASCENDING")],
        "tasks_by_batch_and_state": [
            ("batch_id", "ASCENDING"),
            ("state", "ASCENDING"),
            ("request_id", "ASCENDING"),
        ],
        "tasks_by_collection_and_state": [
            ("collection_id", "ASCENDING"),
            ("state", "ASCENDING"),
            ("request_id", "ASCENDING"),
        ],
    }
    for index in indexes.values():
        assert index["collection"] == "${var.tasks_collection}"
        assert index["query_scope"] == "COLLECTION"
    assert (
        bundle_module.variables["tasks_collection"]["default"] == settings.DEFAULT_TASKS_COLLECTION
    )
    # A TTL policy keys on a field the code writes, or there is none (issue 14, hole 10).
    fields = bundle_module.resources_of_type("google_firestore_field").values()
    assert not [field for field in fields if "ttl_config" in field]


def test_input_data_text_has_no_single_field_index(bundle_module: TerraformConfig) -> None:
    exemption = bundle_module.resource("google_firestore_field", "input_data_unindexed")
    assert exemption["collection"] == "${var.tasks_collection}"
    assert exemption["field"] == "input_data_json"
    assert "input_data_json" in TaskRecord.__dataclass_fields__
    assert exemption["index_config"] in ([{}], {}, [])  # empty: no index at all


def test_alerts_reach_the_notification_channels(bundle_module: TerraformConfig) -> None:
    policies = bundle_module.resources_of_type("google_monitoring_alert_policy")
    assert set(policies) == {
        "dead_letters",
        "function_error_rate",
        "oldest_unacked_message",
        "webhook_unauthorized_burst",
        "callback_disagrees_with_srp",
    }
    for name, policy in policies.items():
        assert policy["notification_channels"] == "${var.notification_channels}", name


def test_log_based_alerts_count_what_the_webhook_logs(bundle_module: TerraformConfig) -> None:
    metrics = bundle_module.resources_of_type("google_logging_metric")
    assert 'main["ingest_webhook"].name' in bundle_module.locals["webhook_logs"]
    assert "httpRequest.status=401" in metrics["webhook_unauthorized"]["filter"]
    # The disagreement metric keys on the logger and the start of the line callbacks.py
    # writes: this fails when that message changes and the filter does not.
    disagreement = metrics["callback_disagrees_with_srp"]["filter"]
    assert 'jsonPayload.logger="srp_bundle.callbacks"' in disagreement
    prefix = re.search(r'message=~"\^(.*?) \.\* but SRP says "', disagreement)
    assert prefix is not None, disagreement
    callbacks_source = (REPO_ROOT / "shared" / "srp_bundle" / "callbacks.py").read_text()
    assert f'"{prefix.group(1)} %s but SRP says %s' in callbacks_source
    policies = bundle_module.resources_of_type("google_monitoring_alert_policy")
    for policy, metric in [
        ("webhook_unauthorized_burst", "webhook_unauthorized"),
        ("callback_disagrees_with_srp", "callback_disagrees_with_srp"),
    ]:
        condition = first_block(first_block(policies[policy], "conditions"), "condition_threshold")
        assert f"google_logging_metric.{metric}.name" in condition["filter"], policy


def test_provider_versions_are_pinned_to_the_validated_ones(
    bundle_module: TerraformConfig, environments: dict[str, TerraformConfig]
) -> None:
    from tf_schema_provider import VALIDATED_PROVIDER_VERSIONS

    def google_constraint(config: TerraformConfig) -> str:
        (constraint,) = [
            providers["google"]["version"]
            for block in config.terraform_blocks
            for providers in block.get("required_providers", [])
        ]
        return str(constraint)

    newest, oldest = max(VALIDATED_PROVIDER_VERSIONS), min(VALIDATED_PROVIDER_VERSIONS)
    for name, environment in environments.items():
        assert google_constraint(environment) == newest, name
    assert google_constraint(bundle_module) == f">= {oldest}, <= {newest}"


def test_outputs_name_the_webhook_topics_and_buckets(bundle_module: TerraformConfig) -> None:
    assert {
        "topic_publishers",
        "webhook_url",
        "render_requests_topic",
        "dead_letter_topic",
        "render_events_topic",
        "renders_bucket",
        "derivatives_bucket",
    } <= set(bundle_module.outputs)


def test_every_variable_is_typed_and_described(
    bundle_module: TerraformConfig, environments: dict[str, TerraformConfig]
) -> None:
    for config in [bundle_module, *environments.values()]:
        for name, variable in config.variables.items():
            assert variable.get("type"), f"{config.folder.name}: variable {name} has no type"
            assert variable.get("description"), (
                f"{config.folder.name}: variable {name} has no description"
            )


def test_environments_call_the_same_module_with_their_own_state(
    bundle_module: TerraformConfig, environments: dict[str, TerraformConfig]
) -> None:
    assert {"dev", "prod"} <= set(environments)
    required_inputs = {
        name for name, variable in bundle_module.variables.items() if "default" not in variable
    }
    prefixes = set()
    for name, environment in environments.items():
        assert list(environment.modules) == ["srp_bundle"], f"{name} must make one module call"
        call = environment.modules["srp_bundle"]
        assert call["source"] == "../../modules/srp_bundle"
        assert call["environment"] == name, "the environment is written literally"
        assert required_inputs <= set(call), f"{name} misses {sorted(required_inputs - set(call))}"
        unknown = set(call) - set(bundle_module.variables) - {"source"}
        assert not unknown, f"{name} passes unknown inputs {sorted(unknown)}"
        (backend,) = [
            block["backend"][0] for block in environment.terraform_blocks if "backend" in block
        ]
        prefix = backend["gcs"]["prefix"]
        assert prefix.endswith(f"/{name}")
        prefixes.add(prefix)
        assert (environment.folder / "terraform.tfvars.example").is_file()
    assert len(prefixes) == len(environments), "each environment needs its own state prefix"


def test_every_checkov_skip_says_why() -> None:
    skip = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")
    for path in TERRAFORM_DIR.rglob("*.tf"):
        for line in path.read_text().splitlines():
            match = skip.search(line)
            if match:
                assert (match.group(2) or "").strip(), (
                    f"{path}: skip of {match.group(1)} has no reason"
                )
