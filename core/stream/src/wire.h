// SPDX-License-Identifier: Apache-2.0
#pragma once

// Framing of the chunk-server protocol between a receiver and a
// `kvscope-cli serve` sender process (internal; docs/streaming.md,
// "Sender process"). Every message is a 32-byte header and its payload:
//   0  magic "KVSF"           4  version (2)       5  type (FrameType)
//   6  reserved (u16, 0)      8  reserved (u32, 0)
//   12 payload length (u64)   20 payload CRC32C    24 reserved (0)
//   28 CRC32C of bytes 0..27
// All integers little-endian. Requests carry a key (Get) or a key prefix
// (List); replies carry the value, the keys one per line, or an error text.
// The header CRC is checked before the length is trusted, so a corrupted
// length cannot make the receiver allocate or wait for gigabytes; the
// payload CRC catches bytes altered in transit.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace kvscope::stream::wire {

inline constexpr std::size_t kHeaderBytes = 32;
inline constexpr std::uint8_t kVersion = 2;
/// No value may be larger (a 1K-token chunk of a 70B model at fp16 is about 330 MB).
inline constexpr std::uint64_t kMaxPayload = std::uint64_t(1) << 31;
/// Requests (keys, prefixes) are short.
inline constexpr std::uint64_t kMaxRequest = 4096;

enum class FrameType : std::uint8_t {
  Get = 1,      ///< request: payload = key
  List = 2,     ///< request: payload = key prefix
  Value = 3,    ///< reply to Get: payload = the value
  Missing = 4,  ///< reply to Get: no such key (no payload)
  Keys = 5,     ///< reply to List: keys separated by '\n'
  Failed = 6,   ///< reply: the server could not serve (payload = message)
};

struct Header {
  FrameType type = FrameType::Get;
  std::uint64_t payload_bytes = 0;
  std::uint32_t payload_crc = 0;
};

std::array<std::uint8_t, kHeaderBytes> encode_header(const Header& h);

/// Parses and validates a header: Error(Checksum) when its CRC fails,
/// Error(Format) for a bad magic, version, type or length.
Header decode_header(std::span<const std::uint8_t> bytes);

}  // namespace kvscope::stream::wire
