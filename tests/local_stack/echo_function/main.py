"""A CloudEvent function for bridge tests: appends each event it decoded to $ECHO_FILE.

(Not in a folder named `functions`: with tests/ on sys.path, tests/local_stack/functions
would shadow the local_stack.functions module.)
"""

from __future__ import annotations

import json
import os

import functions_framework
from cloudevents.http.event import CloudEvent


@functions_framework.cloud_event
def echo(cloud_event: CloudEvent) -> None:
    """Write the event's attributes and data as one JSON line; fail when asked to."""
    data = cloud_event.data
    attributes = (
        (data or {}).get("message", {}).get("attributes", {}) if isinstance(data, dict) else {}
    )
    if attributes.get("echo") == "crash":
        raise RuntimeError("asked to crash")
    with open(os.environ["ECHO_FILE"], "a", encoding="utf-8") as received:
        received.write(
            json.dumps({"attributes": dict(cloud_event.get_attributes()), "data": data}) + "\n"
        )
