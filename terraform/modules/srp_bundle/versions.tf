terraform {
  # optional() attribute defaults need 1.3. CI's Terraform is 1.0.3: tools/tf_schema_provider
  # validates a copy whose type constraints it rewrites for that version.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source = "hashicorp/google"
      # The two versions CI validates against (tools/tf_schema_provider); the environments pin one.
      version = ">= 5.40.0, <= 6.50.0"
    }
  }
}
