"""Firestore in memory, with production's semantics on a bad day.

The real `firestore.transactional` decorator drives these transactions, so its retry loop
(five attempts, ABORTED only) is production's. What the server side does here:
- optimistic read-write transactions: every document a transaction read is checked at
  commit; if another commit changed it since, the commit fails with ABORTED;
- atomic commits; `create` refuses an existing document (ALREADY_EXISTS);
- production's data limits, checked on every write (INVALID_ARGUMENT): document ids,
  `__.*__` field names, arrays directly inside arrays, maps nested deeper than 20,
  documents over 1 MiB, more than 40,000 index entries;
- faults: a read fails (UNAVAILABLE), a commit fails before applying (UNAVAILABLE), a commit
  applies but its answer is lost (DEADLINE_EXCEEDED), a stall longer than a deadline.
Values are copied on the way in and out, so no caller can alias stored state.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from google.api_core import exceptions

from local_stack.terraform_exemptions import (
    query_refusal,
    terraform_composite_indexes,
    terraform_index_exemptions,
)
from sim.world import World

MAX_DOCUMENT_BYTES = 1_048_576
MAX_MAP_DEPTH = 20
MAX_INDEX_ENTRIES = 40_000
FIRESTORE_DEADLINE = 60.0
_RESERVED_NAME = re.compile(r"^__.*__$")

Path = tuple[str, ...]


def copy_value(value: Any) -> Any:
    """A deep copy of a Firestore value (dicts, lists, scalars, datetimes)."""
    kind = type(value)
    if kind is dict:
        return {k: copy_value(v) if type(v) in _CONTAINERS else v for k, v in value.items()}
    if kind is list or kind is tuple:
        return [copy_value(v) if type(v) in _CONTAINERS else v for v in value]
    return value


_CONTAINERS = frozenset({dict, list, tuple})


class Server:
    """The database: documents by path, each with a version bumped on every write."""

    def __init__(
        self,
        world: World,
        *,
        index_exempt: frozenset[str] = frozenset(),
        indexes: tuple[dict[str, Any], ...] = (),
    ) -> None:
        self.world = world
        self.collections: dict[Path, dict[str, tuple[int, dict[str, Any]]]] = {}
        self.version = 0
        self.index_exempt = index_exempt
        # Queries production would refuse (an exempt field, a composite index Terraform
        # does not declare) are refused here too: FAILED_PRECONDITION.
        self.exempt_pairs = frozenset(
            tuple(item.split(".", 1)) for item in index_exempt if "." in item
        )
        self.indexes = list(indexes)
        # Billed reads: one per document read or returned, one per 1,000 aggregated.
        self.reads = 0
        # Called with (path, before, after, size) for every document a commit changes.
        self.on_write: list[
            Callable[[Path, dict[str, Any] | None, dict[str, Any] | None, int], None]
        ]
        self.on_write = []
        # Called with (path, error) when production would refuse a write (its data limits).
        self.on_refused: Callable[[Path, Exception], None] | None = None
        self.commits = 0

    def lookup(self, path: Path) -> tuple[int, dict[str, Any] | None]:
        """(version, data) of a document; version 0 and None when it does not exist."""
        found = self.collections.get(path[:-1], {}).get(path[-1])
        return (0, None) if found is None else found

    def documents(self, collection: Path) -> Iterator[tuple[str, dict[str, Any]]]:
        """(id, data) of every document of a collection, in id order (as Firestore lists)."""
        docs = self.collections.get(collection, {})
        for doc_id in sorted(docs):
            yield doc_id, docs[doc_id][1]

    def commit(self, reads: dict[Path, int], writes: list[tuple[str, Path, Any]]) -> None:
        """Apply writes atomically if nothing read changed since; raise like the real server."""
        world = self.world
        if not world.call(FIRESTORE_DEADLINE):
            if world.rng.random() < 0.5:
                world.note(None, "Firestore commit stalls past its deadline, not applied")
                raise exceptions.DeadlineExceeded("simulated: commit timed out")
            answer_lost = True
        else:
            answer_lost = world.fault("fs_commit_answer_lost")
        if world.fault("fs_commit_fails"):
            world.note(None, "Firestore commit fails before applying (UNAVAILABLE)")
            raise exceptions.ServiceUnavailable("simulated: commit failed before applying")
        for path, seen in reads.items():
            if self.lookup(path)[0] != seen:
                world.note(None, f"Firestore commit ABORTED: {'/'.join(path)} changed")
                raise exceptions.Aborted("simulated: transaction conflict")
        staged: dict[Path, dict[str, Any] | None] = {}
        sizes: dict[Path, int] = {}
        for kind, path, data in writes:
            exists = (
                (staged[path] is not None) if path in staged else self.lookup(path)[1] is not None
            )
            if kind == "create" and exists:
                raise exceptions.Conflict(f"simulated ALREADY_EXISTS: {'/'.join(path)}")
            if kind == "delete":
                staged[path] = None
                continue
            try:
                sizes[path] = _check_document(path, data, self.index_exempt)
            except exceptions.InvalidArgument as error:
                if self.on_refused is not None:
                    self.on_refused(path, error)
                raise
            staged[path] = data
        self.version += 1
        self.commits += 1
        for path, data in staged.items():
            before = self.lookup(path)[1]
            docs = self.collections.setdefault(path[:-1], {})
            if data is None:
                docs.pop(path[-1], None)
            else:
                docs[path[-1]] = (self.version, data)
            for hook in self.on_write:
                hook(path, before, data, sizes.get(path, 0))
        if answer_lost:
            world.note(None, "Firestore commit applied, answer lost (DEADLINE_EXCEEDED)")
            raise exceptions.DeadlineExceeded("simulated: commit applied, answer lost")

    def read(self, path: Path) -> tuple[int, dict[str, Any] | None]:
        """A document read over the network (may fail)."""
        world = self.world
        if not world.call(FIRESTORE_DEADLINE):
            raise exceptions.DeadlineExceeded("simulated: read timed out")
        if world.fault("fs_read_fails"):
            raise exceptions.ServiceUnavailable("simulated: read failed")
        self.reads += 1
        return self.lookup(path)


# ---- the client surface the task store uses -----------------------------------------------


class Client:
    """The subset of `google.cloud.firestore.Client` the bundle uses."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def collection(self, name: str) -> CollectionReference:
        """A top-level collection."""
        return CollectionReference(self.server, (name,))

    def transaction(self, max_attempts: int = 5) -> Transaction:
        """A read-write transaction for `firestore.transactional`."""
        return Transaction(self.server, max_attempts)

    def batch(self) -> WriteBatch:
        """A write batch (one atomic commit, no reads)."""
        return WriteBatch(self.server)


class Snapshot:
    """A document snapshot."""

    def __init__(self, reference: DocumentReference, data: dict[str, Any] | None) -> None:
        self.reference = reference
        self.id = reference.id
        self._data = data

    @property
    def exists(self) -> bool:
        """Whether the document existed when read."""
        return self._data is not None

    def to_dict(self) -> dict[str, Any] | None:
        """A copy of the data, or None."""
        return None if self._data is None else copy_value(self._data)

    def get(self, field: str) -> Any:
        """One top-level field."""
        if self._data is None:
            raise KeyError(field)
        return copy_value(self._data[field])


class DocumentReference:
    """A document path."""

    def __init__(self, server: Server, path: Path) -> None:
        self.server = server
        self.path = path
        self.id = path[-1]

    def collection(self, name: str) -> CollectionReference:
        """A subcollection."""
        return CollectionReference(self.server, (*self.path, name))

    def get(self, transaction: Transaction | None = None) -> Snapshot:
        """Read the document (inside `transaction` when given: the commit checks it)."""
        version, data = self.server.read(self.path)
        if transaction is not None:
            transaction._reads.setdefault(self.path, version)
        return Snapshot(self, data)


class Query:
    """Filters, order, cursor and limit over one collection (strongly consistent)."""

    def __init__(
        self,
        server: Server,
        collection: Path,
        filters: tuple[tuple[str, str, Any], ...] = (),
        order: str | None = None,
        after: Any = None,
        limit_to: int | None = None,
    ) -> None:
        self.server = server
        self.collection_path = collection
        self.filters = filters
        self.order = order
        self.after = after
        self.limit_to = limit_to

    def _with(self, **changes: Any) -> Query:
        fields = {
            "filters": self.filters,
            "order": self.order,
            "after": self.after,
            "limit_to": self.limit_to,
        }
        fields.update(changes)
        return Query(self.server, self.collection_path, **fields)

    def where(self, *, filter: Any) -> Query:
        """Add a FieldFilter."""
        return self._with(
            filters=(*self.filters, (filter.field_path, filter.op_string, filter.value))
        )

    def order_by(self, field: str) -> Query:
        """Ascending order on one field."""
        return self._with(order=field)

    def start_after(self, cursor: dict[str, Any]) -> Query:
        """Resume after a value of the order field."""
        return self._with(after=cursor[self.order] if self.order else None)

    def limit(self, count: int) -> Query:
        """At most `count` results."""
        return self._with(limit_to=count)

    def stream(self) -> Iterator[Snapshot]:
        """Run the query (one network round trip)."""
        if not self.server.world.call(FIRESTORE_DEADLINE):
            raise exceptions.DeadlineExceeded("simulated: query timed out")
        if self.server.world.fault("fs_read_fails"):
            raise exceptions.ServiceUnavailable("simulated: query failed")
        found = self._run()
        self.server.reads += max(1, len(found))
        return iter(
            [
                Snapshot(DocumentReference(self.server, (*self.collection_path, doc_id)), data)
                for doc_id, data in found
            ]
        )

    def sum(self, field: str, alias: str | None = None) -> AggregationQuery:
        """A `sum` aggregation over the query's results."""
        return AggregationQuery(self, ((field, alias or field),))

    def _run(self) -> list[tuple[str, dict[str, Any]]]:
        orders = [(self.order, "ASCENDING")] if self.order else []
        refusal = query_refusal(
            self.collection_path[-1],
            [(f, op) for f, op, _ in self.filters],
            orders,
            self.server.exempt_pairs,
            self.server.indexes,
        )
        if refusal is not None:
            raise exceptions.FailedPrecondition(f"simulated: {refusal}")
        found = []
        for doc_id, data in self.server.documents(self.collection_path):
            if all(_matches(data, f, op, v) for f, op, v in self.filters):
                if self.order is not None and self.order not in data:
                    continue
                found.append((doc_id, data))
        if self.order is not None:
            found.sort(key=lambda item: (item[1][self.order], item[0]))
            if self.after is not None:
                found = [item for item in found if item[1][self.order] > self.after]
        if self.limit_to is not None:
            found = found[: self.limit_to]
        return found


class AggregationResult:
    """One aggregated value, as the client library names it."""

    def __init__(self, alias: str, value: Any) -> None:
        self.alias = alias
        self.value = value


class AggregationQuery:
    """`sum` aggregations over a query (one round trip, one read per 1,000 documents)."""

    def __init__(self, query: Query, sums: tuple[tuple[str, str], ...]) -> None:
        self.query = query
        self.sums = sums

    def sum(self, field: str, alias: str | None = None) -> AggregationQuery:
        """One more sum."""
        return AggregationQuery(self.query, (*self.sums, (field, alias or field)))

    def get(self, transaction: Any = None) -> list[list[AggregationResult]]:
        """Run it: `[[result, ...]]` as the client library answers."""
        server = self.query.server
        if not server.world.call(FIRESTORE_DEADLINE):
            raise exceptions.DeadlineExceeded("simulated: aggregation timed out")
        if server.world.fault("fs_read_fails"):
            raise exceptions.ServiceUnavailable("simulated: aggregation failed")
        found = self.query._run()
        server.reads += max(1, -(-len(found) // 1000))
        return [
            [
                AggregationResult(alias, sum(int(data.get(field) or 0) for _, data in found))
                for field, alias in self.sums
            ]
        ]


class CollectionReference(Query):
    """A collection: documents and queries."""

    def __init__(self, server: Server, path: Path) -> None:
        super().__init__(server, path)

    def document(self, doc_id: str) -> DocumentReference:
        """A document of this collection."""
        return DocumentReference(self.server, (*self.collection_path, doc_id))


def _matches(data: dict[str, Any], field: str, op: str, value: Any) -> bool:
    if field not in data:
        return False
    actual = data[field]
    if op == "==":
        return bool(actual == value)
    if op == "in":
        return actual in value
    if actual is None or type(actual) is not type(value):
        return False
    if op == "<":
        return bool(actual < value)
    if op == "<=":
        return bool(actual <= value)
    if op == ">":
        return bool(actual > value)
    raise NotImplementedError(op)


class WriteBatch:
    """Writes committed together, without reads."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.writes: list[tuple[str, Path, Any]] = []

    def delete(self, reference: DocumentReference) -> None:
        """Delete a document (no error if missing)."""
        self.writes.append(("delete", reference.path, None))

    def set(self, reference: DocumentReference, data: dict[str, Any]) -> None:
        """Replace a document."""
        self.writes.append(("set", reference.path, copy_value(data)))

    def commit(self) -> None:
        """Apply atomically."""
        self.server.commit({}, self.writes)


class Transaction:
    """What `firestore.transactional` needs from a transaction, and its writes."""

    def __init__(self, server: Server, max_attempts: int) -> None:
        self.server = server
        self._max_attempts = max_attempts
        self._read_only = False
        self._id: bytes | None = None
        self._reads: dict[Path, int] = {}
        self._writes: list[tuple[str, Path, Any]] = []

    def _clean_up(self) -> None:
        self._id = None
        self._reads = {}
        self._writes = []

    def _begin(self, retry_id: bytes | None = None) -> None:
        self._id = b"sim"

    def _rollback(self) -> None:
        self._clean_up()

    def _commit(self) -> list[Any]:
        reads, writes = self._reads, self._writes
        self._clean_up()
        self.server.commit(reads, writes)
        return []

    def create(self, reference: DocumentReference, data: dict[str, Any]) -> None:
        """Create (the commit fails if the document exists)."""
        self._writes.append(("create", reference.path, copy_value(data)))

    def set(self, reference: DocumentReference, data: dict[str, Any]) -> None:
        """Replace the whole document (production's `set()`, no merge)."""
        self._writes.append(("set", reference.path, copy_value(data)))

    def delete(self, reference: DocumentReference) -> None:
        """Delete a document."""
        self._writes.append(("delete", reference.path, None))


# ---- production's data limits ---------------------------------------------------------------


def _check_document(path: Path, data: dict[str, Any], index_exempt: frozenset[str]) -> int:
    """Raise INVALID_ARGUMENT where production would refuse the write; return its size."""
    for segment in path:
        if (
            not segment
            or segment in (".", "..")
            or "/" in segment
            or _RESERVED_NAME.match(segment)
            or len(segment.encode()) > 1500
        ):
            raise exceptions.InvalidArgument(
                f"simulated: invalid document path segment {segment!r}"
            )
    name_bytes = sum(len(s.encode()) + 1 for s in path) + 16
    collection = path[-2]
    size = entries = 0
    for key, item in data.items():
        item_size, leaves = _value_size(key, item, 1, False)
        size += item_size
        if f"{collection}.{key}" not in index_exempt:
            entries += 2 * leaves
    total = name_bytes + size + 32
    if total > MAX_DOCUMENT_BYTES:
        raise exceptions.InvalidArgument(
            f"simulated: document {'/'.join(path)} is {total} bytes, more than {MAX_DOCUMENT_BYTES}"
        )
    if entries > MAX_INDEX_ENTRIES:
        raise exceptions.InvalidArgument(f"simulated: too many index entries ({entries})")
    return total


def document_size(path: Path, data: dict[str, Any]) -> int:
    """Firestore's storage size of a document (the 1 MiB limit counts this)."""
    name_bytes = sum(len(s.encode()) + 1 for s in path) + 16
    return name_bytes + sum(_value_size(k, v, 1, False)[0] for k, v in data.items()) + 32


def _value_size(key: str, value: Any, depth: int, in_array: bool) -> tuple[int, int]:
    """(bytes of the field name and value, leaf values), refusing what production refuses."""
    if not in_array:
        if type(key) is not str or not key or (key[:2] == "__" and key[-2:] == "__"):
            raise exceptions.InvalidArgument(f"simulated: invalid field name {key!r:.60}")
        size = len(key) + 1 if key.isascii() else len(key.encode()) + 1
    else:
        size = 0
    kind = type(value)
    if kind is str:
        return size + (len(value) if value.isascii() else len(value.encode())) + 1, 1
    if kind is dict:
        if depth > MAX_MAP_DEPTH:
            raise exceptions.InvalidArgument("simulated: maps nested more than 20 deep")
        leaves = 0
        for child, item in value.items():
            item_size, item_leaves = _value_size(child, item, depth + 1, False)
            size += item_size
            leaves += item_leaves
        return size, leaves
    if kind is list or kind is tuple:
        if in_array:
            raise exceptions.InvalidArgument("simulated: an array value cannot contain an array")
        leaves = 0
        for item in value:
            item_size, item_leaves = _value_size("", item, depth, True)
            size += item_size
            leaves += item_leaves
        return size, leaves
    if value is None or kind is bool:
        return size + 1, 1
    if kind is int or kind is float or isinstance(value, datetime):
        return size + 8, 1
    if kind is bytes:
        return size + len(value) + 1, 1
    raise exceptions.InvalidArgument(f"simulated: cannot store a {kind.__name__}")


@functools.cache
def terraform_index_exempt(tasks_collection: str) -> frozenset[str]:
    """`collection.field` pairs whose single-field index Terraform turns off: read by the
    local stack's reader of firestore.tf, so the simulator and the emulator see one set."""
    return frozenset(
        f"{item['collection']}.{item['field']}"
        for item in terraform_index_exemptions({"tasks_collection": tasks_collection})
    )


@functools.cache
def terraform_indexes(tasks_collection: str) -> tuple[dict[str, Any], ...]:
    """The composite indexes Terraform declares, read as the local stack reads them."""
    return tuple(terraform_composite_indexes({"tasks_collection": tasks_collection}))
