"""Annotation-format readers and writers.

Each reader is ``read_<format>(src, **options) -> ReadResult`` and yields
format-neutral :class:`~spinekit.io.shapes.SourceItem` objects. The table of
formats lives in :mod:`spinekit.data.ingest` (``FORMATS``).
"""
