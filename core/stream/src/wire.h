#pragma once

// Framing of the streaming protocol (internal). Every message is a 32-byte
// header followed by its payload:
//   0  magic "KVSF"           4  version (1)       5  type (FrameType)
//   6  level (int16, -1 = text)  8  chunk index (u32)
//   12 payload length (u64)   20 payload CRC32C (text frames; 0 for KV
//   chunks, whose bitstream carries its own CRCs)   24 reserved (0)
//   28 CRC32C of bytes 0..27
// All integers little-endian. The header CRC is checked before the length is
// trusted, so a corrupted length cannot make the receiver allocate or wait
// for gigabytes.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace kvscope::stream::wire {

inline constexpr std::size_t kHeaderBytes = 32;
inline constexpr std::uint8_t kVersion = 1;
/// No chunk frame may be larger (a 1K-token chunk of a 70B model at fp16 is
/// about 330 MB).
inline constexpr std::uint64_t kMaxPayload = std::uint64_t(1) << 31;

enum class FrameType : std::uint8_t { Chunk = 1, Text = 2, End = 3 };

struct Header {
  FrameType type = FrameType::Chunk;
  std::int16_t level = 0;
  std::uint32_t chunk = 0;
  std::uint64_t payload_bytes = 0;
  std::uint32_t payload_crc = 0;
};

std::array<std::uint8_t, kHeaderBytes> encode_header(const Header& h);

/// Parses and validates a header: Error(Checksum) when its CRC fails,
/// Error(Format) for a bad magic, version, type or length.
Header decode_header(std::span<const std::uint8_t> bytes);

}  // namespace kvscope::stream::wire
