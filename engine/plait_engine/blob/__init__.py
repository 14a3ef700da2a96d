"""Blobs: large payloads, process-target files and offloaded literals, under one root."""

from plait_engine.blob.data import DataRef, DataStore, parse_uri
from plait_engine.blob.local import BlobStore
from plait_engine.blob.payloads import Payloads, PendingBlob

__all__ = ["BlobStore", "DataRef", "DataStore", "Payloads", "PendingBlob", "parse_uri"]
