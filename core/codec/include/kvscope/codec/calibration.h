// SPDX-License-Identifier: Apache-2.0
#pragma once

// Per-model symbol distributions for `cachegen` ("profile" mode): computed
// once from calibration caches, stored as a file named by its hash, and
// referenced from each bitstream by that hash, so no tables are shipped.

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include "kvscope/codec/channel_weighting.h"
#include "kvscope/codec/codec.h"

namespace kvscope::codec::calibration {

/// Where profiles live by default: $KVSCOPE_PROFILE_DIR if set, else
/// $XDG_CACHE_HOME/kvscope/profiles, else ~/.cache/kvscope/profiles.
std::filesystem::path default_profile_dir();

/// The calibration folder's files made for the model `info` names (by
/// SHA-256 when both have one, else by model name), in name order; empty when
/// the folder has none or does not exist (files that do not parse are no
/// model's). What cachegen's defaults draw their channel weighting and tables
/// from (`channel_weighting=calibrated`, `profile=auto`).
std::vector<std::filesystem::path> model_calibration_files(const kv::CacheInfo& info);

/// File name extension of profiles.
inline constexpr const char* kProfileExtension = ".kvsprof";

/// Builds a cachegen profile (file bytes) from calibration caches using the
/// cachegen parameters `params` (bins, layer splits, group size, chunk size;
/// `profile` must be empty). All caches must share layers, kv_heads and
/// head_dim (Error(InvalidArgument) otherwise, or when `caches` is empty).
/// With `weighting` (channel_weighting=calibrated in `params`, scale token or
/// head), the tables are counted on the weighted values and the bins scaled
/// as encoders scale them (kvscope/codec/channel_weighting.h), so streams
/// weighted the same way fit them; Error(InvalidArgument) when the weighting
/// is for another shape.
std::vector<std::uint8_t> build_profile(std::span<const kv::KVCache> caches, const ParamSet& params,
                                        const ProgressFn& progress = {},
                                        const ChannelWeighting* weighting = nullptr);

/// The hash a bitstream uses to reference a profile: 16 lowercase hex digits
/// (FNV-1a 64 of the file bytes).
std::string profile_hash(std::span<const std::uint8_t> profile_bytes);

/// Writes the profile to `dir`/<hash>.kvsprof atomically (creating `dir`)
/// and returns the path. Error(Io) on failure.
std::filesystem::path save_profile(std::span<const std::uint8_t> profile_bytes,
                                   const std::filesystem::path& dir);

}  // namespace kvscope::codec::calibration
