#pragma once

#include <filesystem>

#include "kvscope/kv/kv_cache.h"

namespace kvscope::io {

enum class RawDtype { F16, F32 };

/// Writes `cache` as safetensors (docs/architecture.md, "Files"): tensors
/// `layers.{i}.key` and `layers.{i}.value` shaped [kv_heads, tokens, head_dim]
/// plus `token_ids`/`positions` (I32) when present; metadata names the model,
/// token count and whether RoPE is applied. Written atomically.
void save_cache(const kv::KVCache& cache, const std::filesystem::path& path,
                RawDtype dtype = RawDtype::F16);

/// Reads a cache written by save_cache or by another stack using the same
/// tensor names (F32, F16 or BF16). Throws Error(Format) naming the file on
/// missing layers, inconsistent shapes or bad metadata.
kv::KVCache load_cache(const std::filesystem::path& path);

}  // namespace kvscope::io
