// A decoder for the .lzma ("LZMA alone") format, the one Python's lzma.compress(format=FORMAT_ALONE)
// writes: a 13-byte header (properties, dictionary size, uncompressed size) and an LZMA1 stream.
// The kernel packs (runtime/packs.h) are chunks in this format. Written from the format's
// specification (lzma-specification.txt of the LZMA SDK); no torch or CUDA in it, so the CPU
// tests build it alone.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gems::lzma {

// Decodes the first `out_size` bytes of the stream `in[0, in_size)` into `out` (stopping there:
// the rest of the stream is not decoded). Returns nullptr on success, else a short description
// of the problem (truncated input, invalid header, corrupt data); never reads outside `in` or
// writes outside `out`.
const char* decode_prefix(const uint8_t* in, size_t in_size, uint8_t* out, size_t out_size);

}  // namespace gems::lzma
