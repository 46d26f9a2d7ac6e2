locals {
  # Eventarc names a trigger's subscription eventarc-<region>-<function name>-<suffix>-sub-<n>;
  # every subscription of the bundle therefore contains the name prefix.
  bundle_subscriptions      = "monitoring.regex.full_match(\".*${local.name_prefix}-.*\")"
  dead_letter_subscriptions = "monitoring.regex.full_match(\".*${google_cloudfunctions2_function.main["record_dead_letter"].name}-.*\")"
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
