"""Files of an older format version, made from a current export (tests only).

Format version 4 added `in_bits` to the weighted ops (docs/format.md section 4); a version-3 file is
the same file without that key and with format_version 3 in its metadata. Every engine must give a
version-3 file and its version-4 export the same outputs."""

from __future__ import annotations

import json
import zlib

import flatbuffers
import numpy as np
from flatbuffers import flexbuffers

from fxpq_keras.flatbuffer.options import CUSTOM_OPS, METADATA_NAME, OPTIONAL_KEYS, decode_options
from fxpq_keras.flatbuffer.schema import schema as S


def as_format_version_3(data: bytes) -> bytes:
    """`data` (an fxp file of format version 4) as format version 3 wrote it."""
    model = S.ModelT.InitFromObj(S.Model.GetRootAs(data, 0))
    codes = [(c.customCode or b"").decode() for c in model.operatorCodes]
    for op in model.subgraphs[0].operators:
        name = codes[op.opcodeIndex]
        if name not in CUSTOM_OPS:
            continue
        opts = decode_options(name, bytes(op.customOptions), name)
        fb = flexbuffers.Builder()
        with fb.Map():
            for key in sorted(k for k in opts if k not in OPTIONAL_KEYS):
                fb.Int(key, opts[key])
        op.customOptions = list(fb.Finish())
    for meta in model.metadata or []:
        if meta.name.decode() == METADATA_NAME:
            buf = model.buffers[meta.buffer]
            blob = json.loads(zlib.decompress(bytes(buf.data)))
            blob["format_version"] = 3
            text = json.dumps(blob, separators=(",", ":"), sort_keys=True).encode()
            buf.data = np.frombuffer(zlib.compress(text), np.uint8)
    b = flatbuffers.Builder(1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())
