"""libjpeg's warnings through ``ctypes`` (see :func:`emoadapt.data.decode.jpeg_warnings`).

Pillow installs an error manager that drops libjpeg's warnings, so a JPEG whose entropy-coded
data is damaged mid-stream decodes to a garbled picture without a word. This module runs the same
libjpeg(-turbo) on the same bytes with ``jpeg_read_coefficients`` (Huffman decoding of every scan,
no IDCT) and an error manager that records each warning's text.

Only the v62 ABI (libjpeg-turbo's default, the one Pillow's wheels and Debian ship) is used: the
decompressor struct is 632 bytes on 64-bit platforms, the error manager 168. Any other library, or
a platform where none is found, makes :func:`warnings` return ``None`` (check skipped).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
import threading

_LIB_VERSION = 62
_DECOMPRESS_SIZE = 632 if sys.maxsize > 2**32 else 464
_BUFFER = 4096  #: room for the decompressor struct of any libjpeg version (it is zeroed up to its own size)
_ERROR_MGR = 1024
_ERROR_EXIT, _EMIT_MESSAGE, _OUTPUT_MESSAGE, _FORMAT_MESSAGE = 0, 1, 2, 3  #: pointer slots of jpeg_error_mgr

_VOID_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_EMIT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int)
_FORMAT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)

_lock = threading.Lock()
_library: ctypes.CDLL | None | bool = False  # False: not looked up yet


def _candidates() -> list[str]:
    import PIL

    base = os.path.dirname(PIL.__file__)
    found = sorted(glob.glob(os.path.join(base, os.pardir, "pillow.libs", "libjpeg*.so*")))
    found += sorted(glob.glob(os.path.join(base, ".dylibs", "libjpeg*.dylib")))
    system = ctypes.util.find_library("jpeg")
    return found + ([system] if system else [])


def _load() -> ctypes.CDLL | None:
    global _library
    with _lock:
        if _library is False:
            _library = None
            for candidate in _candidates():
                try:
                    lib = ctypes.CDLL(candidate)
                    for fn in ("jpeg_std_error", "jpeg_CreateDecompress", "jpeg_mem_src", "jpeg_read_header",
                               "jpeg_read_coefficients", "jpeg_finish_decompress", "jpeg_destroy_decompress"):
                        getattr(lib, fn)
                except (OSError, AttributeError):
                    continue
                lib.jpeg_std_error.restype = ctypes.c_void_p
                lib.jpeg_std_error.argtypes = [ctypes.c_void_p]
                lib.jpeg_CreateDecompress.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
                lib.jpeg_mem_src.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_ulong]
                lib.jpeg_read_header.argtypes = [ctypes.c_void_p, ctypes.c_int]
                lib.jpeg_read_coefficients.argtypes = [ctypes.c_void_p]
                lib.jpeg_read_coefficients.restype = ctypes.c_void_p
                lib.jpeg_finish_decompress.argtypes = [ctypes.c_void_p]
                lib.jpeg_destroy_decompress.argtypes = [ctypes.c_void_p]
                _library = lib
                break
        return _library


def warnings(data: bytes) -> list[str] | None:
    """libjpeg's warning messages for ``data`` (``[]``: none), or ``None`` when no usable libjpeg."""
    lib = _load()
    if lib is None or not data:
        return None
    err = ctypes.create_string_buffer(_ERROR_MGR)
    cinfo = ctypes.create_string_buffer(_BUFFER)
    lib.jpeg_std_error(err)
    slots = (ctypes.c_void_p * 4).from_buffer(err)
    format_message = _FORMAT_FN(slots[_FORMAT_MESSAGE])
    found: list[str] = []
    fatal = [False]

    def on_error_exit(_cinfo):  # never reached for data Pillow decoded; the caller then gets None
        fatal[0] = True

    def on_emit(info, level):
        if level < 0:  # -1: a warning (levels >= 0 are trace messages)
            text = ctypes.create_string_buffer(256)
            format_message(info, text)
            found.append(text.value.decode("latin-1"))

    def on_output(_cinfo):
        pass

    callbacks = (_VOID_FN(on_error_exit), _EMIT_FN(on_emit), _VOID_FN(on_output))  # kept alive until the end
    slots[_ERROR_EXIT] = ctypes.cast(callbacks[0], ctypes.c_void_p).value
    slots[_EMIT_MESSAGE] = ctypes.cast(callbacks[1], ctypes.c_void_p).value
    slots[_OUTPUT_MESSAGE] = ctypes.cast(callbacks[2], ctypes.c_void_p).value
    ctypes.c_void_p.from_buffer(cinfo, 0).value = ctypes.addressof(err)  # cinfo->err is the first field
    global _library
    lib.jpeg_CreateDecompress(cinfo, _LIB_VERSION, _DECOMPRESS_SIZE)
    source = bytes(data)
    try:
        if fatal[0]:  # another ABI (struct size or version): skip the check from now on
            _library = None
            return None
        lib.jpeg_mem_src(cinfo, source, len(source))
        lib.jpeg_read_header(cinfo, 1)
        if not fatal[0]:
            lib.jpeg_read_coefficients(cinfo)
        if not fatal[0]:
            lib.jpeg_finish_decompress(cinfo)
    finally:
        lib.jpeg_destroy_decompress(cinfo)
    return None if fatal[0] else found
