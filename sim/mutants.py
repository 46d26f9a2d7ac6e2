"""Planted bugs: does the simulator catch each one within CI's seed budget?

`python -m sim.mutants [NAME ...] [--seeds N]` plants one bug at a time (by patching, in
this process only; nothing is committed to the bundle), runs the CI seeds until the first
invariant violation, and prints the seed and the invariant. A mutant that survives the whole
budget is reported as such: the simulator would have missed that bug.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from sim import firestore
from sim.ci import CI_SEEDS, ci_faults
from sim.scenario import Simulation
from srp_bundle import derivative_store, task_state
from srp_bundle.submission import Submitter

Patch = Callable[[], contextlib.AbstractContextManager[None]]


@contextlib.contextmanager
def _patched(target: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, original)


@contextlib.contextmanager
def rendering_after_rendered() -> Iterator[None]:
    """A state machine that lets `rendering` follow `rendered`."""
    original = task_state._apply_status

    def apply_status(transition: Any, change: Any, now: Any) -> None:
        record = transition.record
        target = task_state.state_for_status(change.status)
        if (
            target == task_state.State.RENDERING
            and record.state == task_state.State.RENDERED
            and change.task_id == record.task_id
        ):
            record.state = task_state.State.RENDERING
            record.status = change.status
            transition.changed = True
            return
        original(transition, change, now)

    with _patched(task_state, "_apply_status", apply_status):
        yield


@contextlib.contextmanager
def read_outside_transaction() -> Iterator[None]:
    """A missing transaction: the task store reads records without `transaction=`."""
    original = firestore.DocumentReference.get

    def get(self: firestore.DocumentReference, transaction: Any = None) -> Any:
        if len(self.path) == 2 and self.path[0] == "srp_tasks":
            return original(self)
        return original(self, transaction)

    with _patched(firestore.DocumentReference, "get", get):
        yield


@contextlib.contextmanager
def no_lease() -> Iterator[None]:
    """Submission without a lease: a lease that has expired when it is taken."""
    original = Submitter.__init__

    def init(self: Submitter, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.lease_seconds = -1

    with _patched(Submitter, "__init__", init):
        yield


@contextlib.contextmanager
def no_ambiguity_wait() -> Iterator[None]:
    """A lost POST answer does not make redeliveries wait for SRP's callback."""
    original = Submitter.__init__

    def init(self: Submitter, settings: Any, *args: Any, **kwargs: Any) -> None:
        original(self, settings, *args, **kwargs)
        self.settings = dataclasses.replace(settings, ambiguous_submit_wait_seconds=0)

    with _patched(Submitter, "__init__", init):
        yield


@contextlib.contextmanager
def failed_is_not_final() -> Iterator[None]:
    """`failed` is not terminal: a later callback revives the record."""
    with _patched(task_state, "TERMINAL_STATES", frozenset({task_state.State.COMPLETED})):
        terminal = property(lambda self: self.state == task_state.State.COMPLETED)
        with _patched(task_state.TaskRecord, "is_terminal", terminal):
            yield


@contextlib.contextmanager
def derivatives_overwritten() -> Iterator[None]:
    """Derivatives written without `if_generation_match=0`: a redelivery writes them again."""

    def write(bucket: Any, name: str, derivative: Any, metadata: Any, cache_control: str) -> Any:
        blob = bucket.blob(name)
        blob.cache_control = cache_control
        blob.metadata = metadata
        blob.upload_from_string(derivative.data, content_type=derivative.content_type)
        return derivative_store.StoredDerivative(
            name, derivative.info, int(blob.generation), written=True
        )

    with _patched(derivative_store, "_write_once", write):
        yield


@contextlib.contextmanager
def server_error_is_not_ambiguous() -> Iterator[None]:
    """Issue 14 hole 1 re-planted: a 5xx answer to a POST counts as 'nothing was created'."""
    from srp_bundle import errors

    if not hasattr(errors.SrpServerError("probe", status_code=502), "may_have_reached_srp"):
        raise RuntimeError("this mutant needs hole 1's fix (SrpError.may_have_reached_srp)")
    original = errors.SrpServerError.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.may_have_reached_srp = False

    with _patched(errors.SrpServerError, "__init__", init):
        yield


@contextlib.contextmanager
def dead_letter_keyed_by_its_own_id() -> Iterator[None]:
    """Issue 14 hole 5 re-planted: a dead letter without request_id is not traced back."""
    from srp_bundle import dead_letters

    if not hasattr(dead_letters, "_original_request_id"):
        raise RuntimeError("this mutant needs hole 5's fix (dead_letters._original_request_id)")
    with _patched(
        dead_letters, "_original_request_id", lambda store, digest, message: message.message_id
    ):
        yield


@contextlib.contextmanager
def dead_letter_decides_outside_the_transaction() -> Iterator[None]:
    """Issue 14 hole 4 re-planted: read the record, then fail it without re-checking."""
    from srp_bundle import dead_letters
    from srp_bundle.outbox import apply_and_publish
    from srp_bundle.task_state import TaskFailed

    if not hasattr(dead_letters, "_original_request_id"):
        raise RuntimeError("this mutant needs hole 4's fix")
    original = dead_letters.record_dead_letter

    def record_dead_letter(store: Any, publisher: Any, message: Any) -> Any:
        request_id = dead_letters.requested_id(message.data) or dead_letters._original_request_id(
            store, dead_letters.message_digest(message.data), message
        )
        record = store.get(request_id)
        if record is None or record.task_id is not None or record.is_terminal:
            return original(store, publisher, message)
        transition = apply_and_publish(
            store, publisher, request_id, TaskFailed("dead_lettered", "gave up")
        )
        return transition.record

    with _patched(dead_letters, "record_dead_letter", record_dead_letter):
        yield


MUTANTS: dict[str, Patch] = {
    "rendering_after_rendered": rendering_after_rendered,
    "read_outside_transaction": read_outside_transaction,
    "no_ambiguity_wait": no_ambiguity_wait,
    "failed_is_not_final": failed_is_not_final,
    "derivatives_overwritten": derivatives_overwritten,
    "server_error_is_not_ambiguous": server_error_is_not_ambiguous,
    "dead_letter_keyed_by_its_own_id": dead_letter_keyed_by_its_own_id,
}
# Planted bugs the CI seeds do not catch, and why (`python -m sim.mutants NAME` still runs them):
# - no_lease: since the POST's intent is recorded at the claim (hole 2's fix), the ambiguity
#   wait already keeps a second delivery from posting; the lease is redundant, not needed.
# - dead_letter_decides_outside_the_transaction: the window between the dead letter's read
#   and its write is one round trip; a task attached exactly then is too rare for the budget.
SURVIVORS: dict[str, Patch] = {
    "no_lease": no_lease,
    "dead_letter_decides_outside_the_transaction": dead_letter_decides_outside_the_transaction,
}


def hunt(
    mutant: Patch, seeds: range, faults: Callable[[int], dict[str, float]], requests: int = 8
) -> tuple[int, str] | None:
    """The first (seed, violation) with the mutant planted, or None if it survives."""
    with mutant():
        for seed in seeds:
            result = Simulation(seed, requests, faults=faults(seed)).run()
            if result.violation is not None:
                return seed, str(result.violation)
    return None


def main(argv: list[str] | None = None) -> int:
    """Plant each mutant, hunt it with CI's seeds, print what caught it."""
    parser = argparse.ArgumentParser(prog="python -m sim.mutants", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[*MUTANTS, *SURVIVORS, []], default=[])
    args = parser.parse_args(argv)
    survived = 0
    for name in args.names or list(MUTANTS):
        started = time.perf_counter()
        try:
            found = hunt({**MUTANTS, **SURVIVORS}[name], CI_SEEDS, ci_faults)
        except RuntimeError as error:
            print(f"{name}: skipped ({error})")
            continue
        took = time.perf_counter() - started
        if found is None:
            survived += 1
            print(f"{name}: SURVIVED {len(CI_SEEDS)} seeds ({took:.0f} s)")
        else:
            print(f"{name}: caught at seed {found[0]} ({took:.1f} s): {found[1][:150]}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())
