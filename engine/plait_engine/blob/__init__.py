"""Blobs: large payloads, process-target files and offloaded literals in one object store
(a local or shared folder, S3 or GCS; see `objects` for the contract)."""

from plait_engine.blob.data import DataRef, DataStore, parse_uri
from plait_engine.blob.local import LocalObjectStore
from plait_engine.blob.objects import (
    BadKey,
    ChecksumMismatch,
    ObjectNotFound,
    ObjectStore,
    ObjectWriter,
    Opened,
    check_key,
    join_key,
)
from plait_engine.blob.payloads import Payloads, PendingBlob
from plait_engine.blob.stores import open_object_store

__all__ = [
    "BadKey",
    "ChecksumMismatch",
    "DataRef",
    "DataStore",
    "LocalObjectStore",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectWriter",
    "Opened",
    "Payloads",
    "PendingBlob",
    "check_key",
    "join_key",
    "open_object_store",
    "parse_uri",
]
