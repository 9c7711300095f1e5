// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace kvscope {

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by the
/// bitstream and HDF5 checksums. `crc32c("123456789") == 0xE3069283`.
/// `seed` lets a checksum be computed over several buffers in sequence:
/// crc32c(b, crc32c(a)) == crc32c(a + b).
std::uint32_t crc32c(std::span<const std::uint8_t> data, std::uint32_t seed = 0);

}  // namespace kvscope
