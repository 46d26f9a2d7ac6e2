variable "project_id" {
  type        = string
  description = "Google Cloud project of this environment."
}

variable "region" {
  type        = string
  description = "Region of the functions and the scheduler job, e.g. europe-west1."
}

variable "bucket_location" {
  type        = string
  description = "Location of the renders and derivatives buckets; null means the region."
  default     = null
}

variable "firestore_location" {
  type        = string
  description = "Location of the Firestore database, e.g. eur3 or europe-west1."
}

variable "function_source_dir" {
  type        = string
  description = "Folder of the function zips made by `python -m srp_bundle.build --out build/functions`, relative to this folder."
  default     = "../../../build/functions"
}

variable "srp_api_url" {
  type        = string
  description = "SRP base URL."
  default     = "https://srp.snark.art"
}

variable "srp_writer_member" {
  type        = string
  description = "IAM member SRP writes renders as, e.g. serviceAccount:renderer@srp.iam.gserviceaccount.com."
}

variable "producer_members" {
  type        = list(string)
  description = "IAM members that publish render requests (publish on the render-requests topic only), e.g. [\"serviceAccount:minter@studio.iam.gserviceaccount.com\"]."
  default     = []
}

variable "manage_data_access_audit_logs" {
  type        = bool
  description = "Turn on data-access audit logs for Cloud Storage and Firestore; authoritative per service, so set false when the organisation manages the project's audit config (docs/deploy.md)."
  # On here: an environment is meant to own its project (docs/deploy.md). The module's default is off.
  default = true
}

variable "function_scaling" {
  type = map(object({
    max_instances   = optional(number)
    min_instances   = optional(number)
    max_concurrency = optional(number)
    cpu             = optional(string)
    memory          = optional(string)
    timeout_seconds = optional(number)
  }))
  description = "Per-function scaling overrides keyed by function name (defaults in the module's main.tf)."
  default     = {}
}

variable "accept_previous_webhook_secret" {
  type        = bool
  description = "Mount WEBHOOK_SECRET_PREVIOUS in ingest_webhook during a secret rotation."
  default     = false
}

variable "forward_producer_callbacks" {
  type        = bool
  description = "Pass producer callback_urls to SRP; false refuses requests that carry them (producers use the render-events topic)."
  default     = true
}

variable "secret_versions" {
  type        = map(string)
  description = "Secret version mounted per environment variable (e.g. { WEBHOOK_SECRET = \"2\" }); unset means latest."
  default     = {}
}

variable "notification_channels" {
  type        = list(string)
  description = "Monitoring notification channel ids that receive the alerts."
  default     = []
}
