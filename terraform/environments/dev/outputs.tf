output "webhook_url" {
  description = "Public URL of ingest_webhook."
  value       = module.srp_bundle.webhook_url
}

output "render_requests_topic" {
  description = "Topic producers publish render requests to."
  value       = module.srp_bundle.render_requests_topic
}

output "dead_letter_topic" {
  description = "Dead-letter topic of render requests."
  value       = module.srp_bundle.dead_letter_topic
}

output "render_events_topic" {
  description = "Topic of outgoing task events."
  value       = module.srp_bundle.render_events_topic
}

output "renders_bucket" {
  description = "Bucket SRP writes renders to."
  value       = module.srp_bundle.renders_bucket
}

output "derivatives_bucket" {
  description = "Bucket of derivatives."
  value       = module.srp_bundle.derivatives_bucket
}

output "secret_ids" {
  description = "Secret ids to add values to, by environment variable."
  value       = module.srp_bundle.secret_ids
}

output "topic_publishers" {
  description = "Who may publish to each topic through topic IAM (project-level publishers can too)."
  value       = module.srp_bundle.topic_publishers
}
