# Terraform creates the secret containers and who may read them, never a value: versions
# are added out of band (docs/deploy.md), so no secret reaches tfvars or state.

locals {
  # Keyed by the environment variable each secret becomes.
  secret_ids = {
    SRP_API_KEY             = "${local.name_prefix}-srp-api-key"
    WEBHOOK_SECRET          = "${local.name_prefix}-webhook-secret"
    WEBHOOK_SECRET_PREVIOUS = "${local.name_prefix}-webhook-secret-previous"
  }
}

resource "google_secret_manager_secret" "main" {
  for_each = local.secret_ids

  project   = var.project_id
  secret_id = each.value
  labels    = local.labels

  replication {
    auto {}
  }
}
