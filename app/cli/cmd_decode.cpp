// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli decode`: a KVScope bitstream -> a raw cache (safetensors).
#include <chrono>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "cmd_codec_io.h"
#include "command_registry.h"
#if KVSCOPE_HAVE_CUDA
#include "kvscope/kernels/gpu_bitstream.h"
#endif

namespace kvscope::cli {
namespace {

struct Options {
  std::string in, out, calibration_dir;
  int threads = 0;
  int level = 0;
  bool json = false;
  bool cpu = false;
};

// Decodes on the GPU when this build has the CUDA kernels and a device is
// present (and the GPU implements the stream), on the CPU otherwise; says
// which, and why not the GPU (`why_cpu`, "" when the GPU decoded it).
kv::KVCache decode_on_best_backend(std::span<const std::uint8_t> bytes, const codec::DecodeOptions& d,
                                   bool force_cpu, std::string& backend, std::string& why_cpu) {
#if KVSCOPE_HAVE_CUDA
  if (!force_cpu) {
    auto r = kernels::decode_auto(bytes, d);
    backend = r.backend;
    why_cpu = r.fallback_reason;
    return std::move(r.cache);
  }
  why_cpu = "--cpu given";
#else
  why_cpu = force_cpu ? "--cpu given" : "this build has no CUDA kernels";
#endif
  backend = "cpu";
  return codec::decode(bytes, d);
}

const CommandRegistrar decode_command(210, [](CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd =
      app.add_subcommand("decode", "Decode a KVScope bitstream back into a raw KV cache (safetensors)");
  cmd->add_option("--in", o->in, "bitstream (.kvc) or HDF5 container (.h5)")->required();
  cmd->add_option("--out", o->out, "output raw cache (.safetensors)")->required();
  // --profile-dir: the older name, kept for scripts.
  cmd->add_option(
      "--calibration-dir,--profile-dir", o->calibration_dir,
      "folder of calibration files (default: $KVSCOPE_CALIBRATION_DIR, else ~/.cache/kvscope/profiles)");
  cmd->add_option("--threads", o->threads, "worker threads (0 = all)");
  cmd->add_flag("--json", o->json, "print a JSON summary");
  cmd->add_flag("--cpu", o->cpu, "decode on the CPU even when a CUDA device is present");
  cmd->add_option("--level", o->level, "with --in FILE.h5: which level to decode (default 0)");
  cmd->callback([o] {
    const auto bytes = read_encoded_file(o->in, o->level);
    codec::DecodeOptions d;
    d.threads = o->threads;
    d.profile_dir = o->calibration_dir;
    d.progress = o->json ? ProgressFn{} : terminal_progress();
    const auto t0 = std::chrono::steady_clock::now();
    kv::KVCache cache;
    std::string backend, why_cpu;
    try {
      cache = decode_on_best_backend(bytes, d, o->cpu, backend, why_cpu);
    } catch (const Error& e) {
      throw Error(e.code(), o->in, e.what());
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    write_cache_file(cache, o->out);
    const auto& s = cache.shape();
    if (o->json) {
      print_json({{"out", o->out},
                  {"layers", s.layers},
                  {"kv_heads", s.kv_heads},
                  {"tokens", s.tokens},
                  {"head_dim", s.head_dim},
                  {"decode_seconds", secs},
                  {"backend", backend},
                  {"cpu_reason", why_cpu}});
      return;
    }
    std::cout << o->out << ": " << s.layers << " layers, " << s.tokens << " tokens, decoded in " << secs
              << " s on " << backend << (why_cpu.empty() ? "" : " (not on the GPU: " + why_cpu + ")") << "\n";
  });
});

}  // namespace
}  // namespace kvscope::cli
