// SPDX-License-Identifier: Apache-2.0
#include "wire.h"

#include <cstring>

#include "kvscope/common/crc32c.h"
#include "kvscope/common/error.h"

namespace kvscope::stream::wire {
namespace {

template <typename T>
void put(std::uint8_t* p, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<std::uint8_t>(std::uint64_t(v) >> (8 * i));
}
template <typename T>
T get(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) v |= std::uint64_t(p[i]) << (8 * i);
  return static_cast<T>(v);
}

}  // namespace

std::array<std::uint8_t, kHeaderBytes> encode_header(const Header& h) {
  std::array<std::uint8_t, kHeaderBytes> b{};
  std::memcpy(b.data(), "KVSF", 4);
  b[4] = kVersion;
  b[5] = static_cast<std::uint8_t>(h.type);
  put<std::uint64_t>(b.data() + 12, h.payload_bytes);
  put<std::uint32_t>(b.data() + 20, h.payload_crc);
  put<std::uint32_t>(b.data() + 28, crc32c(std::span<const std::uint8_t>(b.data(), 28)));
  return b;
}

Header decode_header(std::span<const std::uint8_t> b) {
  require(b.size() == kHeaderBytes, ErrorCode::Format, "frame header truncated");
  const std::uint32_t crc = get<std::uint32_t>(b.data() + 28);
  require(crc == crc32c(b.first(28)), ErrorCode::Checksum,
          "frame header CRC mismatch (bytes altered in transit)");
  require(std::memcmp(b.data(), "KVSF", 4) == 0, ErrorCode::Format, "bad frame magic");
  require(b[4] == kVersion, ErrorCode::Format, "unsupported frame version " + std::to_string(b[4]));
  Header h;
  const std::uint8_t type = b[5];
  require(type >= 1 && type <= 6, ErrorCode::Format, "unknown frame type " + std::to_string(type));
  h.type = static_cast<FrameType>(type);
  h.payload_bytes = get<std::uint64_t>(b.data() + 12);
  h.payload_crc = get<std::uint32_t>(b.data() + 20);
  const bool request = h.type == FrameType::Get || h.type == FrameType::List;
  const std::uint64_t limit = request ? kMaxRequest : kMaxPayload;
  require(h.payload_bytes <= limit, ErrorCode::Format,
          "frame payload length " + std::to_string(h.payload_bytes) + " exceeds the limit");
  return h;
}

}  // namespace kvscope::stream::wire
