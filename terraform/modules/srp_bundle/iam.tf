# One identity per function, each granted only what its job touches, on the resource it
# touches. The only project-level grants are the ones below that have no narrower scope.

locals {
  pubsub_service_agent = "serviceAccount:service-${data.google_project.main.number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  function_secret_access = merge([
    for function_name, function in local.functions : {
      for variable in function.secret_environment :
      "${function_name}/${variable}" => { function = function_name, variable = variable }
    }
  ]...)

  # Where Cloud Functions copies each function's source before building it.
  staged_sources_bucket = "projects/_/buckets/gcf-v2-sources-${data.google_project.main.number}-${var.region}"

  functions_with_event_trigger = toset([
    for function_name, function in local.functions : function_name if function.event_trigger != null
  ])
}

data "google_storage_project_service_account" "main" {
  project = var.project_id
}

resource "google_service_account" "function" {
  for_each = local.functions

  project      = var.project_id
  account_id   = "${local.name_prefix}-${replace(each.key, "_", "-")}"
  display_name = "SRP ${var.environment} ${each.key}"
  description  = "Runs ${each.key}; granted only what that function touches."
}

resource "google_service_account" "eventarc_trigger" {
  project      = var.project_id
  account_id   = "${local.name_prefix}-eventarc-trigger"
  display_name = "SRP ${var.environment} Eventarc triggers"
  description  = "Identity Eventarc uses to invoke postprocess_render, reconcile_tasks and record_dead_letter."
}

# Cloud Build runs the function builds as this account, not as the default build account
# (often an Editor): it reads the sources, pushes images to our repository, writes build logs.
resource "google_service_account" "function_build" {
  project      = var.project_id
  account_id   = "${local.name_prefix}-function-build"
  display_name = "SRP ${var.environment} function builds"
  description  = "Identity of the Cloud Build runs that build the functions; granted only what a build needs."
}

resource "google_service_account" "pubsub_push" {
  project      = var.project_id
  account_id   = "${local.name_prefix}-pubsub-push"
  display_name = "SRP ${var.environment} render-requests push"
  description  = "Identity of the OIDC token the render-requests push subscription sends to submit_task."
}

# --- Project level, by necessity -------------------------------------------------------

# Firestore grants are per project; the condition narrows them to this database, and
# datastore.user (read and write documents) is the narrowest role the task record needs.
resource "google_project_iam_member" "function_firestore" {
  for_each = local.functions

  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.function[each.key].member

  condition {
    title      = "srp-${var.environment}-firestore-database"
    expression = "resource.name == \"projects/${var.project_id}/databases/${google_firestore_database.main.name}\""
  }
}

# Eventarc checks this role on the project: there is no resource to scope it to.
resource "google_project_iam_member" "eventarc_event_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = google_service_account.eventarc_trigger.member
}

# Still needed with Eventarc: for a direct Cloud Storage trigger Eventarc creates the bucket
# notification and its transport topic (under a generated name), and the Cloud Storage service
# agent is the identity that publishes the notifications. The topic does not exist before the
# trigger does, and Pub/Sub grants take no IAM condition, so the grant can only be project-wide.
resource "google_project_iam_member" "storage_agent_publisher" {
  project = var.project_id
  role    = "roles/pubsub.publisher"
  member  = "serviceAccount:${data.google_storage_project_service_account.main.email_address}"
}

# Build logs: Cloud Logging has no narrower scope than the project.
resource "google_project_iam_member" "build_log_writer" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.function_build.member
}

# Cloud Functions copies each function's source into its own bucket, which it creates on the
# first deployment (so it cannot be granted on before): the condition limits the read to it.
resource "google_project_iam_member" "build_reads_staged_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.function_build.member

  # The bucket itself (listing) or an object in it.
  condition {
    title      = "srp-${var.environment}-function-source-staging"
    expression = "resource.name == \"${local.staged_sources_bucket}\" || resource.name.startsWith(\"${local.staged_sources_bucket}/\")"
  }
}

# --- Builds ---------------------------------------------------------------------------------

resource "google_storage_bucket_iam_member" "build_reads_function_source" {
  bucket = google_storage_bucket.function_source.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.function_build.member
}

resource "google_artifact_registry_repository_iam_member" "build_pushes_images" {
  project    = var.project_id
  location   = google_artifact_registry_repository.function_images.location
  repository = google_artifact_registry_repository.function_images.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.function_build.member
}

# --- Secrets: each function reads exactly the secrets it mounts ------------------------

resource "google_secret_manager_secret_iam_member" "function_access" {
  for_each = local.function_secret_access

  project   = var.project_id
  secret_id = google_secret_manager_secret.main[each.value.variable].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.function[each.value.function].member
}

# --- Topics and subscriptions ------------------------------------------------------------

# Producers publish render requests, and only there: a publisher of the dead-letter topic could
# fail any request that has no task yet, one of the events topic could forge render.completed.
resource "google_pubsub_topic_iam_member" "producer_publishes_requests" {
  for_each = toset(var.producer_members)

  project = var.project_id
  topic   = google_pubsub_topic.render_requests.name
  role    = "roles/pubsub.publisher"
  member  = each.key
}

# Authoritative for the publisher role on these two topics, which the module owns: a publisher
# granted on the topic outside Terraform is removed at the next apply. Project-level grants
# (roles/pubsub.publisher, editor, owner) are not topic IAM and still reach both topics; see
# docs/deploy.md, "Who may publish".
resource "google_pubsub_topic_iam_binding" "event_publishers" {
  project = var.project_id
  topic   = google_pubsub_topic.render_events.name
  role    = "roles/pubsub.publisher"
  members = [for function_name in keys(local.functions) : google_service_account.function[function_name].member]
}

# A dead-letter policy works only if the Pub/Sub service agent may publish to the dead-letter
# topic and acknowledge (subscribe to) the source subscription; nobody else publishes there.
resource "google_pubsub_topic_iam_binding" "dead_letter_publishers" {
  project = var.project_id
  topic   = google_pubsub_topic.render_requests_dead_letter.name
  role    = "roles/pubsub.publisher"
  members = [local.pubsub_service_agent]
}

resource "google_pubsub_subscription_iam_member" "pubsub_agent_submit_subscriber" {
  project      = var.project_id
  subscription = google_pubsub_subscription.submit_task.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_service_agent
}

# Pub/Sub mints the OIDC tokens of push deliveries (ours and Eventarc's) as these accounts.
resource "google_service_account_iam_member" "pubsub_agent_token_creator" {
  for_each = {
    pubsub_push      = google_service_account.pubsub_push.name
    eventarc_trigger = google_service_account.eventarc_trigger.name
  }

  service_account_id = each.value
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_service_agent
}

# --- Buckets -------------------------------------------------------------------------------

# reconcile_tasks post-processes again the files whose storage events were lost.
resource "google_storage_bucket_iam_member" "postprocess_reads_renders" {
  for_each = toset(["postprocess_render", "reconcile_tasks"])
  bucket   = google_storage_bucket.renders.name
  role     = "roles/storage.objectViewer"
  member   = google_service_account.function[each.key].member
}

# ingest_webhook lists a done task's folder (the files a request completes on); read and
# list on the renders bucket only.
resource "google_storage_bucket_iam_member" "webhook_lists_renders" {
  bucket = google_storage_bucket.renders.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.function["ingest_webhook"].member
}

# objectUser rather than objectCreator: a retried run overwrites the derivatives it made.
resource "google_storage_bucket_iam_member" "postprocess_writes_derivatives" {
  for_each = toset(["postprocess_render", "reconcile_tasks"])
  bucket   = google_storage_bucket.derivatives.name
  role     = "roles/storage.objectUser"
  member   = google_service_account.function[each.key].member
}

resource "google_storage_bucket_iam_member" "srp_writes_renders" {
  bucket = google_storage_bucket.renders.name
  role   = "roles/storage.objectCreator"
  member = var.srp_writer_member
}

# --- Who may invoke which function ---------------------------------------------------------

resource "google_cloud_run_v2_service_iam_member" "pubsub_push_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.main["submit_task"].name
  role     = "roles/run.invoker"
  member   = google_service_account.pubsub_push.member
}

resource "google_cloud_run_v2_service_iam_member" "eventarc_invoker" {
  for_each = local.functions_with_event_trigger

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.main[each.key].name
  role     = "roles/run.invoker"
  member   = google_service_account.eventarc_trigger.member
}

# Public on purpose: SRP cannot authenticate to Google, so every callback must instead carry
# our HMAC token, and ingest_webhook rejects it with 401 otherwise.
resource "google_cloud_run_v2_service_iam_member" "public_webhook_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.main["ingest_webhook"].name
  role     = "roles/run.invoker"
  member   = "allUsers"
}
