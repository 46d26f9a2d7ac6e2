module "srp_bundle" {
  source = "../../modules/srp_bundle"

  environment         = "prod"
  deletion_protection = true

  project_id                     = var.project_id
  region                         = var.region
  bucket_location                = var.bucket_location
  firestore_location             = var.firestore_location
  function_source_dir            = var.function_source_dir
  srp_api_url                    = var.srp_api_url
  srp_writer_member              = var.srp_writer_member
  producer_members               = var.producer_members
  manage_data_access_audit_logs  = var.manage_data_access_audit_logs
  function_scaling               = var.function_scaling
  accept_previous_webhook_secret = var.accept_previous_webhook_secret
  forward_producer_callbacks     = var.forward_producer_callbacks
  secret_versions                = var.secret_versions
  notification_channels          = var.notification_channels
}
