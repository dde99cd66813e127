"""Protobuf message classes built at import time from descriptors (no protoc needed)."""
