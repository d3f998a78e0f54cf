"""The flatbuffer step of the pipeline: IntegerGraph <-> .tflite (docs/format.md)."""

from .c_array import export_c_array
from .errors import ExportError, FlatbufferFormatError
from .interpreter import ENGINES, Interpreter, register_engine
from .reader import FileInfo, read_bytes, read_tflite
from .writer import TARGETS, export_tflite

__all__ = ["ENGINES", "ExportError", "FileInfo", "FlatbufferFormatError", "Interpreter", "TARGETS",
           "export_c_array", "export_tflite", "read_bytes", "read_tflite", "register_engine"]
