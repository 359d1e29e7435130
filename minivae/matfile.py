"""A reader for MATLAB level-5 MAT files, just enough for a uint8 matrix
such as Frey Face's `ff` (`frey`), so that scipy is not needed.

The format (MathWorks, "MAT-File Format", level 5): a 128-byte header,
116 bytes of text, 8 of subsystem offset, a version 0x0100 and the
endian indicator "IM" (little-endian; "MI" would be big-endian), then
data elements.  Each element is a tag, a uint32 type and a uint32 byte
count, then its data padded to a multiple of 8 bytes; a small element
packs the count (upper 16 bits) and the type (lower 16 bits) into the
first 4 bytes and its up to 4 bytes of data into the next 4.  A variable
is a miMATRIX element holding four subelements: the array flags (class in
the low byte), the dimensions, the name and the real part, stored in
column-major order; MATLAB may wrap it in a miCOMPRESSED element, its
bytes a zlib stream of a whole element, tag included.
"""
import struct
import zlib
from pathlib import Path

import numpy as np

from minivae.data import DataError

HEADER_BYTES = 128
VERSION = 0x0100
MI_INT8, MI_UINT8, MI_INT32, MI_UINT32 = 1, 2, 5, 6
MI_MATRIX, MI_COMPRESSED = 14, 15
MX_UINT8_CLASS = 9
COMPLEX_FLAG = 0x08   # in the flags byte of the array flags


def _elements(raw, where):
    """(type, data bytes) of each data element of raw, in order; a truncated
    element is a DataError naming `where`."""
    offset = 0
    while offset < len(raw):
        if len(raw) - offset < 8:
            raise DataError(f"{where}: truncated data element tag at byte {offset}")
        first, second = struct.unpack_from("<II", raw, offset)
        if first >> 16:   # the small element: count and type in 4 bytes, data in the next 4
            kind, count = first & 0xFFFF, first >> 16
            if count > 4:
                raise DataError(f"{where}: a small data element of {count} bytes at byte "
                                f"{offset}, expected at most 4")
            yield kind, raw[offset + 4:offset + 4 + count]
            offset += 8
            continue
        kind, count, start = first, second, offset + 8
        if start + count > len(raw):
            raise DataError(f"{where}: data element at byte {offset} says {count} bytes, "
                            f"only {len(raw) - start} remain (truncated file?)")
        yield kind, raw[start:start + count]
        # compressed data is not padded; everything else is, to a multiple of 8 bytes
        offset = start + (count if kind == MI_COMPRESSED else -(-count // 8) * 8)


def _variables(raw, where):
    """(name, matrix element bytes) of each variable after the header,
    decompressing miCOMPRESSED elements."""
    for kind, body in _elements(raw, where):
        if kind == MI_COMPRESSED:
            try:
                inner = zlib.decompress(body)
            except zlib.error as e:
                raise DataError(f"{where}: corrupt compressed variable ({e})") from None
            yield from _variables(inner, where)
        elif kind == MI_MATRIX:
            parts = list(_elements(body, where))
            if len(parts) < 3 or parts[2][0] != MI_INT8:
                raise DataError(f"{where}: a variable without array flags, dimensions and name")
            yield parts[2][1].decode("ascii", "replace"), parts
        # other top-level elements (none in a level-5 file MATLAB writes) are skipped


def read_uint8_matrix(path, name):
    """The uint8 matrix variable `name` of the level-5 MAT file at `path`, as a
    read-only (rows, columns) uint8 array, the same as scipy.io.loadmat(path)[name].

    Only a little-endian file, a real 2-D uint8 matrix (class mxUINT8, data
    miUINT8) is read; anything else is a one-line DataError naming the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read file ({e.strerror})") from None
    if len(raw) < HEADER_BYTES:
        raise DataError(f"{path}: not a MAT file (shorter than its 128-byte header)")
    version, endian = struct.unpack_from("<H2s", raw, 124)
    if endian == b"MI":
        raise DataError(f"{path}: a big-endian MAT file; expected a little-endian one")
    if endian != b"IM" or version != VERSION:
        raise DataError(f"{path}: not a level-5 MAT file (expected version 0x0100 and 'IM' "
                        f"at byte 124, as MATLAB's save -v6 or -v7 writes)")
    for found, parts in _variables(raw[HEADER_BYTES:], path):
        if found == name:
            return _uint8_matrix(parts, f"{path}: variable {name!r}")
    raise DataError(f"{path}: no variable {name!r} in the MAT file")


def _uint8_matrix(parts, where):
    """The array of a miMATRIX element's subelements, checked to be real 2-D uint8."""
    (flags_type, flags), (dims_type, dims) = parts[0], parts[1]
    if flags_type != MI_UINT32 or len(flags) < 4 or dims_type != MI_INT32 or len(dims) != 8:
        raise DataError(f"{where}: expected a 2-D matrix with array flags and dimensions")
    array_class, flag_bits = flags[0], flags[1]
    if array_class != MX_UINT8_CLASS or flag_bits & COMPLEX_FLAG:
        raise DataError(f"{where}: expected a real uint8 matrix (class {MX_UINT8_CLASS}), "
                        f"got class {array_class}{' complex' if flag_bits & COMPLEX_FLAG else ''}")
    rows, columns = struct.unpack("<ii", dims)
    if len(parts) < 4 or parts[3][0] != MI_UINT8 or len(parts[3][1]) != rows * columns:
        got = "none" if len(parts) < 4 else f"type {parts[3][0]}, {len(parts[3][1])} bytes"
        raise DataError(f"{where}: expected {rows} x {columns} = {rows * columns} bytes of "
                        f"miUINT8 data, got {got}")
    # column-major, as MATLAB stores matrices
    return np.frombuffer(parts[3][1], dtype=np.uint8).reshape((rows, columns), order="F")
