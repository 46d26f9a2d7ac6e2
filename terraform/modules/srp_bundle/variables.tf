variable "project_id" {
  type        = string
  description = "Google Cloud project that hosts the bundle."
}

variable "environment" {
  type        = string
  description = "Deployment environment; it prefixes every resource name (srp-<environment>-...)."

  validation {
    condition     = contains(["dev", "prod"], var.environment)
    error_message = "The environment must be \"dev\" or \"prod\"."
  }
}

variable "region" {
  type        = string
  description = "Region of the functions, the Cloud Scheduler job and (unless overridden) the buckets, e.g. europe-west1."
}

variable "bucket_location" {
  type        = string
  description = "Location of the renders and derivatives buckets; null means var.region. The GCS trigger runs in this location, so keep it a single region."
  default     = null
}

variable "firestore_location" {
  type        = string
  description = "Location of the Firestore database, e.g. eur3 or europe-west1. It cannot change once the database exists."
}

variable "function_source_dir" {
  type        = string
  description = "Folder holding <function>.zip for every function, made by `python -m srp_bundle.build --out build/functions`."
}

variable "srp_api_url" {
  type        = string
  description = "SRP base URL (SRP_API_URL)."
  default     = "https://srp.snark.art"

  validation {
    condition     = can(regex("^https://", var.srp_api_url))
    error_message = "The SRP API URL must start with https://."
  }
}

variable "srp_writer_member" {
  type        = string
  description = "IAM member SRP writes renders as, e.g. serviceAccount:renderer@srp.iam.gserviceaccount.com. It may create objects in the renders bucket and nothing else."

  validation {
    condition     = can(regex("^(serviceAccount|user|group):[^@]+@[^@]+$", var.srp_writer_member))
    error_message = "The SRP writer must be an IAM member such as serviceAccount:name@project.iam.gserviceaccount.com."
  }
}

variable "producer_members" {
  type        = list(string)
  description = "IAM members that publish render requests, e.g. serviceAccount:minter@studio.iam.gserviceaccount.com: each gets roles/pubsub.publisher on the render-requests topic and nothing else. Grant producers here, never project-wide: a project-wide publisher can also publish to the dead-letter and events topics."
  default     = []

  validation {
    condition = alltrue([
      for member in var.producer_members :
      can(regex("^((serviceAccount|user|group):[^@\\s]+@[^@\\s]+|domain:[^@:\\s]+|principal(Set)?://\\S+)$", member))
    ])
    error_message = "Each producer must be one IAM member: serviceAccount:, user: or group: with an email, domain:, or a principal:// or principalSet:// identifier (never allUsers or allAuthenticatedUsers)."
  }
}

variable "manage_data_access_audit_logs" {
  type        = bool
  description = "Turn on data-access audit logs (DATA_READ, DATA_WRITE) for Cloud Storage and Firestore in the project. The setting is authoritative per service: it replaces the project's own audit config of those two services, exempted members included, so it is off unless the project's audit config is yours to set."
  default     = false
}

variable "tasks_collection" {
  type        = string
  description = "Firestore collection of task records (TASKS_COLLECTION)."
  default     = "srp_tasks"
}

variable "derivative_specs" {
  type        = string
  description = "Derivative sizes and formats for postprocess_render (DERIVATIVE_SPECS)."
  default     = "512:webp,256:webp,1024:png"
}

variable "task_tuning" {
  type = object({
    max_request_age_seconds       = optional(number, 86400)
    confirm_terminal_status       = optional(bool, true)
    stale_after_seconds           = optional(number, 900)
    reconcile_budget              = optional(number, 500)
    srp_timeout_seconds           = optional(number, 10)
    ambiguous_submit_wait_seconds = optional(number, 300)
    max_source_pixels             = optional(number, 50000000)
    max_source_bytes              = optional(number, 268435456)
    max_media_seconds             = optional(number, 600)
    media_timeout_seconds         = optional(number, 120)
    media_memory_bytes            = optional(number, 1073741824)
    max_animation_pixels          = optional(number, 500000000)
    rendered_deadline_seconds     = optional(number, 3600)
  })
  description = "Tuning knobs passed to the functions as MAX_REQUEST_AGE_SECONDS, CONFIRM_TERMINAL_STATUS, STALE_AFTER_SECONDS, RECONCILE_BUDGET, SRP_TIMEOUT_SECONDS, AMBIGUOUS_SUBMIT_WAIT_SECONDS, MAX_SOURCE_PIXELS, MAX_SOURCE_BYTES, MAX_MEDIA_SECONDS, MEDIA_TIMEOUT_SECONDS (one output file's whole budget: with a 60 s margin it must fit inside the function's timeout), MEDIA_MEMORY_BYTES, MAX_ANIMATION_PIXELS and RENDERED_DEADLINE_SECONDS; the defaults are the code's."
  default     = {}

  validation {
    condition = alltrue([
      for value in [
        var.task_tuning.max_request_age_seconds,
        var.task_tuning.stale_after_seconds,
        var.task_tuning.reconcile_budget,
        var.task_tuning.srp_timeout_seconds,
        var.task_tuning.ambiguous_submit_wait_seconds,
        var.task_tuning.max_source_pixels,
        var.task_tuning.max_source_bytes,
        var.task_tuning.max_media_seconds,
        var.task_tuning.media_timeout_seconds,
        var.task_tuning.media_memory_bytes,
        var.task_tuning.max_animation_pixels,
        var.task_tuning.rendered_deadline_seconds,
      ] : value > 0 && floor(value) == value
    ])
    error_message = "Ages, budgets and timeouts must be positive whole numbers."
  }
}

variable "accept_previous_webhook_secret" {
  type        = bool
  description = "Give ingest_webhook WEBHOOK_SECRET_PREVIOUS during a secret rotation; its secret must hold a version first (see docs/deploy.md)."
  default     = false
}

variable "forward_producer_callbacks" {
  type        = bool
  description = "FORWARD_PRODUCER_CALLBACKS of submit_task and reconcile_tasks: false refuses every render request that carries callback_urls (SRP is never given a producer URL); producers subscribe to the render-events topic instead."
  default     = true
}

variable "secret_versions" {
  type        = map(string)
  description = "Secret version each function mounts, by environment variable (SRP_API_KEY, WEBHOOK_SECRET, WEBHOOK_SECRET_PREVIOUS); unset means latest. Bump a number to roll out a rotated value."
  default     = {}

  validation {
    condition = alltrue([
      for variable, version in var.secret_versions :
      contains(["SRP_API_KEY", "WEBHOOK_SECRET", "WEBHOOK_SECRET_PREVIOUS"], variable) && can(regex("^([1-9][0-9]*|latest)$", version))
    ])
    error_message = "Keys must be SRP_API_KEY, WEBHOOK_SECRET or WEBHOOK_SECRET_PREVIOUS; values a version number or \"latest\"."
  }
}

variable "reconcile_schedule" {
  type        = string
  description = "Cron schedule (UTC) on which Cloud Scheduler asks reconcile_tasks to look for tasks with no news."
  default     = "*/10 * * * *"
}

variable "submit_delivery" {
  type = object({
    max_delivery_attempts   = optional(number, 20)
    minimum_backoff_seconds = optional(number, 10)
    maximum_backoff_seconds = optional(number, 600)
  })
  description = "Retries of the render-requests push subscription before a message goes to the dead-letter topic. Throttled deliveries (HTTP 429 when submit_task is at max instances) count as attempts too."
  default     = {}

  validation {
    condition     = var.submit_delivery.max_delivery_attempts >= 5 && var.submit_delivery.max_delivery_attempts <= 100
    error_message = "Pub/Sub accepts between 5 and 100 delivery attempts."
  }

  validation {
    condition = (
      var.submit_delivery.minimum_backoff_seconds >= 0
      && var.submit_delivery.minimum_backoff_seconds <= var.submit_delivery.maximum_backoff_seconds
      && var.submit_delivery.maximum_backoff_seconds <= 600
    )
    error_message = "Backoffs must satisfy 0 <= minimum <= maximum <= 600 seconds."
  }
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
  description = "Per-function overrides of the scaling defaults in main.tf, keyed by function name. submit_task's max_instances x max_concurrency is the number of submissions SRP may receive at once."
  default     = {}

  validation {
    condition = alltrue([
      for name in keys(var.function_scaling) :
      contains(["submit_task", "ingest_webhook", "postprocess_render", "reconcile_tasks", "record_dead_letter"], name)
    ])
    error_message = "Keys must be function names: submit_task, ingest_webhook, postprocess_render, reconcile_tasks, record_dead_letter."
  }

  validation {
    condition = alltrue(flatten([
      for scaling in values(var.function_scaling) : [
        scaling.max_instances == null ? true : scaling.max_instances >= 1,
        scaling.max_concurrency == null ? true : scaling.max_concurrency >= 1 && scaling.max_concurrency <= 1000,
        scaling.timeout_seconds == null ? true : scaling.timeout_seconds >= 1 && scaling.timeout_seconds <= 540,
      ]
    ]))
    error_message = "Scaling: max_instances must be >= 1, max_concurrency between 1 and 1000, timeout_seconds between 1 and 540."
  }
}

variable "retention" {
  type = object({
    renders_days              = optional(number)
    derivatives_days          = optional(number)
    noncurrent_versions_days  = optional(number, 30)
    dead_letter_message_hours = optional(number, 168)
  })
  description = "How long data is kept: renders and derivatives forever unless a number of days is given; overwritten or deleted object versions for noncurrent_versions_days; dead letters stay replayable for dead_letter_message_hours."
  default     = {}

  validation {
    condition = (
      var.retention.noncurrent_versions_days >= 1
      && var.retention.dead_letter_message_hours >= 1
      && var.retention.dead_letter_message_hours <= 744
    )
    error_message = "Retention: noncurrent_versions_days must be >= 1 and dead_letter_message_hours between 1 and 744 (31 days)."
  }
}

variable "deletion_protection" {
  type        = bool
  description = "Protect the Firestore database and non-empty buckets from `terraform destroy`."
  default     = true
}

variable "notification_channels" {
  type        = list(string)
  description = "Monitoring notification channel ids (projects/<project>/notificationChannels/<id>) that receive every alert."
  default     = []
}

variable "alerting" {
  type = object({
    error_rate_threshold            = optional(number, 0.05)
    oldest_unacked_age_seconds      = optional(number, 1800)
    dead_letter_backlog_age_seconds = optional(number, 900)
    unauthorized_callbacks_per_5m   = optional(number, 20)
  })
  description = "Alert thresholds: share of 5xx responses per function over 5 minutes, age of the oldest unacknowledged message on any of the bundle's subscriptions, age of an unprocessed dead letter, 401 answers of ingest_webhook in 5 minutes."
  default     = {}

  validation {
    condition     = var.alerting.error_rate_threshold > 0 && var.alerting.error_rate_threshold < 1
    error_message = "Alerting: error_rate_threshold is a share between 0 and 1."
  }
}

variable "labels" {
  type        = map(string)
  description = "Extra labels on every resource that takes labels."
  default     = {}
}
