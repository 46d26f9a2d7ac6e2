"""Cloud Storage in memory: generations, preconditions, listings; the subset the bundle uses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from google.api_core import exceptions

from sim.world import World

STORAGE_DEADLINE = 60.0


class StoredObject:
    """One generation of an object."""

    def __init__(
        self, data: bytes, generation: int, content_type: str | None, metadata: dict[str, str]
    ) -> None:
        self.data = data
        self.generation = generation
        self.content_type = content_type
        self.metadata = metadata


class Storage:
    """Buckets of objects; every successful write gets a new, increasing generation."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.buckets: dict[str, dict[str, StoredObject]] = {}
        self.next_generation = 1_700_000_000_000_000
        # Called with (bucket, name, generation) for every object written.
        self.on_write: list[Callable[[str, str, int], None]] = []

    def write(
        self,
        bucket: str,
        name: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
        if_generation_match: int | None = None,
    ) -> StoredObject:
        """Write an object, honouring `if_generation_match` (0: only if absent)."""
        objects = self.buckets.setdefault(bucket, {})
        current = objects.get(name)
        if if_generation_match is not None:
            live = current.generation if current is not None else 0
            if live != if_generation_match:
                raise exceptions.PreconditionFailed(f"simulated: {name} precondition failed")
        self.next_generation += self.world.rng.randint(1, 1000)
        stored = StoredObject(data, self.next_generation, content_type, dict(metadata or {}))
        objects[name] = stored
        for hook in self.on_write:
            hook(bucket, name, stored.generation)
        return stored

    def client(self) -> StorageClient:
        """A client for the bundle."""
        return StorageClient(self)


class StorageClient:
    """`google.cloud.storage.Client`, the part the bundle uses."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def bucket(self, name: str) -> Bucket:
        """A bucket handle."""
        return Bucket(self.storage, name)


class Bucket:
    """A bucket handle."""

    def __init__(self, storage: Storage, name: str) -> None:
        self.storage = storage
        self.name = name

    def _io(self) -> None:
        world = self.storage.world
        if not world.call(STORAGE_DEADLINE):
            raise exceptions.GatewayTimeout("simulated: storage call timed out")
        if world.fault("gcs_fails"):
            raise exceptions.ServiceUnavailable("simulated: storage unavailable")

    def blob(self, name: str) -> Blob:
        """A handle for writing."""
        return Blob(self, name, None)

    def get_blob(self, name: str, generation: int | None = None) -> Blob | None:
        """The live object (or exactly `generation` if it is still live), or None."""
        self._io()
        stored = self.storage.buckets.get(self.name, {}).get(name)
        if stored is None or (generation is not None and stored.generation != generation):
            return None
        return Blob(self, name, stored)

    def list_blobs(self, prefix: str = "", max_results: int | None = None) -> Iterator[Blob]:
        """Live objects under `prefix`, in name order."""
        self._io()
        objects = self.storage.buckets.get(self.name, {})
        names = sorted(n for n in objects if n.startswith(prefix))
        if max_results is not None:
            names = names[:max_results]
        return iter([Blob(self, n, objects[n]) for n in names])


class Blob:
    """An object handle (bound to one generation once read)."""

    def __init__(self, bucket: Bucket, name: str, stored: StoredObject | None) -> None:
        self.bucket = bucket
        self.name = name
        self._stored = stored
        self.cache_control: str | None = None
        self.metadata: dict[str, str] | None = dict(stored.metadata) if stored else None
        self.content_type = stored.content_type if stored else None
        self.generation = stored.generation if stored else None
        self.size = len(stored.data) if stored else None

    def _live(self, if_generation_match: int | None) -> StoredObject:
        self.bucket._io()
        stored = self.bucket.storage.buckets.get(self.bucket.name, {}).get(self.name)
        if stored is None:
            raise exceptions.NotFound(f"simulated: {self.name}")
        if if_generation_match is not None and stored.generation != if_generation_match:
            raise exceptions.PreconditionFailed(f"simulated: {self.name} changed")
        return stored

    def download_as_bytes(self, if_generation_match: int | None = None) -> bytes:
        """The bytes of the live generation."""
        return self._live(if_generation_match).data

    def download_to_filename(self, path: str, if_generation_match: int | None = None) -> None:
        """Write the bytes of the live generation to a local file."""
        data = self._live(if_generation_match).data
        with open(path, "wb") as sink:
            sink.write(data)

    def download_to_file(self, sink: Any, if_generation_match: int | None = None) -> None:
        """Stream the bytes into `sink`."""
        sink.write(self._live(if_generation_match).data)

    def upload_from_string(
        self, data: bytes, content_type: str | None = None, if_generation_match: int | None = None
    ) -> None:
        """Write a new generation."""
        self.bucket._io()
        stored = self.bucket.storage.write(
            self.bucket.name,
            self.name,
            data,
            content_type=content_type,
            metadata=self.metadata,
            if_generation_match=if_generation_match,
        )
        self.generation = stored.generation
        self.size = len(data)

    def delete(self, if_generation_match: int | None = None) -> None:
        """Delete the live generation."""
        self._live(if_generation_match)
        del self.bucket.storage.buckets[self.bucket.name][self.name]
