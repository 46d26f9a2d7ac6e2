"""Every fault our fakes of SRP can inject, each named once: what it does, which fakes do it.

SRP is faked three times: the local SRP emulator (`local_stack/srp_emulator`), the simulator's
SRP (`sim/srp.py`) and the scripted SRP of the integration tests
(`tests/integration/scripted_srp.py`). All three use these names:
- the emulator as settings: `<name>_rate` is the fault's probability, and a setting of one
  fault alone starts with its name (`srp_create_then_error_statuses`); it logs an injected
  fault under its name;
- the simulator as fault kinds (`python -m sim --only/--without`, `Simulation(faults=...)`);
- the scripted SRP as the steps of its POST script.
`tests/srp_emulator/test_fault_vocabulary.py` checks each fake against this table.
"""

from __future__ import annotations

from dataclasses import dataclass

EMULATOR = "emulator"
SIMULATOR = "simulator"
SCRIPTED = "scripted"
FAKES = (EMULATOR, SIMULATOR, SCRIPTED)
RATE_SUFFIX = "_rate"


@dataclass(frozen=True)
class SrpFault:
    """One way SRP can misbehave, and the fakes that can make it happen."""

    name: str
    effect: str
    fakes: frozenset[str]


def _fault(name: str, effect: str, *fakes: str) -> SrpFault:
    return SrpFault(name, effect, frozenset(fakes))


_ALL = (
    # A POST that creates nothing.
    _fault("srp_connect_refused", "POST: the connection is refused, nothing sent", SIMULATOR),
    _fault(
        "srp_post_hang", "POST: no answer within the timeout, nothing created", EMULATOR, SIMULATOR
    ),
    _fault("srp_post_error", "POST: a 5xx answer, nothing created", EMULATOR, SIMULATOR),
    _fault(
        "srp_post_429",
        "POST: 429 with Retry-After, nothing created",
        EMULATOR,
        SIMULATOR,
        SCRIPTED,
    ),
    # A POST that creates the task, whose answer says otherwise or never comes.
    _fault(
        "srp_create_then_error",
        "POST: the task is created (and called back), the answer is a 5xx from a proxy",
        EMULATOR,
        SIMULATOR,
        SCRIPTED,
    ),
    _fault(
        "srp_create_then_hang",
        "POST: the task is created, the answer comes after the client's timeout",
        EMULATOR,
        SIMULATOR,
        SCRIPTED,
    ),
    _fault(
        "srp_lost_answer",
        "POST: the task is created, the connection is reset before the answer",
        EMULATOR,
        SIMULATOR,
        SCRIPTED,
    ),
    _fault("srp_post_slow", "POST: handled, the answer is delayed (within the timeout)", EMULATOR),
    # GET /api/v1/tasks?id=
    _fault("srp_get_hang", "GET: no answer within the timeout", EMULATOR, SIMULATOR),
    _fault("srp_get_error", "GET: a 5xx answer", EMULATOR, SIMULATOR),
    _fault("srp_get_429", "GET: 429 with Retry-After", EMULATOR, SIMULATOR),
    _fault("srp_get_slow", "GET: the answer is delayed (within the timeout)", EMULATOR),
    _fault("srp_get_lags", "GET: the status of a while ago (SRP's read side lags)", SIMULATOR),
    _fault(
        "srp_get_omits_callbacks",
        "GET: the answer's options carry no callback_urls",
        SIMULATOR,
    ),
    _fault("srp_outage", "every call is answered 503 for one to four hours", SIMULATOR),
    # Renders.
    _fault("srp_render_fails", "the task goes in_progress -> failed", EMULATOR, SIMULATOR),
    _fault("srp_never_finishes", "the task stays in_progress for ever", SIMULATOR),
    _fault(
        "srp_early_done",
        "done is called back before its files are in the renders bucket",
        EMULATOR,
    ),
    _fault(
        "srp_late_done",
        "the files are written, the done callback comes much later",
        EMULATOR,
    ),
    _fault(
        "srp_rewrites_render",
        "the render is written again later (a new generation of the object)",
        SIMULATOR,
    ),
    _fault("srp_corrupt_render", "the render written is not a decodable image", SIMULATOR),
    _fault("srp_sibling_files", "files besides render.png appear in the task's folder", SIMULATOR),
    _fault(
        "srp_odd_collection_name",
        "the collection's name is `..` (render paths outside any folder)",
        SIMULATOR,
    ),
    # Callbacks.
    _fault("srp_cb_duplicate", "a callback is delivered twice", EMULATOR, SIMULATOR),
    _fault("srp_cb_drop", "a callback is never delivered", EMULATOR, SIMULATOR),
    _fault("srp_cb_delay", "a callback arrives 10 minutes to 2 hours late", SIMULATOR),
    _fault(
        "srp_cb_out_of_order",
        "the in_progress callback is delivered after the final one",
        EMULATOR,
    ),
    _fault(
        "srp_cb_wrong_status",
        "a callback carries a status the task does not have",
        SIMULATOR,
    ),
    _fault(
        "srp_cb_odd_status",
        "a callback's status is unknown, very long or padded with whitespace",
        SIMULATOR,
    ),
    _fault(
        "srp_cb_crossed",
        "a callback to our URL with our token names another request's task",
        SIMULATOR,
    ),
)

SRP_FAULTS: dict[str, SrpFault] = {fault.name: fault for fault in _ALL}


def faults_of(fake: str) -> frozenset[str]:
    """The names of the faults `fake` implements."""
    return frozenset(name for name, fault in SRP_FAULTS.items() if fake in fault.fakes)


def rate_setting(name: str) -> str:
    """The emulator's setting for the probability of fault `name`."""
    if name not in SRP_FAULTS:
        raise KeyError(f"unknown SRP fault {name!r} (local_stack/srp_faults.py)")
    return name + RATE_SUFFIX
