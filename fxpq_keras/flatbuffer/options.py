"""Custom ops of the `fxp` target and their FlexBuffers options (docs/format.md section 4).

OPTION_KEYS is the single list of keys per op: the writer emits exactly these, the reader
requires exactly these, and the test that checks docs/format.md reads the same table.
"""

from __future__ import annotations

from flatbuffers import flexbuffers

from .errors import FlatbufferFormatError

# format_version of the fxpq metadata (docs/format.md section 5). 2: every weight width 2..16
# bit-packed in UINT8 (version 1 stored 9..16-bit weights as INT16; readers refuse it by name).
# 3: the same tensors and ops; the metadata is one zlib-compressed JSON entry named METADATA_NAME
# (version 2's plain-JSON entries fxpq_graph / fxpq_policy / fxpq_version are still read).
# 4: the weighted ops carry `in_bits`, the input format's width, so engines that know only the
# storage type (the TFLM glue) pick the same kernel path as the runner (a 13-bit unsigned input in
# uint16 runs the int16 lanes); files without it (versions 2, 3) run at the storage width.
FORMAT_VERSION = 4
READABLE_VERSIONS = (2, 3, 4)
METADATA_NAME = "fxpq"

_CONV = ("acc_bits", "act_max", "act_min", "activation", "bias_bits", "bias_frac", "dilation_h", "dilation_w",
         "filter_h", "filter_w", "in_bits", "in_frac", "out_frac", "pad_bottom", "pad_left", "pad_right", "pad_top",
         "padding", "stride_h", "stride_w", "weight_bits")
_POOL = ("act_max", "act_min", "activation", "filter_h", "filter_w", "in_frac", "out_frac", "pad_bottom",
         "pad_left", "pad_right", "pad_top", "padding", "stride_h", "stride_w")

# custom op name -> (integer-graph op, option keys in FlexBuffers' sorted order)
CUSTOM_OPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "FXP_QUANTIZE": ("quantize", ("act_max", "act_min", "out_frac")),
    "FXP_CONV_2D": ("conv2d", _CONV),
    "FXP_DEPTHWISE_CONV_2D": ("depthwise_conv2d", tuple(sorted(_CONV + ("depth_multiplier",)))),
    "FXP_FULLY_CONNECTED": ("fully_connected", ("acc_bits", "act_max", "act_min", "activation", "bias_bits",
                                                "bias_frac", "in_bits", "in_frac", "out_frac",
                                                "weight_bits")),
    "FXP_ADD": ("add", ("act_max", "act_min", "activation", "in1_frac", "in2_frac", "out_frac")),
    "FXP_MAX_POOL_2D": ("max_pool2d", _POOL),
    "FXP_AVERAGE_POOL_2D": ("average_pool2d", _POOL),
    "FXP_GLOBAL_AVERAGE_POOL_2D": ("global_average_pool2d", ("act_max", "act_min", "in_frac", "out_frac")),
    "FXP_REQUANTIZE": ("requantize", ("act_max", "act_min", "activation", "in_frac", "out_frac")),
    "FXP_CONCATENATION": ("concat", ("act_max", "act_min", "in1_frac", "in2_frac", "out_frac")),
    "FXP_LEAKY_RELU": ("leaky_relu", ("act_max", "act_min", "alpha_shift", "in_frac", "out_frac")),
    "FXP_PAD": ("pad", ("act_max", "act_min", "in_frac", "out_frac", "pad_bottom", "pad_left", "pad_right",
                        "pad_top")),
}
OP_TO_CUSTOM = {op: name for name, (op, _) in CUSTOM_OPS.items()}
OPTION_KEYS = {name: keys for name, (_, keys) in CUSTOM_OPS.items()}
# Keys a file of an older format version may lack (the writer always emits them): `in_bits` is new
# in version 4. An absent key means "the storage type's width" (docs/format.md section 4).
OPTIONAL_KEYS = frozenset({"in_bits"})

# Range of every option value (docs/format.md section 4): the same table as the C reader's
# (tflm_kernels/src/options/fxpq_options.c, K_* macros; a test holds the two together).
_FRAC, _DIM, _PAD, _ACT = (-32, 32), (1, 65535), (0, 65535), (-32768, 65535)
OPTION_RANGES: dict[str, tuple[int, int]] = {
    "acc_bits": (32, 64), "act_max": _ACT, "act_min": _ACT, "activation": (0, 3), "alpha_shift": (1, 31),
    "bias_bits": (0, 32),
    "bias_frac": _FRAC, "depth_multiplier": _DIM, "dilation_h": _DIM, "dilation_w": _DIM, "filter_h": _DIM,
    "filter_w": _DIM, "in_bits": (2, 16), "in1_frac": _FRAC, "in2_frac": _FRAC, "in_frac": _FRAC, "out_frac": _FRAC,
    "pad_bottom": _PAD, "pad_left": _PAD, "pad_right": _PAD, "pad_top": _PAD, "padding": (0, 1),
    "stride_h": _DIM, "stride_w": _DIM, "weight_bits": (2, 16),
}

# TFLite's codes, reused so Netron users recognise them.
ACTIVATION_CODES = {None: 0, "relu": 1, "relu6": 3}
ACTIVATION_NAMES = {0: None, 1: "relu", 3: "relu6"}
PADDING_CODES = {"same": 0, "valid": 1}
PADDING_NAMES = {0: "same", 1: "valid"}

for _keys in OPTION_KEYS.values():
    assert list(_keys) == sorted(_keys), _keys


def encode_options(custom: str, values: dict[str, int]) -> bytes:
    """A FlexBuffers map of exactly the op's keys, every value a signed int."""
    keys = OPTION_KEYS[custom]
    if set(values) != set(keys):
        raise AssertionError(f"{custom}: options {sorted(values)} != {list(keys)}")
    builder = flexbuffers.Builder()
    with builder.Map():
        for key in keys:
            builder.Int(key, int(values[key]))
    return bytes(builder.Finish())


def decode_options(custom: str, blob: bytes, where: str) -> dict[str, int]:
    """Parse and check an op's options; any problem is a FlatbufferFormatError naming `where`.

    The keys are the op's OPTION_KEYS, or those without OPTIONAL_KEYS (files of older versions);
    an absent optional key is absent from the result too."""
    keys = OPTION_KEYS[custom]
    if not blob:
        raise FlatbufferFormatError(f"{where}: {custom} has no custom options")
    try:
        root = flexbuffers.GetRoot(bytes(blob))
        if not root.IsMap:
            raise FlatbufferFormatError(f"{where}: {custom} custom options are not a FlexBuffers map")
        fmap = root.AsMap
        got = [k.AsKey for k in fmap.Keys]
        values = list(fmap.Values)
        if got != list(keys) and got != [k for k in keys if k not in OPTIONAL_KEYS]:
            raise FlatbufferFormatError(f"{where}: {custom} option keys {got} differ from the expected {list(keys)}")
        if len(values) != len(got):
            raise FlatbufferFormatError(f"{where}: {custom} options have {len(got)} keys but {len(values)} values "
                                        "(corrupted map)")
        out = {}
        for key, v in zip(got, values):
            if not v.IsInt:
                raise FlatbufferFormatError(f"{where}: {custom} option {key!r} is not an integer")
            out[key] = int(v.AsInt)
            lo, hi = OPTION_RANGES[key]
            if not lo <= out[key] <= hi:
                raise FlatbufferFormatError(f"{where}: {custom} option {key} = {out[key]} outside {lo}..{hi}")
        _check_option_rules(custom, out, where)
        return out
    except FlatbufferFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parse failure of foreign bytes is a format error
        raise FlatbufferFormatError(f"{where}: {custom} custom options are malformed "
                                    f"({type(exc).__name__}: {exc})") from None


def _check_option_rules(custom: str, opts: dict[str, int], where: str) -> None:
    """The cross-field rules of format.md section 4 (the C reader's, in the same order)."""
    problem = None
    if opts.get("act_min", 0) > opts.get("act_max", 0):
        problem = f"act_min {opts['act_min']} > act_max {opts['act_max']}"
    elif opts.get("activation") == 2:
        problem = "activation 2 (relu_n1_to_1) is not supported (0 none, 1 relu, 3 relu6)"
    elif "acc_bits" in opts and opts["acc_bits"] not in (32, 64):
        problem = f"acc_bits {opts['acc_bits']} is not 32 or 64"
    elif opts.get("bias_bits") == 1:
        problem = "bias_bits 1 (0 for no bias, else 2..32)"
    elif opts.get("bias_bits") == 0 and opts.get("bias_frac", 0) != 0:
        problem = f"bias_frac {opts['bias_frac']} without a bias (bias_bits 0)"
    if problem:
        raise FlatbufferFormatError(f"{where}: {custom} option {problem}")
