// The pack decoder alone (runtime/lzma.h, runtime/packs.h), for tests/test_packs_cpu.py, which
// builds it with the address and undefined-behaviour sanitizers. One command per line on stdin,
// one result line per command on stdout ("ok" or "error <why>"):
//   crc IN                                  prints the CRC-32 of file IN
//   decode IN SIZE OUT                      lzma::decode_prefix of SIZE bytes into file OUT
//   unpack PACK OFFSET SIZE RAW CHUNK IMAGE_OFFSET IMAGE_SIZE CRC OUT
//       packs::unpack of one image from a pack (file PACK) of one chunk (OFFSET, SIZE, RAW) at
//       chunk index 0; CHUNK is the placement's chunk index, 1 names a chunk of another pack.
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "runtime/lzma.h"
#include "runtime/packs.h"

namespace {

// Exactly as many bytes as the file holds, so that the sanitizer flags any read past them.
std::vector<unsigned char> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  const std::vector<char> raw{std::istreambuf_iterator<char>(f), {}};
  return std::vector<unsigned char>(raw.begin(), raw.end());
}

void write_file(const std::string& path, const std::vector<unsigned char>& data) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data.data()), data.size());
}

void report(const std::string& error) { std::cout << (error.empty() ? "ok" : "error " + error) << std::endl; }

}  // namespace

int main() {
  std::string command;
  while (std::cin >> command) {
    if (command == "crc") {
      std::string in;
      std::cin >> in;
      const auto data = read_file(in);
      std::cout << gems::packs::crc32(data.data(), data.size()) << std::endl;
    } else if (command == "decode") {
      std::string in, out;
      size_t size;
      std::cin >> in >> size >> out;
      const auto data = read_file(in);
      std::vector<unsigned char> result(size);
      const char* error = gems::lzma::decode_prefix(data.data(), data.size(), result.data(), size);
      if (!error) write_file(out, result);
      report(error ? error : "");
    } else if (command == "unpack") {
      std::string in, out;
      gems::packs::Chunk chunk;
      gems::packs::Placement image;
      std::cin >> in >> chunk.offset >> chunk.size >> chunk.raw_size >> image.chunk >> image.offset >> image.size >>
          image.crc32 >> out;
      const auto data = read_file(in);
      const gems::packs::Pack pack{90, data.data(), data.size(), 0, 1};
      const gems::packs::Chunk chunks[2] = {chunk, chunk};
      std::vector<unsigned char> result;
      const std::string error = gems::packs::unpack(pack, chunks, image, result);
      if (error.empty()) write_file(out, result);
      report(error);
    } else {
      std::cout << "error unknown command " << command << std::endl;
    }
  }
  return 0;
}
