"""The few tfplugin5 messages the schema provider sends, encoded by hand.

Field numbers are those of Terraform's plugin protocol 5.2 (docs/plugin-protocol/tfplugin5.2.proto
in hashicorp/terraform): Schema.Block, Schema.Attribute, Schema.NestedBlock, Schema and
GetProviderSchema.Response. Everything else we answer is an empty message or echoes the request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

_VARINT, _LENGTH_DELIMITED = 0, 2
NESTING_LIST = 2


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _tag(number, _LENGTH_DELIMITED) + _varint(len(payload)) + payload


def _string(number: int, text: str) -> bytes:
    return _length_delimited(number, text.encode()) if text else b""


def _uint(number: int, value: int) -> bytes:
    return _tag(number, _VARINT) + _varint(value) if value else b""


@dataclass
class Attribute:
    """Schema.Attribute: name=1 type=2 required=4 optional=5 computed=6."""

    name: str
    type: Any
    required: bool = False
    optional: bool = False
    computed: bool = False

    def encode(self) -> bytes:
        """The message bytes."""
        cty_type = json.dumps(self.type, separators=(",", ":")).encode()
        return (
            _string(1, self.name)
            + _length_delimited(2, cty_type)
            + _uint(4, self.required)
            + _uint(5, self.optional)
            + _uint(6, self.computed)
        )


@dataclass
class Block:
    """Schema.Block: attributes=2 block_types=3."""

    attributes: list[Attribute] = field(default_factory=list)
    block_types: list[NestedBlock] = field(default_factory=list)

    def encode(self) -> bytes:
        """The message bytes."""
        return b"".join(
            [_length_delimited(2, attribute.encode()) for attribute in self.attributes]
            + [_length_delimited(3, nested.encode()) for nested in self.block_types]
        )


@dataclass
class NestedBlock:
    """Schema.NestedBlock: type_name=1 block=2 nesting=3 min_items=4 max_items=5 (0: no limit)."""

    type_name: str
    block: Block
    min_items: int = 0
    max_items: int = 0

    def encode(self) -> bytes:
        """The message bytes (always LIST nesting, as the SDK the provider uses serves blocks)."""
        return (
            _string(1, self.type_name)
            + _length_delimited(2, self.block.encode())
            + _uint(3, NESTING_LIST)
            + _uint(4, self.min_items)
            + _uint(5, self.max_items)
        )


def _schema(block: Block) -> bytes:
    """Schema: version=1 (0) block=2."""
    return _length_delimited(2, block.encode())


def _map_entry(number: int, key: str, block: Block) -> bytes:
    return _length_delimited(number, _string(1, key) + _length_delimited(2, _schema(block)))


def provider_schema_response(
    provider: Block, resources: dict[str, Block], data_sources: dict[str, Block]
) -> bytes:
    """GetProviderSchema.Response: provider=1 resource_schemas=2 data_source_schemas=3."""
    return b"".join(
        [_length_delimited(1, _schema(provider))]
        + [_map_entry(2, name, block) for name, block in sorted(resources.items())]
        + [_map_entry(3, name, block) for name, block in sorted(data_sources.items())]
    )


def echo_prepared_config(request: bytes) -> bytes:
    """PrepareProviderConfig.Response from its Request: prepared_config=1 is the request's config=1.

    Both messages hold one DynamicValue as field 1, so the request bytes are the answer.
    """
    return request
