# Every bucket: uniform bucket-level access (IAM only, no object ACLs), public access
# prevention enforced, versioning with old versions expiring, stale multipart uploads aborted.

resource "google_storage_bucket" "renders" {
  #checkov:skip=CKV_GCP_62:Object reads and writes are in Cloud Storage's data-access audit logs (google_project_iam_audit_config.data_access when manage_data_access_audit_logs is set, else the organisation's own audit config); usage-log buckets would add a bucket to secure and nothing to read.
  project                     = var.project_id
  name                        = "${var.project_id}-${local.name_prefix}-renders"
  location                    = local.bucket_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.retention.noncurrent_versions_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  # Renders are kept (they are the product) unless the environment sets a retention.
  dynamic "lifecycle_rule" {
    for_each = var.retention.renders_days == null ? [] : [var.retention.renders_days]
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }
}

resource "google_storage_bucket" "derivatives" {
  #checkov:skip=CKV_GCP_62:Object reads and writes are in Cloud Storage's data-access audit logs (google_project_iam_audit_config.data_access when manage_data_access_audit_logs is set, else the organisation's own audit config); usage-log buckets would add a bucket to secure and nothing to read.
  project                     = var.project_id
  name                        = "${var.project_id}-${local.name_prefix}-derivatives"
  location                    = local.bucket_location
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = !var.deletion_protection
  labels                      = local.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.retention.noncurrent_versions_days
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  dynamic "lifecycle_rule" {
    for_each = var.retention.derivatives_days == null ? [] : [var.retention.derivatives_days]
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }
}

resource "google_storage_bucket" "function_source" {
  #checkov:skip=CKV_GCP_62:Object reads and writes are in Cloud Storage's data-access audit logs (google_project_iam_audit_config.data_access when manage_data_access_audit_logs is set, else the organisation's own audit config); usage-log buckets would add a bucket to secure and nothing to read.
  project                     = var.project_id
  name                        = "${var.project_id}-${local.name_prefix}-function-source"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Only build inputs live here; Terraform recreates them from build/functions.
  force_destroy = true
  labels        = local.labels

  # Superseded zips become noncurrent when Terraform replaces their object and expire here.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.retention.noncurrent_versions_days
    }
    action {
      type = "Delete"
    }
  }
}
