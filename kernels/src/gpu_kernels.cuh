#pragma once

// Kernels shared by the whole-table codec and the streaming decoder.
//
// Thread mapping: one thread per independent stream, i.e. per (chunk, layer,
// kind, channel). Thread j of a chunk is channel model j, so neighbouring
// threads are neighbouring (head, dim) channels and their fp16 writes for a
// token land in consecutive addresses (coalesced 64-byte warp stores). Each
// thread reads its own stream bytes sequentially (through L1) and its own
// channel's CDFs (a few hundred bytes, L1/L2 resident).

#include <cuda_runtime.h>

#include <cstdint>

#include "kvscope/kernels/detail/range_coder.h"
#include "kvscope/kernels/detail/stream_codec.h"
#include "kvscope/kernels/stream_table.h"

namespace kvscope::kernels::gpu {

constexpr int kBlock = 128;

struct Geometry {
  std::uint32_t streams_per_chunk;  // layers * 2 * channels
  int channels, kv_heads, head_dim, tokens, chunk_tokens, group_size;
};

inline Geometry geometry_of(const StreamTable& t) {
  return Geometry{static_cast<std::uint32_t>(t.streams_per_chunk()),
                  t.shape.channels(),
                  t.shape.kv_heads,
                  t.shape.head_dim,
                  t.shape.tokens,
                  t.chunk_tokens,
                  t.group_size};
}

// Where stream j of chunk c starts in the output, and its token count.
__device__ __forceinline__ std::uint64_t stream_out_offset(const Geometry& g, int chunk, std::uint32_t j) {
  const std::uint32_t lk = j / g.channels;
  const int ch = static_cast<int>(j - lk * g.channels);
  const int head = ch / g.head_dim, dim = ch - head * g.head_dim;
  return (static_cast<std::uint64_t>(lk) * g.kv_heads + head) * static_cast<std::uint64_t>(g.tokens) *
             g.head_dim +
         static_cast<std::uint64_t>(chunk) * g.chunk_tokens * g.head_dim + dim;
}
__device__ __forceinline__ std::uint32_t chunk_len(const Geometry& g, int chunk) {
  const int rest = g.tokens - chunk * g.chunk_tokens;
  return static_cast<std::uint32_t>(rest < g.chunk_tokens ? rest : g.chunk_tokens);
}

// Decodes chunks [first_chunk, first_chunk + chunks) on `stream`.
// offsets[(chunk - first_chunk) * S + j] .. offsets[... + 1] are stream j's
// bytes in `payload` (validated on the host). Error flags are OR-ed into *flags.
void launch_decode_chunks(const std::uint8_t* payload, const std::uint64_t* offsets, int first_chunk,
                          int chunks, const Geometry& g, const ChannelModel* models,
                          const std::uint16_t* cdfs, std::uint16_t* out, std::uint32_t* flags,
                          cudaStream_t stream);

}  // namespace kvscope::kernels::gpu
