locals {

  name_prefix     = "srp-${var.environment}"
  bucket_location = coalesce(var.bucket_location, var.region)
  labels          = merge(var.labels, { app = "srp-bundle", environment = var.environment })

  # Deterministic, so submit_task and reconcile_tasks can build callback URLs without a
  # dependency cycle on the function they call back.
  webhook_url = "https://${var.region}-${var.project_id}.cloudfunctions.net/${local.name_prefix}-ingest-webhook"

  # One entry per function: the key is the folder under functions/ and the entry point.
  # `environment` and `secret_environment` mirror srp_bundle.settings (REQUIRED_BY_FUNCTION,
  # SECRET_VARIABLES); tests/terraform checks that they stay in step.
  functions = {
    submit_task = {
      description = "Validates a render request, records it and submits it to SRP once."
      environment = {
        GOOGLE_CLOUD_PROJECT    = var.project_id
        TASKS_COLLECTION        = var.tasks_collection
        EVENTS_TOPIC            = google_pubsub_topic.render_events.name
        SRP_API_URL             = var.srp_api_url
        SRP_TIMEOUT_SECONDS     = tostring(var.task_tuning.srp_timeout_seconds)
        WEBHOOK_URL             = local.webhook_url
        MAX_REQUEST_AGE_SECONDS = tostring(var.task_tuning.max_request_age_seconds)
        # How long to wait for SRP's callback after a POST whose answer was lost.
        AMBIGUOUS_SUBMIT_WAIT_SECONDS = tostring(var.task_tuning.ambiguous_submit_wait_seconds)
        FORWARD_PRODUCER_CALLBACKS    = tostring(var.forward_producer_callbacks)
      }
      secret_environment = ["SRP_API_KEY", "WEBHOOK_SECRET"]
      ingress_settings   = "ALLOW_INTERNAL_ONLY"
      # Delivered by google_pubsub_subscription.submit_task, not Eventarc: see
      # docs/decisions/0002-dead-letter-push-subscription.md.
      event_trigger = null
    }

    ingest_webhook = {
      description = "Authenticates SRP callbacks, appends them to the task's event log and advances its state."
      environment = {
        GOOGLE_CLOUD_PROJECT    = var.project_id
        TASKS_COLLECTION        = var.tasks_collection
        EVENTS_TOPIC            = google_pubsub_topic.render_events.name
        SRP_API_URL             = var.srp_api_url
        SRP_TIMEOUT_SECONDS     = tostring(var.task_tuning.srp_timeout_seconds)
        CONFIRM_TERMINAL_STATUS = tostring(var.task_tuning.confirm_terminal_status)
        # Its own URL: only an echoed callback to it (with our token) proves a task is ours.
        WEBHOOK_URL = local.webhook_url
        # A done request's files are listed from the task's folder, never taken from a body.
        RENDERS_BUCKET = google_storage_bucket.renders.name
      }
      secret_environment = ["SRP_API_KEY", "WEBHOOK_SECRET", "WEBHOOK_SECRET_PREVIOUS"]
      # SRP cannot authenticate to Google, so the callback endpoint is public; the HMAC
      # token in every callback is what keeps strangers out.
      ingress_settings = "ALLOW_ALL"
      event_trigger    = null
    }

    postprocess_render = {
      description = "Makes derivatives and metadata for every file SRP writes to a task's folder (image, video, audio, 3D)."
      environment = {
        GOOGLE_CLOUD_PROJECT  = var.project_id
        TASKS_COLLECTION      = var.tasks_collection
        EVENTS_TOPIC          = google_pubsub_topic.render_events.name
        RENDERS_BUCKET        = google_storage_bucket.renders.name
        DERIVATIVES_BUCKET    = google_storage_bucket.derivatives.name
        DERIVATIVE_SPECS      = var.derivative_specs
        MAX_SOURCE_PIXELS     = tostring(var.task_tuning.max_source_pixels)
        MAX_SOURCE_BYTES      = tostring(var.task_tuning.max_source_bytes)
        MAX_MEDIA_SECONDS     = tostring(var.task_tuning.max_media_seconds)
        MEDIA_TIMEOUT_SECONDS = tostring(var.task_tuning.media_timeout_seconds)
        # MEDIA_TIMEOUT_SECONDS is one file's whole budget: the function refuses to start
        # unless it fits, with a margin, inside the function's own timeout.
        FUNCTION_TIMEOUT_SECONDS = tostring(local.scaling["postprocess_render"].timeout_seconds)
        MEDIA_MEMORY_BYTES       = tostring(var.task_tuning.media_memory_bytes)
        MAX_ANIMATION_PIXELS     = tostring(var.task_tuning.max_animation_pixels)
      }
      secret_environment = []
      ingress_settings   = "ALLOW_INTERNAL_ONLY"
      event_trigger = {
        # GCS triggers must run where the bucket is.
        region       = lower(local.bucket_location)
        event_type   = "google.cloud.storage.object.v1.finalized"
        pubsub_topic = null
        bucket       = google_storage_bucket.renders.name
        retry_policy = "RETRY_POLICY_RETRY"
      }
    }

    reconcile_tasks = {
      description = "Polls SRP for tasks with no news (lost callbacks); re-drives post-processing past its deadline."
      environment = {
        GOOGLE_CLOUD_PROJECT = var.project_id
        TASKS_COLLECTION     = var.tasks_collection
        EVENTS_TOPIC         = google_pubsub_topic.render_events.name
        SRP_API_URL          = var.srp_api_url
        SRP_TIMEOUT_SECONDS  = tostring(var.task_tuning.srp_timeout_seconds)
        WEBHOOK_URL          = local.webhook_url
        STALE_AFTER_SECONDS  = tostring(var.task_tuning.stale_after_seconds)
        RECONCILE_BUDGET     = tostring(var.task_tuning.reconcile_budget)
        # Re-driving a record stuck before submission follows submit_task's rules.
        MAX_REQUEST_AGE_SECONDS       = tostring(var.task_tuning.max_request_age_seconds)
        AMBIGUOUS_SUBMIT_WAIT_SECONDS = tostring(var.task_tuning.ambiguous_submit_wait_seconds)
        FORWARD_PRODUCER_CALLBACKS    = tostring(var.forward_producer_callbacks)
        # and post-processing, re-driven past the deadline, follows postprocess_render's.
        RENDERED_DEADLINE_SECONDS = tostring(var.task_tuning.rendered_deadline_seconds)
        RENDERS_BUCKET            = google_storage_bucket.renders.name
        DERIVATIVES_BUCKET        = google_storage_bucket.derivatives.name
        DERIVATIVE_SPECS          = var.derivative_specs
        MAX_SOURCE_PIXELS         = tostring(var.task_tuning.max_source_pixels)
        MAX_SOURCE_BYTES          = tostring(var.task_tuning.max_source_bytes)
        MAX_MEDIA_SECONDS         = tostring(var.task_tuning.max_media_seconds)
        MEDIA_TIMEOUT_SECONDS     = tostring(var.task_tuning.media_timeout_seconds)
        FUNCTION_TIMEOUT_SECONDS  = tostring(local.scaling["reconcile_tasks"].timeout_seconds)
        MEDIA_MEMORY_BYTES        = tostring(var.task_tuning.media_memory_bytes)
        MAX_ANIMATION_PIXELS      = tostring(var.task_tuning.max_animation_pixels)
      }
      secret_environment = ["SRP_API_KEY", "WEBHOOK_SECRET"]
      ingress_settings   = "ALLOW_INTERNAL_ONLY"
      event_trigger = {
        region       = var.region
        event_type   = "google.cloud.pubsub.topic.v1.messagePublished"
        pubsub_topic = google_pubsub_topic.reconcile.id
        bucket       = null
        # The next scheduled run does the same work, so a failed run is not worth retrying.
        retry_policy = "RETRY_POLICY_DO_NOT_RETRY"
      }
    }

    record_dead_letter = {
      description = "Marks render requests that exhausted their delivery attempts as failed."
      environment = {
        GOOGLE_CLOUD_PROJECT = var.project_id
        TASKS_COLLECTION     = var.tasks_collection
        EVENTS_TOPIC         = google_pubsub_topic.render_events.name
      }
      secret_environment = []
      ingress_settings   = "ALLOW_INTERNAL_ONLY"
      event_trigger = {
        region       = var.region
        event_type   = "google.cloud.pubsub.topic.v1.messagePublished"
        pubsub_topic = google_pubsub_topic.render_requests_dead_letter.id
        bucket       = null
        retry_policy = "RETRY_POLICY_RETRY"
      }
    }
  }

  # WEBHOOK_SECRET_PREVIOUS is mounted only during a rotation: a secret env var whose secret
  # has no version would fail the deployment.
  mounted_secret_variables = concat(
    ["SRP_API_KEY", "WEBHOOK_SECRET"],
    var.accept_previous_webhook_secret ? ["WEBHOOK_SECRET_PREVIOUS"] : [],
  )

  default_scaling = {
    # max_instances x max_concurrency bounds the submissions SRP receives at once.
    submit_task        = { max_instances = 5, min_instances = 0, max_concurrency = 1, cpu = "1", memory = "512Mi", timeout_seconds = 60 }
    ingest_webhook     = { max_instances = 20, min_instances = 0, max_concurrency = 20, cpu = "1", memory = "512Mi", timeout_seconds = 60 }
    postprocess_render = { max_instances = 10, min_instances = 0, max_concurrency = 1, cpu = "1", memory = "2Gi", timeout_seconds = 300 }
    # One run at a time: overlapping runs would poll SRP for the same tasks twice.
    reconcile_tasks    = { max_instances = 1, min_instances = 0, max_concurrency = 1, cpu = "1", memory = "2Gi", timeout_seconds = 540 }
    record_dead_letter = { max_instances = 3, min_instances = 0, max_concurrency = 10, cpu = "1", memory = "512Mi", timeout_seconds = 60 }
  }

  scaling = {
    for name, defaults in local.default_scaling : name => merge(
      defaults,
      { for setting, value in try(var.function_scaling[name], {}) : setting => value if value != null },
    )
  }
}

# The function images, in a repository of our own so the build account may push only here.
resource "google_artifact_registry_repository" "function_images" {
  #checkov:skip=CKV_GCP_84:Google-managed encryption at rest is enough for images of our function code and its public dependencies; CMEK would add a key to run.
  project       = var.project_id
  location      = var.region
  repository_id = "${local.name_prefix}-functions"
  format        = "DOCKER"
  description   = "Images Cloud Build makes from the SRP ${var.environment} function sources."
  labels        = local.labels
}

data "google_project" "main" {
  project_id = var.project_id
}

# Named by content hash: a function whose zip did not change keeps its object, so it is
# not rebuilt or redeployed.
resource "google_storage_bucket_object" "function_source" {
  for_each = local.functions

  bucket       = google_storage_bucket.function_source.name
  name         = "${each.key}/${filesha256("${var.function_source_dir}/${each.key}.zip")}.zip"
  source       = "${var.function_source_dir}/${each.key}.zip"
  content_type = "application/zip"
}

resource "google_cloudfunctions2_function" "main" {
  #checkov:skip=CKV_GCP_124:Only ingest_webhook allows all ingress (SRP calls it from the internet); tests/terraform asserts every other function is ALLOW_INTERNAL_ONLY.
  for_each = local.functions

  project     = var.project_id
  location    = var.region
  name        = "${local.name_prefix}-${replace(each.key, "_", "-")}"
  description = each.value.description
  labels      = local.labels

  build_config {
    runtime           = "python312"
    entry_point       = each.key
    service_account   = google_service_account.function_build.id
    docker_repository = google_artifact_registry_repository.function_images.id

    source {
      storage_source {
        bucket = google_storage_bucket.function_source.name
        object = google_storage_bucket_object.function_source[each.key].name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.function[each.key].email
    ingress_settings                 = each.value.ingress_settings
    all_traffic_on_latest_revision   = true
    available_cpu                    = local.scaling[each.key].cpu
    available_memory                 = local.scaling[each.key].memory
    timeout_seconds                  = local.scaling[each.key].timeout_seconds
    min_instance_count               = local.scaling[each.key].min_instances
    max_instance_count               = local.scaling[each.key].max_instances
    max_instance_request_concurrency = local.scaling[each.key].max_concurrency
    environment_variables            = each.value.environment

    dynamic "secret_environment_variables" {
      for_each = [
        for variable in each.value.secret_environment : variable
        if contains(local.mounted_secret_variables, variable)
      ]
      content {
        key        = secret_environment_variables.value
        project_id = var.project_id
        secret     = google_secret_manager_secret.main[secret_environment_variables.value].secret_id
        # Pinning a number makes a rotation redeploy the function, so no instance keeps the
        # old value; "latest" is only read when an instance starts.
        version = lookup(var.secret_versions, secret_environment_variables.value, "latest")
      }
    }
  }

  dynamic "event_trigger" {
    for_each = each.value.event_trigger == null ? [] : [each.value.event_trigger]
    content {
      trigger_region        = event_trigger.value.region
      event_type            = event_trigger.value.event_type
      pubsub_topic          = event_trigger.value.pubsub_topic
      retry_policy          = event_trigger.value.retry_policy
      service_account_email = google_service_account.eventarc_trigger.email

      dynamic "event_filters" {
        for_each = event_trigger.value.bucket == null ? [] : [event_trigger.value.bucket]
        content {
          attribute = "bucket"
          value     = event_filters.value
        }
      }
    }
  }

  # A deployment fails if its service account cannot read its secrets yet, and Eventarc
  # refuses a GCS trigger until the storage service agent may publish.
  depends_on = [
    google_secret_manager_secret_iam_member.function_access,
    google_project_iam_member.eventarc_event_receiver,
    google_project_iam_member.storage_agent_publisher,
    google_project_iam_member.build_log_writer,
    google_project_iam_member.build_reads_staged_sources,
    google_storage_bucket_iam_member.build_reads_function_source,
    google_artifact_registry_repository_iam_member.build_pushes_images,
  ]
}
