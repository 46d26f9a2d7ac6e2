locals {
  # Eventarc names a trigger's subscription eventarc-<region>-<function name>-<suffix>-sub-<n>;
  # every subscription of the bundle therefore contains the name prefix.
  bundle_subscriptions      = "monitoring.regex.full_match(\".*${local.name_prefix}-.*\")"
  dead_letter_subscriptions = "monitoring.regex.full_match(\".*${google_cloudfunctions2_function.main["record_dead_letter"].name}-.*\")"

  # A 2nd gen function runs as the Cloud Run service of the same name.
  webhook_logs = "resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"${google_cloudfunctions2_function.main["ingest_webhook"].name}\""
}

# Data-access audit logs (reads and writes of objects and documents) for Cloud Storage and
# Firestore: who touched which render or task record. datastore.googleapis.com configures
# Firestore's logs too. Authoritative per service: it replaces any other audit config the
# project has for these two services (exempted members included), hence opt-in.
resource "google_project_iam_audit_config" "data_access" {
  for_each = var.manage_data_access_audit_logs ? toset(["storage.googleapis.com", "datastore.googleapis.com"]) : toset([])

  project = var.project_id
  service = each.key

  audit_log_config {
    log_type = "DATA_READ"
  }

  audit_log_config {
    log_type = "DATA_WRITE"
  }
}

# Platform request logs of ingest_webhook answered 401: a forged or stale token.
resource "google_logging_metric" "webhook_unauthorized" {
  project     = var.project_id
  name        = "${local.name_prefix}-webhook-unauthorized"
  description = "Callbacks ingest_webhook refused with 401 (missing or wrong token)."
  filter      = "${local.webhook_logs} AND log_name=\"projects/${var.project_id}/logs/run.googleapis.com%2Frequests\" AND httpRequest.status=401"

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

# srp_bundle.callbacks logs this line when SRP's confirmation contradicts a callback's status
# (it then records SRP's status): a callback that lies is forged, replayed or an SRP bug.
resource "google_logging_metric" "callback_disagrees_with_srp" {
  project     = var.project_id
  name        = "${local.name_prefix}-callback-disagrees-with-srp"
  description = "Callbacks whose status SRP's own answer contradicted."
  filter      = "${local.webhook_logs} AND jsonPayload.logger=\"srp_bundle.callbacks\" AND jsonPayload.message=~\"^callback said .* but SRP says \""

  metric_descriptor {
    metric_kind = "DELTA"
    value_type  = "INT64"
    unit        = "1"
  }
}

resource "google_monitoring_alert_policy" "webhook_unauthorized_burst" {
  project               = var.project_id
  display_name          = "SRP ${var.environment}: burst of refused callbacks (401)"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "More than ${var.alerting.unauthorized_callbacks_per_5m} callbacks refused in 5 minutes"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.webhook_unauthorized.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alerting.unauthorized_callbacks_per_5m
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "ingest_webhook (${var.environment}) refused many callbacks for a missing or wrong token: someone is probing the public URL, or SRP sends tokens made with a secret the function no longer accepts (a rotation that dropped WEBHOOK_SECRET_PREVIOUS too early, see docs/deploy.md)."
  }
}

resource "google_monitoring_alert_policy" "callback_disagrees_with_srp" {
  project               = var.project_id
  display_name          = "SRP ${var.environment}: callback contradicted by SRP"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "A callback's status disagreed with SRP's confirmation"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND metric.type = \"logging.googleapis.com/user/${google_logging_metric.callback_disagrees_with_srp.name}\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_SUM"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A callback to ingest_webhook (${var.environment}) reported a terminal status SRP's own API contradicted; the task record holds SRP's status. The log line (callback said ... but SRP says ...) names the task_id. Repeated disagreements mean a forged or replayed callback carrying a valid token (a leaked webhook secret: rotate it) or an SRP bug."
  }
}

resource "google_monitoring_alert_policy" "dead_letters" {
  project               = var.project_id
  display_name          = "SRP ${var.environment}: render requests dead-lettered"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "A render request exhausted its delivery attempts"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = \"${google_pubsub_subscription.submit_task.name}\" AND metric.type = \"pubsub.googleapis.com/subscription/dead_letter_message_count\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_SUM"
      }
    }
  }

  conditions {
    display_name = "Dead letters are not being recorded (backlog)"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = ${local.dead_letter_subscriptions} AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alerting.dead_letter_backlog_age_seconds
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Render requests reached ${google_pubsub_topic.render_requests_dead_letter.name}: submit_task failed on every delivery attempt. record_dead_letter marks them failed with the reason; if its backlog grows, its logs say why. Dead letters stay on the topic for replay."
  }
}

resource "google_monitoring_alert_policy" "function_error_rate" {
  project               = var.project_id
  display_name          = "SRP ${var.environment}: function error rate"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "Share of 5xx responses per function above ${var.alerting.error_rate_threshold}"
    condition_prometheus_query_language {
      # A raised exception is a 5xx, which is also how functions ask for a retry: a short
      # burst is expected, a sustained share is not.
      query               = <<-EOT
        sum by (service_name) (rate(run_googleapis_com:request_count{monitored_resource="cloud_run_revision", service_name=~"${local.name_prefix}-.*", response_code_class="5xx"}[5m]))
        /
        sum by (service_name) (rate(run_googleapis_com:request_count{monitored_resource="cloud_run_revision", service_name=~"${local.name_prefix}-.*"}[5m]))
        > ${var.alerting.error_rate_threshold}
      EOT
      duration            = "300s"
      evaluation_interval = "60s"
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "A function of the SRP bundle (${var.environment}) answers with errors. Its logs name the failure; submit_task errors usually mean SRP is down or throttling."
  }
}

resource "google_monitoring_alert_policy" "oldest_unacked_message" {
  project               = var.project_id
  display_name          = "SRP ${var.environment}: oldest unacknowledged message"
  combiner              = "OR"
  notification_channels = var.notification_channels
  user_labels           = local.labels

  conditions {
    display_name = "A message has waited more than ${var.alerting.oldest_unacked_age_seconds}s"
    condition_threshold {
      filter          = "resource.type = \"pubsub_subscription\" AND resource.labels.subscription_id = ${local.bundle_subscriptions} AND metric.type = \"pubsub.googleapis.com/subscription/oldest_unacked_message_age\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.alerting.oldest_unacked_age_seconds
      duration        = "300s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  documentation {
    mime_type = "text/markdown"
    content   = "Events wait in a subscription of the SRP bundle (${var.environment}): a function is failing, throttled at its max instances, or cannot be invoked (check its invoker binding)."
  }
}
