#include "runtime/packs.h"

#include <array>

#include "runtime/lzma.h"

namespace gems::packs {
namespace {

// The table of the reflected CRC-32 polynomial (zlib's crc32).
constexpr std::array<uint32_t, 256> kCrcTable = [] {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}();

}  // namespace

uint32_t crc32(const unsigned char* data, uint64_t size) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint64_t i = 0; i < size; ++i) c = kCrcTable[(c ^ data[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

std::string unpack(const Pack& pack, const Chunk* chunks, const Placement& image, std::vector<unsigned char>& out) {
  if (image.chunk < pack.first_chunk || image.chunk >= pack.first_chunk + pack.num_chunks) {
    return "chunk " + std::to_string(image.chunk) + " is not in the sm_" + std::to_string(pack.arch) + " pack";
  }
  const Chunk& chunk = chunks[image.chunk];
  if (chunk.offset > pack.size || chunk.size > pack.size - chunk.offset) {
    return "chunk " + std::to_string(image.chunk) + " lies outside its pack";
  }
  const uint64_t end = uint64_t{image.offset} + image.size;
  if (end > chunk.raw_size) return "the image lies outside chunk " + std::to_string(image.chunk);
  out.resize(end);
  if (const char* error = lzma::decode_prefix(pack.data + chunk.offset, chunk.size, out.data(), end)) {
    return "chunk " + std::to_string(image.chunk) + " of the sm_" + std::to_string(pack.arch) + " pack: " + error;
  }
  out.erase(out.begin(), out.begin() + image.offset);
  if (crc32(out.data(), out.size()) != image.crc32) {
    return "chunk " + std::to_string(image.chunk) + " of the sm_" + std::to_string(pack.arch) +
           " pack: the image's bytes do not match their CRC-32 (corrupt pack)";
  }
  return {};
}

}  // namespace gems::packs
