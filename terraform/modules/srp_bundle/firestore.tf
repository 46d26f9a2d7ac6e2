# The code uses the default database (no database id setting).
resource "google_firestore_database" "main" {
  project                           = var.project_id
  name                              = "(default)"
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = var.deletion_protection ? "DELETE_PROTECTION_ENABLED" : "DELETE_PROTECTION_DISABLED"
}

# reconcile_tasks looks for tasks in a given state that have not been updated for a while.
resource "google_firestore_index" "tasks_by_state_and_update" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = var.tasks_collection
  query_scope = "COLLECTION"

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }

  fields {
    field_path = "updated_at"
    order      = "ASCENDING"
  }
}

# Batches (status/export/retry --batch): the members of a batch in one state, paged by
# request id (`batch_id == X and state == S and request_id > cursor order by request_id`).
resource "google_firestore_index" "tasks_by_batch_and_state" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = var.tasks_collection
  query_scope = "COLLECTION"

  fields {
    field_path = "batch_id"
    order      = "ASCENDING"
  }

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }

  fields {
    field_path = "request_id"
    order      = "ASCENDING"
  }
}

# The same for a collection (status/export/retry --collection-id).
resource "google_firestore_index" "tasks_by_collection_and_state" {
  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = var.tasks_collection
  query_scope = "COLLECTION"

  fields {
    field_path = "collection_id"
    order      = "ASCENDING"
  }

  fields {
    field_path = "state"
    order      = "ASCENDING"
  }

  fields {
    field_path = "request_id"
    order      = "ASCENDING"
  }
}

# No TTL policy on the event logs: they are the audit trail of every request and are
# bounded instead (at most 200 entries per record, the rest counted; decision 0007).

# input_data is kept as its JSON text (up to 64 KiB): never queried, and an indexed string
# longer than 1,500 bytes is not what an index is for. No single-field index on it.
resource "google_firestore_field" "input_data_unindexed" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = var.tasks_collection
  field      = "input_data_json"

  index_config {}
}

# Each `events` subcollection (the task event logs) keeps callback bodies verbatim (up to
# 64 KiB): never queried, so no single-field index under `payload`.
resource "google_firestore_field" "event_log_payload_unindexed" {
  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = "events"
  field      = "payload"

  index_config {}
}

# The functions reach Firestore with IAM, which security rules do not apply to; rules only
# govern the client SDKs (web, mobile), and none of them may read or write anything.
resource "google_firebaserules_ruleset" "firestore_deny_clients" {
  project = var.project_id

  source {
    files {
      name    = "firestore.rules"
      content = <<-EOT
        rules_version = '2';
        service cloud.firestore {
          match /databases/{database}/documents {
            match /{document=**} {
              allow read, write: if false;
            }
          }
        }
      EOT
    }
  }

  # A ruleset in use by a release cannot be deleted: the release moves to the new one first.
  lifecycle {
    create_before_destroy = true
  }
}

resource "google_firebaserules_release" "firestore" {
  project      = var.project_id
  name         = "cloud.firestore"
  ruleset_name = "projects/${var.project_id}/rulesets/${google_firebaserules_ruleset.firestore_deny_clients.name}"

  depends_on = [google_firestore_database.main]
}

# Fields that carry a requester's or SRP's data verbatim (strings of any length, up to the
# 64 KiB message): never queried, so no single-field index. Indexed, a string over 1,500
# bytes is truncated in the index; the local Firestore refuses it unless exempt here.
locals {
  unindexed_fields = {
    record_metadata = { collection = var.tasks_collection, field = "metadata" }
    outbox_event    = { collection = "${var.tasks_collection}_outbox", field = "event" }
    log_request     = { collection = "events", field = "request" }
    log_received    = { collection = "events", field = "received" }
  }
}

resource "google_firestore_field" "unindexed" {
  for_each = local.unindexed_fields

  project    = var.project_id
  database   = google_firestore_database.main.name
  collection = each.value.collection
  field      = each.value.field

  index_config {}
}
