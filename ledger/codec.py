"""The stored events' JSON, written and read by orjson instead of the json module.

The bytes are eventsourcing's own format (``{"_type_": "datetime_iso", "_data_":
...}`` for datetimes, dates and UUIDs; compact separators; UTF-8): a store
written by either transcoder reads with the other, and eventsourcing's own
readers keep working. orjson encodes UUIDs and datetimes natively, in a
different shape, so those values are tagged first by one flat walk (event
states are flat dicts, with the odd nested one).

Measured on the ingest benchmark's events (py-spy, PostgreSQL): the json
module's encoder with its ``default`` hook was ~10% of an append and its
decoder with ``object_hook`` ~16% of a rebuild.

``LedgerMapper`` writes the ledger's own events in one pass over their fields,
without the copy, the pops and the per-value dispatch of eventsourcing's
``Mapper.to_stored_event``: the same bytes, ~4% less CPU a bulk append
(alternated, README "Performance").
"""

from __future__ import annotations

from typing import Any

import orjson
from eventsourcing.persistence import JSONTranscoder, Mapper, StoredEvent
from eventsourcing.utils import get_topic

from leadledger.events import DOMAIN_EVENT_CLASSES

_PLAIN = frozenset({str, int, bool, type(None)})


class FastJSONTranscoder(JSONTranscoder):
    """eventsourcing's JSONTranscoder, byte for byte, at orjson's speed."""

    def encode(self, obj: Any) -> bytes:
        try:
            if type(obj) is dict:  # an event's state: one flat pass, nested values recurse
                tag, plain = self._tag, _PLAIN
                return orjson.dumps({key: value if type(value) in plain else tag(value)
                                     for key, value in obj.items()})
            return orjson.dumps(self._tag(obj))
        except (orjson.JSONEncodeError, TypeError):
            # Integers past 64 bits, lone surrogates, unregistered types: the
            # json module says what eventsourcing would have said.
            return super().encode(obj)

    def decode(self, data: bytes) -> Any:
        try:
            obj = orjson.loads(data)
            if type(obj) is dict:  # an event's state: only nested values need a look
                untag, names = self._untag, self.names
                for key, value in obj.items():
                    kind = type(value)
                    if kind is dict:
                        # The common tagged scalar (a datetime, a UUID, a date), inline.
                        inner = value.get("_data_")
                        transcoding = names.get(value.get("_type_")) if type(inner) is str else None
                        obj[key] = (transcoding.decode(inner) if transcoding is not None and len(value) == 2
                                    else untag(value))
                    elif kind is list or kind is float:
                        obj[key] = untag(value)
                return obj
            return self._untag(obj)
        except (orjson.JSONDecodeError, _NotExact):
            return super().decode(data)

    def _tag(self, value: Any) -> Any:
        kind = type(value)
        if kind in _PLAIN:
            return value
        transcoding = self.types.get(kind)
        if transcoding is None:
            if kind is float:  # orjson writes 1e16 where json writes 1e+16: json's bytes
                raise TypeError("float")
            if isinstance(value, dict):
                return {key: self._tag(item) for key, item in value.items()}
            if isinstance(value, (list, tuple)):
                return [self._tag(item) for item in value]
            return value  # orjson raises; encode() falls back to say why
        return {"_type_": transcoding.name, "_data_": self._tag(transcoding.encode(value))}

    def _untag(self, value: Any) -> Any:
        kind = type(value)
        if kind is dict:
            if len(value) == 2 and "_type_" in value and "_data_" in value:
                return self._decode_obj({"_type_": value["_type_"], "_data_": self._untag(value["_data_"])})
            return {key: self._untag(item) for key, item in value.items()}
        if kind is list:
            return [self._untag(item) for item in value]
        if kind is float:
            # orjson reads an integer past 64 bits as a float: the json module
            # reads every number exactly (the ledger stores no floats anyway).
            raise _NotExact
        return value


class _NotExact(Exception):
    pass


class LedgerMapper(Mapper):
    """eventsourcing's Mapper; the ledger's own events are written by one pass over
    their fields (``encode_event``), the bytes its ``to_stored_event`` writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The classes written by the fast pass: neither compressed nor encrypted,
        # with this module's transcoder (its transcodings write the tagged values),
        # no class_version.
        fast = (self.compressor is None and self.cipher is None
                and isinstance(self.transcoder, FastJSONTranscoder))
        self._topics = {cls: get_topic(cls) for cls in DOMAIN_EVENT_CLASSES.values()
                        if fast and getattr(cls, "class_version", 1) == 1}

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        topic = self._topics.get(type(domain_event))
        if topic is not None:
            state = encode_event(vars(domain_event), self.transcoder)
            if state is not None:
                stored = object.__new__(StoredEvent)  # a frozen dataclass: its fields, set at once
                object.__setattr__(stored, "__dict__", {
                    "originator_id": domain_event.originator_id,
                    "originator_version": domain_event.originator_version, "topic": topic, "state": state})
                return stored
        return super().to_stored_event(domain_event)


def encode_event(fields: dict[str, Any], transcoder: FastJSONTranscoder) -> bytes | None:
    """An event's stored state: its fields but the id and version, in order, each
    tagged scalar written inline by its registered transcoding (what the
    transcoder's ``_tag`` does, without its dispatch). None when a value needs the
    transcoder's slow path (an integer past 64 bits, a lone surrogate, a float):
    the caller takes it."""
    state: dict[str, Any] = {}
    plain, types = _PLAIN, transcoder.types
    try:
        for key, value in fields.items():
            kind = type(value)
            if kind in plain:
                state[key] = value
            elif (transcoding := types.get(kind)) is not None:
                data = transcoding.encode(value)
                state[key] = {"_type_": transcoding.name,
                              "_data_": data if type(data) in plain else transcoder._tag(data)}
            else:
                state[key] = transcoder._tag(value)
        del state["originator_id"], state["originator_version"]
        return orjson.dumps(state)
    except (orjson.JSONEncodeError, TypeError):
        return None
