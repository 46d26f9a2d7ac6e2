terraform {
  # optional() attribute defaults need 1.3; CI only runs `terraform fmt` (1.0.3), which parses them.
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.40, < 7"
    }
  }
}
