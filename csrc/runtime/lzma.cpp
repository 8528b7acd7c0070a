#include "runtime/lzma.h"

#include <vector>

namespace gems::lzma {
namespace {

constexpr int kHeaderSize = 13;  // properties byte, dictionary size (u32), uncompressed size (u64)
constexpr int kNumStates = 12;
constexpr int kMaxPosStates = 16;  // 1 << pb, pb <= 4
constexpr int kNumLenToPosStates = 4;
constexpr int kEndPosModelIndex = 14;  // distance slots from here on code their low bits as direct bits
constexpr int kNumFullDistances = 128;
constexpr int kNumAlignBits = 4;
constexpr int kMatchMinLen = 2;
constexpr uint16_t kProbInit = 1 << 10;  // probabilities are 11-bit fixed point, start at 1/2

// The adaptive binary range decoder every symbol goes through.
class RangeDecoder {
 public:
  RangeDecoder(const uint8_t* in, const uint8_t* end) : in_(in), end_(end) {}

  // The stream starts with a zero byte and the first 4 bytes of the code (big-endian).
  bool init() {
    if (end_ - in_ < 5 || in_[0] != 0) return false;
    for (int i = 1; i < 5; ++i) code_ = (code_ << 8) | in_[i];
    in_ += 5;
    return code_ != range_;
  }

  uint32_t bit(uint16_t& prob) {
    const uint32_t bound = (range_ >> 11) * prob;
    uint32_t b;
    if (code_ < bound) {
      range_ = bound;
      prob += ((1u << 11) - prob) >> 5;
      b = 0;
    } else {
      range_ -= bound;
      code_ -= bound;
      prob -= prob >> 5;
      b = 1;
    }
    normalize();
    return b;
  }

  // `n` (>= 1) bits of probability 1/2, most significant first.
  uint32_t direct(int n) {
    uint32_t result = 0;
    do {
      range_ >>= 1;
      code_ -= range_;
      const uint32_t mask = 0u - (code_ >> 31);  // all ones when the bit is 0
      code_ += range_ & mask;
      corrupt_ |= code_ == range_;
      normalize();
      result = (result << 1) + (mask + 1);
    } while (--n);
    return result;
  }

  // A bit tree of `bits` levels, most significant bit first; probs[1 .. 2^bits).
  uint32_t tree(uint16_t* probs, int bits) {
    uint32_t m = 1;
    for (int i = 0; i < bits; ++i) m = (m << 1) | bit(probs[m]);
    return m - (1u << bits);
  }

  // The same tree read least significant bit first.
  uint32_t reverse_tree(uint16_t* probs, int bits) {
    uint32_t m = 1, symbol = 0;
    for (int i = 0; i < bits; ++i) {
      const uint32_t b = bit(probs[m]);
      m = (m << 1) | b;
      symbol |= b << i;
    }
    return symbol;
  }

  bool overrun() const { return overrun_; }
  bool corrupt() const { return corrupt_; }

 private:
  void normalize() {
    if (range_ >= (1u << 24)) return;
    range_ <<= 8;
    if (in_ < end_) {
      code_ = (code_ << 8) | *in_++;
    } else {
      code_ <<= 8;
      overrun_ = true;
    }
  }

  const uint8_t* in_;
  const uint8_t* end_;
  uint32_t range_ = 0xFFFFFFFFu;
  uint32_t code_ = 0;
  bool overrun_ = false;
  bool corrupt_ = false;
};

template <size_t N>
struct Probs {
  uint16_t p[N];
  Probs() {
    for (auto& x : p) x = kProbInit;
  }
  uint16_t& operator[](size_t i) { return p[i]; }
};

// Match lengths minus kMatchMinLen: 0-7 (low, per position state), 8-15 (mid), 16-271 (high).
struct LengthDecoder {
  Probs<2> choice;
  Probs<kMaxPosStates << 3> low;
  Probs<kMaxPosStates << 3> mid;
  Probs<1 << 8> high;

  uint32_t decode(RangeDecoder& rc, uint32_t pos_state) {
    if (!rc.bit(choice[0])) return rc.tree(&low[pos_state << 3], 3);
    if (!rc.bit(choice[1])) return 8 + rc.tree(&mid[pos_state << 3], 3);
    return 16 + rc.tree(high.p, 8);
  }
};

// Every adaptive probability of the decoder, at its initial value.
struct Model {
  explicit Model(int lc, int lp) : literal(0x300u << (lc + lp), kProbInit) {}

  std::vector<uint16_t> literal;  // 0x300 per literal context
  Probs<kNumStates * kMaxPosStates> is_match;
  Probs<kNumStates> is_rep;
  Probs<kNumStates> is_rep_g0;
  Probs<kNumStates> is_rep_g1;
  Probs<kNumStates> is_rep_g2;
  Probs<kNumStates * kMaxPosStates> is_rep0_long;
  Probs<(kNumLenToPosStates << 6)> pos_slot;  // a 6-bit tree per length state
  Probs<1 + kNumFullDistances - kEndPosModelIndex> pos_special;
  Probs<1 << kNumAlignBits> align;
  LengthDecoder match_len;
  LengthDecoder rep_len;
};

// Distance minus 1 of a new match of `len` (minus kMatchMinLen); 0xFFFFFFFF is the end marker.
uint32_t decode_distance(RangeDecoder& rc, Model& m, uint32_t len) {
  const uint32_t len_state = len < kNumLenToPosStates - 1 ? len : kNumLenToPosStates - 1;
  const uint32_t slot = rc.tree(&m.pos_slot[len_state << 6], 6);
  if (slot < 4) return slot;
  const int direct_bits = static_cast<int>(slot >> 1) - 1;
  uint32_t dist = (2 | (slot & 1)) << direct_bits;
  if (slot < kEndPosModelIndex) return dist + rc.reverse_tree(&m.pos_special[dist - slot], direct_bits);
  dist += rc.direct(direct_bits - kNumAlignBits) << kNumAlignBits;
  return dist + rc.reverse_tree(m.align.p, kNumAlignBits);
}

}  // namespace

const char* decode_prefix(const uint8_t* in, size_t in_size, uint8_t* out, size_t out_size) {
  if (in_size < kHeaderSize) return "truncated: shorter than the .lzma header";
  if (in[0] >= 9 * 5 * 5) return "invalid .lzma header: properties byte out of range";
  const int lc = in[0] % 9, lp = in[0] / 9 % 5, pb = in[0] / 45;
  if (lc + lp > 4) return "unsupported .lzma properties: lc + lp > 4";
  uint64_t declared = 0;
  for (int i = 12; i >= 5; --i) declared = (declared << 8) | in[i];
  if (declared != ~uint64_t{0} && declared < out_size) return "the stream declares fewer bytes than requested";

  RangeDecoder rc(in + kHeaderSize, in + in_size);
  if (!rc.init()) return in_size < kHeaderSize + 5 ? "truncated: no range coder data" : "corrupt: invalid range coder start";
  Model m(lc, lp);
  const uint32_t pb_mask = (1u << pb) - 1, lp_mask = (1u << lp) - 1;
  uint32_t state = 0, rep0 = 0, rep1 = 0, rep2 = 0, rep3 = 0;
  size_t pos = 0;
  while (pos < out_size) {
    const uint32_t pos_state = static_cast<uint32_t>(pos) & pb_mask;
    if (!rc.bit(m.is_match[(state << 4) + pos_state])) {
      const uint32_t prev = pos > 0 ? out[pos - 1] : 0;
      uint16_t* probs = &m.literal[0x300u * (((static_cast<uint32_t>(pos) & lp_mask) << lc) + (prev >> (8 - lc)))];
      uint32_t symbol = 1;
      if (state >= 7) {  // after a match: the byte at rep0 steers the first bits
        uint32_t match_byte = out[pos - rep0 - 1];
        do {
          const uint32_t match_bit = (match_byte >> 7) & 1;
          match_byte <<= 1;
          const uint32_t b = rc.bit(probs[((1 + match_bit) << 8) + symbol]);
          symbol = (symbol << 1) | b;
          if (match_bit != b) break;
        } while (symbol < 0x100);
      }
      while (symbol < 0x100) symbol = (symbol << 1) | rc.bit(probs[symbol]);
      out[pos++] = static_cast<uint8_t>(symbol);
      state = state < 4 ? 0 : state < 10 ? state - 3 : state - 6;
    } else {
      uint32_t len;
      if (rc.bit(m.is_rep[state])) {
        if (pos == 0) return "corrupt: a repeated match before any data";
        if (!rc.bit(m.is_rep_g0[state])) {
          if (!rc.bit(m.is_rep0_long[(state << 4) + pos_state])) {  // one byte from rep0
            state = state < 7 ? 9 : 11;
            out[pos] = out[pos - rep0 - 1];
            ++pos;
            if (rc.overrun()) return "truncated: the stream ends inside the data";
            continue;
          }
        } else {
          uint32_t dist;
          if (!rc.bit(m.is_rep_g1[state])) {
            dist = rep1;
          } else {
            if (!rc.bit(m.is_rep_g2[state])) {
              dist = rep2;
            } else {
              dist = rep3;
              rep3 = rep2;
            }
            rep2 = rep1;
          }
          rep1 = rep0;
          rep0 = dist;
        }
        len = m.rep_len.decode(rc, pos_state);
        state = state < 7 ? 8 : 11;
      } else {
        rep3 = rep2;
        rep2 = rep1;
        rep1 = rep0;
        len = m.match_len.decode(rc, pos_state);
        state = state < 7 ? 7 : 10;
        rep0 = decode_distance(rc, m, len);
        if (rep0 == 0xFFFFFFFFu) return rc.overrun() ? "truncated: the stream ends inside the data" : "the stream ends before the requested bytes";
        if (rep0 >= pos) return "corrupt: a match reaches before the start of the data";
      }
      const size_t n = len + kMatchMinLen < out_size - pos ? len + kMatchMinLen : out_size - pos;
      const uint8_t* src = out + pos - rep0 - 1;
      for (size_t i = 0; i < n; ++i) out[pos + i] = src[i];  // byte by byte: source and target may overlap
      pos += n;
    }
    if (rc.overrun()) return "truncated: the stream ends inside the data";
    if (rc.corrupt()) return "corrupt: invalid direct bits";
  }
  return nullptr;
}

}  // namespace gems::lzma
