// Kernel packs: the cubins of one target, compressed in chunks and embedded in the library
// (aot/packs.py writes them, the generated gems_packs.S embeds them). A chunk holds consecutive
// images of one grid, up to a few hundred KB, as one .lzma stream (runtime/lzma.h); an image is
// decoded on its first use by decompressing its chunk only as far as the image ends, so the
// first launch of a kernel pays for a part of one chunk and nothing else, and the packs of
// other targets are never touched. No torch or CUDA in here: the CPU tests build it alone.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gems::packs {

// One target's pack: its compressed bytes and the range of chunks (into the chunk table) in it.
struct Pack {
  int arch;
  const unsigned char* data;
  uint64_t size;
  int first_chunk;
  int num_chunks;
};

// One independently decodable .lzma stream inside a pack.
struct Chunk {
  uint64_t offset;  // into its pack's bytes
  uint32_t size;  // compressed
  uint32_t raw_size;  // decompressed
};

// Where an image lies: bytes [offset, offset + size) of the decompressed chunk, with the CRC-32
// (zlib's) of those bytes.
struct Placement {
  int chunk;
  uint32_t offset;
  uint32_t size;
  uint32_t crc32;
};

uint32_t crc32(const unsigned char* data, uint64_t size);

// Decodes one image of `pack` into `out` (which then holds exactly its bytes). Returns an empty
// string on success, else why the image could not be decoded: a placement outside its pack or
// chunk, a truncated or corrupt stream, or bytes whose CRC-32 differs from the placement's.
std::string unpack(const Pack& pack, const Chunk* chunks, const Placement& image, std::vector<unsigned char>& out);

}  // namespace gems::packs
