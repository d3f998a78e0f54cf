"""Real TensorFlow Lite Micro, built from a source tree outside this repository.

``TFLM_DIR`` names a tflite-micro checkout. Its Makefile expects the third-party trees under
``tensorflow/lite/micro/tools/make/downloads/`` at the versions its download scripts pin; this
module reads those pins from the scripts (nothing is hard-coded per TFLM version) and prepares each
tree with ``git archive <pinned ref>`` from

* a sibling checkout (bare or not) found in ``TFLM_DEPS_DIR`` (colon-separated directories, each
  holding e.g. ``flatbuffers/``, ``CMSIS-NN/``, ``CMSIS_6/``), else
* a clone from github.com when the network allows,

then applies TFLM's own patches (flatbuffers, kissfft) and creates an empty ``downloads/pigweed``
(TFLM's Makefile only checks that it exists). Without ``TFLM_DIR`` it clones tflite-micro at
:data:`TFLM_COMMIT` into the cache when the network allows, else it stops with one line saying
how to set ``TFLM_DIR``.

Libraries (``libtensorflow-microlite.a``) are built with TFLM's own Makefile, niced, one per
variant (:data:`VARIANTS`: host reference kernels; Cortex-M4F / M7 with reference kernels and
with CMSIS-NN) and build type (:func:`build_type`: TFLM's ``BUILD_TYPE``, ``release_with_logs``
unless ``FXPQ_TFLM_BUILD_TYPE`` says otherwise), into ``$FXPQ_TFLM_CACHE`` (default
``~/.cache/fxpq/tflm``) under a key of the tree (commit, local changes, prepared downloads) and
the variant's make arguments (build type included), so every worktree and run shares one build per
tree, variant and build type. The two variants of one CPU share TFLM's core objects (compiled once,
hard links, :func:`_share_core_objects`). Next to each library a ``flags.mk`` records the exact
compiler, flags and include paths the library was built with; the fxpq glue and drivers
(``tflm_kernels/mk/tflm.mk``) are compiled with them.

    python -m fxpq_keras.kernels.tflm [--variants host,m4-cmsis,...] [--build-type default]
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TFLM_COMMIT", "TFLM_REPO", "VARIANTS", "BUILD_TYPES", "build_type", "TflmUnavailable", "TflmLibrary",
           "tflm_tree", "prepare_downloads", "build_library", "pinned_dependencies", "tflm_available", "HOW_TO_ENABLE"]

TFLM_REPO = "https://github.com/tensorflow/tflite-micro"
TFLM_COMMIT = "90b983c2b3f1480642e040bbd2ddb37b998f3424"  # 2026-08-20, the tree this project verified
MAKEFILE = "tensorflow/lite/micro/tools/make/Makefile"
DOWNLOADS = "tensorflow/lite/micro/tools/make/downloads"
HOW_TO_ENABLE = ("set TFLM_DIR=<tflite-micro checkout> (and TFLM_DEPS_DIR=<directory with its third-party "
                 "checkouts> when offline; docs/tflm.md section 6)")


class TflmUnavailable(RuntimeError):
    """No TFLM tree can be had (no TFLM_DIR and no network), or its third-party trees cannot."""


# downloads/<dir> <- GitHub repository (owner/name); found in TFLM's download scripts by URL
_DEP_DIRS = {
    "google/flatbuffers": "flatbuffers",
    "google/gemmlowp": "gemmlowp",
    "google/ruy": "ruy",
    "mborgerding/kissfft": "kissfft",
    "ARM-software/CMSIS_6": "cmsis",
    "ARM-software/Cortex_DFP": "cmsis/Cortex_DFP",
    "ARM-software/CMSIS-NN": "cmsis_nn",
}
# TFLM's patches, relative to the tree (applied by its download scripts after unpacking)
_PATCHES = {
    "flatbuffers": "tensorflow/lite/micro/tools/make/flatbuffers.patch",
    "kissfft": "third_party/kissfft/kissfft.patch",
}
_PIN_FILES = [
    "tensorflow/lite/micro/tools/make/flatbuffers_download.sh",
    "tensorflow/lite/micro/tools/make/kissfft_download.sh",
    "tensorflow/lite/micro/tools/make/third_party_downloads.inc",
    "tensorflow/lite/micro/tools/make/ext_libs/cmsis_download.sh",
    "tensorflow/lite/micro/tools/make/ext_libs/cmsis_nn_download.sh",
]

# variant -> TFLM make arguments (TARGET_TOOLCHAIN_ROOT is added for the Arm ones)
VARIANTS: dict[str, list[str]] = {
    "host": [],
    "m4-ref": ["TARGET=cortex_m_generic", "TARGET_ARCH=cortex-m4+fp"],
    "m4-cmsis": ["TARGET=cortex_m_generic", "TARGET_ARCH=cortex-m4+fp", "OPTIMIZED_KERNEL_DIR=cmsis_nn"],
    "m7-ref": ["TARGET=cortex_m_generic", "TARGET_ARCH=cortex-m7+fp"],
    "m7-cmsis": ["TARGET=cortex_m_generic", "TARGET_ARCH=cortex-m7+fp", "OPTIMIZED_KERNEL_DIR=cmsis_nn"],
}


# TFLM's BUILD_TYPE values that run (its Makefile): release_with_logs is what TFLM recommends for
# benchmarks (-DNDEBUG: no debug checks, error messages kept); default keeps TFLM's debug checks
# (3-5x slower reference kernels), debug adds -g; release also strips the error strings the engines
# report, so it is not offered.
BUILD_TYPES = ("release_with_logs", "default", "debug")
DEFAULT_BUILD_TYPE = "release_with_logs"


def build_type(requested: str | None = None) -> str:
    """The TFLM BUILD_TYPE to build: `requested`, else $FXPQ_TFLM_BUILD_TYPE, else release_with_logs."""
    value = requested or os.environ.get("FXPQ_TFLM_BUILD_TYPE") or DEFAULT_BUILD_TYPE
    if value not in BUILD_TYPES:
        raise ValueError(f"TFLM build type must be one of {', '.join(BUILD_TYPES)} (FXPQ_TFLM_BUILD_TYPE), "
                         f"got {value!r}")
    return value


def _git(args: list[str], cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, **kw)


def cache_root() -> Path:
    return Path(os.environ.get("FXPQ_TFLM_CACHE") or Path.home() / ".cache" / "fxpq" / "tflm")


def _network() -> bool:
    """github.com reachable (a 10 s ls-remote of tflite-micro)."""
    try:
        return _git(["ls-remote", "--heads", TFLM_REPO], timeout=10).returncode == 0
    except (subprocess.TimeoutExpired, OSError):
        return False


def tflm_tree(clone: bool = True) -> Path:
    """The TFLM source tree: $TFLM_DIR, else a clone at TFLM_COMMIT in the cache (network needed)."""
    env = os.environ.get("TFLM_DIR")
    if env:
        tree = Path(env).expanduser().resolve()
        if not (tree / MAKEFILE).is_file():
            raise TflmUnavailable(f"TFLM_DIR={env} is not a tflite-micro checkout (no {MAKEFILE})")
        return tree
    tree = cache_root() / f"tflite-micro-{TFLM_COMMIT[:12]}"
    if (tree / MAKEFILE).is_file():
        return tree
    if not clone or not _network():
        raise TflmUnavailable(f"no TFLM tree: TFLM_DIR is not set and github.com is unreachable; {HOW_TO_ENABLE}")
    tree.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="tflite-micro-", dir=tree.parent))
    if (_git(["clone", "-q", TFLM_REPO, str(tmp)]).returncode
            or _git(["checkout", "-q", TFLM_COMMIT], cwd=tmp).returncode):
        shutil.rmtree(tmp, ignore_errors=True)
        raise TflmUnavailable(f"cloning {TFLM_REPO} at {TFLM_COMMIT} failed; {HOW_TO_ENABLE}")
    tmp.rename(tree)
    return tree


def tflm_available() -> bool:
    """A TFLM tree is at hand without cloning (TFLM_DIR set and valid, or a cached clone)."""
    try:
        tflm_tree(clone=False)
        return True
    except TflmUnavailable:
        return False


def pinned_dependencies(tree: Path) -> dict[str, tuple[str, str]]:
    """{downloads dir: (owner/name, pinned ref)} read from TFLM's download scripts."""
    pins: dict[str, tuple[str, str]] = {}
    url = re.compile(r"github\.com/([\w.-]+/[\w.-]+)/archive/(?:refs/tags/)?(?:\$\{(\w+)\}|([\w.-]+?))\.zip")
    for rel in _PIN_FILES:
        text = (tree / rel).read_text()
        for m in url.finditer(text):
            repo = m.group(1)
            if repo not in _DEP_DIRS:
                continue
            ref = m.group(3)
            if ref is None:  # ${ZIP_PREFIX...}: the last assignment before this URL
                assigns = re.findall(rf'{m.group(2)}="?([\w.-]+)"?', text[:m.start()])
                ref = assigns[-1] if assigns else None
            if ref:
                pins[_DEP_DIRS[repo]] = (repo, ref)
    missing = sorted(set(_DEP_DIRS.values()) - set(pins))
    if missing:
        raise TflmUnavailable(f"cannot read the pinned versions of {', '.join(missing)} from {tree}'s download scripts")
    return pins


def _sibling(repo: str) -> Path | None:
    """A checkout or bare clone of `repo` in one of TFLM_DEPS_DIR's directories."""
    owner, name = repo.split("/")
    for base in filter(None, os.environ.get("TFLM_DEPS_DIR", "").split(":")):
        for cand in (name, name.lower(), f"{owner}+{name}/repo", f"{owner}+{name}", f"{name}.git"):
            path = Path(base).expanduser() / cand
            if path.is_dir() and _git(["rev-parse", "--git-dir"], cwd=path).returncode == 0:
                return path
    return None


def _export(repo: str, ref: str, dest: Path) -> str:
    """Unpack `repo` at `ref` into `dest` (git archive, as GitHub's zip of that ref); the source used."""
    src = _sibling(repo)
    tmp_clone = None
    if src is None:
        if not _network():
            raise TflmUnavailable(f"{repo} at {ref} is needed under {dest}: not found in TFLM_DEPS_DIR and "
                                  f"github.com is unreachable; {HOW_TO_ENABLE}")
        tmp_clone = Path(tempfile.mkdtemp(prefix="fxpq-dep-"))
        if _git(["clone", "-q", "--bare", f"https://github.com/{repo}", str(tmp_clone)]).returncode:
            shutil.rmtree(tmp_clone, ignore_errors=True)
            raise TflmUnavailable(f"cloning https://github.com/{repo} failed")
        src = tmp_clone
    try:
        with tempfile.TemporaryFile() as tar:
            proc = subprocess.run(["git", "archive", "--format=tar", f"{ref}^{{commit}}"], cwd=src, stdout=tar,
                                  stderr=subprocess.PIPE)
            if proc.returncode:
                raise TflmUnavailable(f"{src} has no {ref} of {repo} (TFLM pins it): "
                                      f"{proc.stderr.decode(errors='replace').strip()}")
            tar.seek(0)
            dest.mkdir(parents=True)
            with tarfile.open(fileobj=tar) as tf:
                tf.extractall(dest, filter="tar")
        commit = _git(["rev-parse", f"{ref}^{{commit}}"], cwd=src).stdout.strip()
        return f"{repo} {ref} ({commit}) from {'github.com' if tmp_clone else src}"
    finally:
        if tmp_clone is not None:
            shutil.rmtree(tmp_clone, ignore_errors=True)


def prepare_downloads(tree: Path, log=print) -> Path:
    """Put every third-party tree TFLM's Makefile needs under downloads/ (idempotent: directories
    that exist are left alone, as TFLM's own scripts do). Returns the downloads directory."""
    downloads = tree / DOWNLOADS
    with _locked(tree / DOWNLOADS.rsplit("/", 1)[0] / ".fxpq-prepare.lock"):
        pins = pinned_dependencies(tree)
        stamp_lines = []
        for sub in sorted(pins, key=len):  # cmsis before cmsis/Cortex_DFP
            repo, ref = pins[sub]
            dest = downloads / sub
            if dest.is_dir() and (sub != "cmsis" or any(p.name != "Cortex_DFP" for p in dest.iterdir())):
                continue
            tmp = downloads / f".{sub.replace('/', '_')}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            how = _export(repo, ref, tmp)
            if sub == "flatbuffers":  # TFLM's download script drops Bazel files before patching
                for p in list(tmp.rglob("BUILD")) + list(tmp.rglob("BUILD.bazel")):
                    p.unlink()
            if sub in _PATCHES:
                proc = subprocess.run(["git", "apply", "--ignore-space-change", "--ignore-whitespace",
                                       str(tree / _PATCHES[sub])], cwd=tmp, capture_output=True, text=True)
                if proc.returncode:
                    raise TflmUnavailable(f"TFLM's patch {_PATCHES[sub]} does not apply to {repo} {ref}: {proc.stderr}")
                how += f" + {_PATCHES[sub]}"
            dest.parent.mkdir(parents=True, exist_ok=True)
            if sub == "cmsis" and dest.is_dir():  # Cortex_DFP prepared first by an earlier run
                (dest / "Cortex_DFP").rename(tmp / "Cortex_DFP")
                dest.rmdir()
            tmp.rename(dest)
            stamp_lines.append(f"{sub}: {how}")
            log(f"[tflm] downloads/{sub}: {how}")
        (downloads / "pigweed").mkdir(parents=True, exist_ok=True)  # Makefile checks it exists only
        if stamp_lines:
            with open(downloads / ".fxpq-prepared", "a") as f:
                f.write("\n".join(stamp_lines) + "\n")
    return downloads


class _locked:
    """An exclusive flock on `path` for a with-block (serializes builds across processes)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.path, "w")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _tree_key(tree: Path) -> str:
    """Identity of a TFLM tree: commit + local changes + the prepared third-party trees."""
    h = hashlib.sha256(str(tree).encode())
    h.update(_git(["rev-parse", "HEAD"], cwd=tree).stdout.encode())
    h.update(_git(["status", "--porcelain", "--untracked-files=no"], cwd=tree).stdout.encode())
    h.update(_git(["diff", "HEAD"], cwd=tree).stdout.encode())
    stamp = tree / DOWNLOADS / ".fxpq-prepared"
    for sub in sorted(_DEP_DIRS.values()):
        h.update(f"{sub}:{(tree / DOWNLOADS / sub).is_dir()}".encode())
    if stamp.exists():
        h.update(stamp.read_bytes())
    return h.hexdigest()[:12]


def _make_args(variant: str, build: str) -> list[str]:
    args = [*VARIANTS[variant], f"BUILD_TYPE={build}"]
    if variant != "host":
        gcc = shutil.which("arm-none-eabi-gcc")
        if gcc is None:
            raise TflmUnavailable("arm-none-eabi-gcc is not installed (bash scripts/setup.sh)")
        args.append(f"TARGET_TOOLCHAIN_ROOT={Path(gcc).parent}/")
    return args


# The TFLM kernels of the ops fxpq files use (fxp: RESHAPE; int8-builtin: the rest), by source
# file stem. Building only these (plus TFLM's core and, with CMSIS-NN, all of CMSIS-NN) instead of
# the whole library takes a fraction of the time; a firmware links only what its resolver
# references either way, so it is the same firmware. FXPQ_TFLM_FULL=1 builds the whole library.
KERNEL_STEMS = frozenset({
    "kernel_util", "add", "add_common", "conv", "conv_common", "depthwise_conv", "depthwise_conv_common",
    "fully_connected", "fully_connected_common", "pooling", "pooling_common", "reduce", "reduce_common",
    "reshape", "reshape_common", "softmax", "softmax_common", "quantize", "quantize_common", "dequantize",
    "dequantize_common", "pad", "pad_common", "concatenation", "leaky_relu", "leaky_relu_common",
    # the stock ops of hybrid fxp files (docs/format.md section 8)
    "mul", "mul_common", "sub", "sub_common", "logistic", "logistic_common", "tanh", "hard_swish",
    "hard_swish_common", "resize_nearest_neighbor", "transpose", "transpose_common", "maximum_minimum", "elu",
    "activations", "activations_common",
})
# stock ops (schema names) the TFLM programs can register: what the int8-builtin target writes
STOCK_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MAX_POOL_2D", "AVERAGE_POOL_2D", "MEAN",
             "PAD", "CONCATENATION", "LEAKY_RELU", "RESHAPE", "SOFTMAX", "QUANTIZE", "DEQUANTIZE",
             "MUL", "SUB", "LOGISTIC", "TANH", "HARD_SWISH", "RESIZE_NEAREST_NEIGHBOR", "TRANSPOSE", "MAXIMUM",
             "MINIMUM", "ELU", "RELU", "RELU6")


@dataclass
class TflmLibrary:
    """One built TFLM variant: the library, the flags it was built with, the tree."""

    variant: str
    tree: Path
    lib: Path
    flags_mk: Path
    key: str
    build_type: str = DEFAULT_BUILD_TYPE


def _print_vars(base: list[str], env: dict, names: list[str]) -> dict[str, str]:
    """Values of TFLM Makefile variables, from one parse of the Makefile (its print-% rule)."""
    out = subprocess.run([*base, *(f"print-{v}" for v in names)], capture_output=True, text=True, env=env).stdout
    values = {}
    for var in names:
        m = re.search(rf"^{var}=(.*)$", out, re.M)
        values[var] = m.group(1).strip() if m else ""
    return values


def _objects(base: list[str], env: dict, gendir: Path, tree: Path) -> list[str]:
    """Object files (TFLM's own object paths) of the core, the KERNEL_STEMS kernels and the
    third-party kernel sources (CMSIS-NN) of a variant."""
    values = _print_vars(base, env, ["MICROLITE_CC_SRCS", "MICROLITE_CC_KERNEL_SRCS", "THIRD_PARTY_KERNEL_CC_SRCS"])

    def listed(var: str) -> list[str]:
        return values[var].split()

    def obj(kind: str, src: str) -> str:
        return f"{gendir}/obj/{kind}/{os.path.splitext(src)[0]}.o"

    core = [s for s in listed("MICROLITE_CC_SRCS")
            if not s.startswith("signal/") and "test_helper" not in s and "mock_micro_graph" not in s]
    kernels = [s for s in listed("MICROLITE_CC_KERNEL_SRCS") if Path(s).stem in KERNEL_STEMS]
    third = _needed_third_party(tree, kernels, listed("THIRD_PARTY_KERNEL_CC_SRCS"))
    if not core or not kernels:
        raise RuntimeError("TFLM's Makefile listed no core or kernel sources (print-MICROLITE_CC_SRCS)")
    return ([obj("core", s) for s in core] + [obj("kernels", s) for s in kernels]
            + [obj("third_party_kernels", s) for s in third])


_ARM_NAME = re.compile(r"\barm_\w+")
_ARM_DEF = re.compile(r"^[A-Za-z_][\w \t\*]*?\b(arm_\w+)\s*\(", re.M)


def _needed_third_party(tree: Path, kernels: list[str], third: list[str]) -> list[str]:
    """The third-party kernel sources (CMSIS-NN's C files) that define an arm_* function the
    built kernels use, closed over the calls between them: a static library needs only those
    (the rest would never be linked). Every source whose definitions cannot be read is kept."""
    defines: dict[str, list[str]] = {}
    texts: dict[str, str] = {}
    for src in third:
        path = Path(src) if Path(src).is_absolute() else tree / src
        try:
            texts[src] = path.read_text(errors="replace")
        except OSError:
            return third
        for name in _ARM_DEF.findall(texts[src]):
            defines.setdefault(name, []).append(src)
    todo = set()
    for k in kernels:
        todo |= set(_ARM_NAME.findall((tree / k).read_text(errors="replace")))
    seen_names: set[str] = set()
    needed: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen_names:
            continue
        seen_names.add(name)
        for src in defines.get(name, []):
            if src not in needed:
                needed.add(src)
                todo |= set(_ARM_NAME.findall(texts[src]))
    return [s for s in third if s in needed]


def _core_dir(tree_key: str, args: list[str], variant: str) -> Path:
    """Where the core objects of one CPU live once for all its variants: keyed like a variant, by
    the make arguments without the kernel choice (OPTIMIZED_KERNEL_DIR)."""
    core_args = [a for a in args if not a.startswith("OPTIMIZED_KERNEL_DIR=")]
    key = hashlib.sha256((tree_key + " ".join(core_args)).encode()).hexdigest()[:12]
    return cache_root() / f"core-{variant.split('-')[0]}-{key}"


def _share_core_objects(gendir: Path, core_dir: Path, targets: list[str], after_build: bool) -> int:
    """Hard-link the core objects between a variant's GENDIR and its CPU's core directory: before
    the build, objects compiled by the other variant of the CPU into the GENDIR (make then finds
    them up to date); after it, the GENDIR's new ones into the core directory. TFLM compiles its
    core with the same flags in both variants apart from -DCMSIS_NN and -DARM_NN_ENABLE_*, which no
    core source or header it includes tests (their .d files list no CMSIS-NN header). Returns the
    number of objects linked."""
    linked = 0
    prefix = f"{gendir}/obj/core/"
    for target in targets:
        if not target.startswith(prefix):
            continue
        rel = target[len(prefix):]
        src, dest = (Path(target), core_dir / rel) if after_build else (core_dir / rel, Path(target))
        if dest.exists() or not src.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
            linked += 1
        except FileExistsError:  # the other variant, built at the same time, got there first
            pass
    return linked


def build_library(variant: str, tree: Path | None = None, jobs: int = 2, log=print,
                  build: str | None = None) -> TflmLibrary:
    """The TFLM library of `variant` from the tree, built once per tree key, variant and build
    type (:func:`build_type`)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    build = build_type(build)
    tree = tree or tflm_tree()
    prepare_downloads(tree, log=log)
    args = _make_args(variant, build)
    full = os.environ.get("FXPQ_TFLM_FULL") == "1"
    tree_key = _tree_key(tree)
    key = hashlib.sha256((tree_key + " ".join(args)).encode()).hexdigest()[:12]
    gendir = cache_root() / f"{variant}-{build}-{key}"
    subset = hashlib.sha256(",".join(sorted(KERNEL_STEMS)).encode()).hexdigest()[:8]
    lib = gendir / "lib" / ("libtensorflow-microlite.a" if full else f"libtensorflow-microlite-fxpq-{subset}.a")
    flags_mk = gendir / ("flags-full.mk" if full else f"flags-{subset}.mk")
    with _locked(cache_root() / f".{variant}-{key}.lock"):
        if not (lib.exists() and flags_mk.exists()):
            env = dict(os.environ)
            # TFLM's Makefile runs python3 (Pillow must import) while it is parsed: use this one
            env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
            base = ["nice", "-n", "10", "make", "-C", str(tree), "-f", MAKEFILE, *args, f"GENDIR={gendir}/"]
            log(f"[tflm] building TFLM {variant} BUILD_TYPE={build} "
                f"({'whole library' if full else 'core + the kernels fxpq files use'}) in {gendir}: several minutes")
            targets = ["microlite"] if full else _objects(base, env, gendir, tree)
            core_dir = _core_dir(tree_key, args, variant)
            if not full and _share_core_objects(gendir, core_dir, targets, after_build=False):
                log(f"[tflm] {variant}: TFLM's core objects taken from {core_dir}")
            proc = subprocess.run([*base, f"-j{jobs}", *targets], capture_output=True, text=True, env=env)
            if proc.returncode:
                raise RuntimeError(f"building TFLM ({variant}) failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
            if not full:
                _share_core_objects(gendir, core_dir, targets, after_build=True)
            values = _print_vars(base, env, ["CXX", "CC", "AR", "CXXFLAGS", "CCFLAGS", "INCLUDES", "LDFLAGS",
                                             "MICROLITE_LIBS"])
            if not full:
                lib.parent.mkdir(parents=True, exist_ok=True)
                tmp_lib = lib.with_suffix(".tmp.a")
                tmp_lib.unlink(missing_ok=True)
                subprocess.run([values["AR"] or "ar", "rcs", str(tmp_lib), *targets], check=True)
                tmp_lib.rename(lib)
            # TFLM's include paths are relative to its tree
            incs = " ".join(f"-isystem {tree / p[2:]}" if p.startswith("-I") and not p[2:].startswith("/")
                            else p.replace("-I", "-isystem ", 1) if p.startswith("-I") else p
                            for p in values["INCLUDES"].split())
            text = [f"# flags of {lib} (TFLM tree {tree}, make {' '.join(args)})", f"TFLM_BUILD_TYPE := {build}",
                    f"TFLM_TREE := {tree}", f"TFLM_LIB := {lib}", f"TFLM_CXX := {values['CXX']}",
                    f"TFLM_CC := {values['CC']}", f"TFLM_CXXFLAGS := {values['CXXFLAGS']}",
                    f"TFLM_INCLUDES := {incs}", f"TFLM_LDFLAGS := {values['LDFLAGS']}",
                    f"TFLM_LIBS := {values['MICROLITE_LIBS']}", ""]
            flags_mk.write_text("\n".join(text))
    return TflmLibrary(variant, tree, lib, flags_mk, key, build)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Prepare a TFLM tree and build its libraries (docs/tflm.md).")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--build-type", choices=BUILD_TYPES, default=None,
                    help=f"TFLM's BUILD_TYPE (default: $FXPQ_TFLM_BUILD_TYPE, else {DEFAULT_BUILD_TYPE})")
    args = ap.parse_args(argv)
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    try:
        build = build_type(args.build_type)
        tree = tflm_tree()
        for v in args.variants.split(","):
            t = time.perf_counter()
            lib = build_library(v, tree, jobs=args.jobs, build=build)
            print(f"{v} ({build}): {lib.lib} [{time.perf_counter() - t:.0f} s]", flush=True)
    except (TflmUnavailable, ValueError) as e:
        print(f"fxpq tflm: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
