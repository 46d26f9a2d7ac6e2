output "webhook_url" {
  description = "Public URL of ingest_webhook, the base of the callback URLs given to SRP (WEBHOOK_URL)."
  value       = google_cloudfunctions2_function.main["ingest_webhook"].url
}

output "render_requests_topic" {
  description = "Topic producers publish render requests to."
  value       = google_pubsub_topic.render_requests.name
}

output "dead_letter_topic" {
  description = "Topic that receives render requests which exhausted their delivery attempts."
  value       = google_pubsub_topic.render_requests_dead_letter.name
}

output "render_events_topic" {
  description = "Topic of outgoing task events (EVENTS_TOPIC)."
  value       = google_pubsub_topic.render_events.name
}

output "reconcile_topic" {
  description = "Topic Cloud Scheduler publishes to to start reconcile_tasks."
  value       = google_pubsub_topic.reconcile.name
}

output "renders_bucket" {
  description = "Bucket SRP writes renders to (RENDERS_BUCKET)."
  value       = google_storage_bucket.renders.name
}

output "derivatives_bucket" {
  description = "Bucket of derivatives (DERIVATIVES_BUCKET)."
  value       = google_storage_bucket.derivatives.name
}

output "function_source_bucket" {
  description = "Bucket holding the uploaded function zips."
  value       = google_storage_bucket.function_source.name
}

output "secret_ids" {
  description = "Secret Manager secret ids by the environment variable they feed; add their values out of band."
  value       = { for variable, secret in google_secret_manager_secret.main : variable => secret.secret_id }
}

output "function_names" {
  description = "Deployed function names by entry point."
  value       = { for entry_point, function in google_cloudfunctions2_function.main : entry_point => function.name }
}

output "function_service_accounts" {
  description = "Service account email of each function."
  value       = { for entry_point, account in google_service_account.function : entry_point => account.email }
}

output "topic_publishers" {
  description = "Who the module lets publish to each topic (topic-level IAM); anyone holding roles/pubsub.publisher, editor or owner on the project can publish too."
  value = {
    render_requests = var.producer_members
    render_events   = google_pubsub_topic_iam_binding.event_publishers.members
    dead_letter     = google_pubsub_topic_iam_binding.dead_letter_publishers.members
  }
}
