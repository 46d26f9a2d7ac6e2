resource "google_pubsub_topic" "render_requests" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest is enough for render requests; CMEK would add a key to run and nothing the data needs.
  project = var.project_id
  name    = "${local.name_prefix}-render-requests"
  labels  = local.labels
}

resource "google_pubsub_topic" "render_requests_dead_letter" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest is enough for dead-lettered render requests.
  project = var.project_id
  name    = "${local.name_prefix}-render-requests-dead-letter"
  labels  = local.labels
  # Kept on the topic so dead letters can be replayed after record_dead_letter acknowledged them.
  message_retention_duration = "${var.retention.dead_letter_message_hours * 3600}s"
}

resource "google_pubsub_topic" "render_events" {
  #checkov:skip=CKV_GCP_83:Google-managed encryption at rest is enough for task state events.
  project = var.project_id
  name    = "${local.name_prefix}-render-events"
  labels  = local.labels
}

resource "google_pubsub_topic" "reconcile" {
  #checkov:skip=CKV_GCP_83:The reconcile topic carries only scheduler ticks ({"source": "cloud-scheduler"}), nothing a customer-managed key would protect.
  project = var.project_id
  name    = "${local.name_prefix}-reconcile"
  labels  = local.labels
}

# Our own push subscription instead of an Eventarc trigger, because only a subscription we
# own can carry a dead-letter policy (docs/decisions/0002-dead-letter-push-subscription.md).
# The functions framework turns the push envelope into the same Pub/Sub CloudEvent Eventarc sends.
resource "google_pubsub_subscription" "submit_task" {
  project = var.project_id
  name    = "${local.name_prefix}-submit-task"
  topic   = google_pubsub_topic.render_requests.id
  labels  = local.labels

  # Pub/Sub waits this long for the function's answer before it redelivers.
  ack_deadline_seconds       = local.scaling["submit_task"].timeout_seconds
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }

  push_config {
    push_endpoint = google_cloudfunctions2_function.main["submit_task"].service_config[0].uri

    oidc_token {
      service_account_email = google_service_account.pubsub_push.email
      audience              = google_cloudfunctions2_function.main["submit_task"].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = "${var.submit_delivery.minimum_backoff_seconds}s"
    maximum_backoff = "${var.submit_delivery.maximum_backoff_seconds}s"
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.render_requests_dead_letter.id
    max_delivery_attempts = var.submit_delivery.max_delivery_attempts
  }

  depends_on = [google_cloud_run_v2_service_iam_member.pubsub_push_invoker]
}

resource "google_cloud_scheduler_job" "reconcile" {
  project     = var.project_id
  region      = var.region
  name        = "${local.name_prefix}-reconcile-tasks"
  description = "Wakes reconcile_tasks to poll SRP for tasks with no news."
  schedule    = var.reconcile_schedule
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = google_pubsub_topic.reconcile.id
    data       = base64encode(jsonencode({ source = "cloud-scheduler" }))
  }
}
