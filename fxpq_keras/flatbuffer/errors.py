"""Errors of the flatbuffer converter and reader (ValueError subclasses: the CLI prints them)."""

from __future__ import annotations


class FlatbufferFormatError(ValueError):
    """A file that is not a valid fxpq .tflite: malformed, truncated, foreign or inconsistent."""


class ExportError(ValueError):
    """A graph that the requested target cannot express; the message names the layers."""
