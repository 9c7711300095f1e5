// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli encode`: a raw cache -> a KVScope bitstream, with a size report.
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "cmd_codec_io.h"
#include "command_registry.h"

namespace kvscope::cli {
namespace {

nlohmann::json size_json(const codec::EncodeResult& r, const std::string& codec,
                         const kv::CacheShape& shape) {
  const auto& s = r.size;
  const double int8 = double(codec::int8_reference_bytes(shape));
  return {
      {"codec", codec},
      {"original_bytes", s.original_bytes},
      {"encoded_bytes", s.encoded_bytes},
      {"header_bytes", s.header_bytes},
      {"table_bytes", s.table_bytes},
      {"step_bytes", s.step_bytes},
      {"payload_bytes", s.payload_bytes},
      {"elements", s.elements},
      {"bits_per_element", s.bits_per_element()},
      {"entropy_bits_per_element", s.entropy_bits_per_element},
      {"ratio_vs_fp16", s.ratio_vs_fp16()},
      {"ratio_vs_int8", s.encoded_bytes ? int8 / double(s.encoded_bytes) : 0.0},
      {"encode_seconds", r.seconds},
  };
}

struct Options {
  std::string in, out, codec = "cachegen";
  std::vector<std::string> settings;
  int threads = 0;
  bool json = false;
  Hdf5WriteOptions h5;  // only for --out FILE.h5
};

const CommandRegistrar encode_command(200, [](CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("encode", "Encode a raw KV cache (safetensors) into a KVScope bitstream");
  cmd->add_option("--in", o->in, "raw cache (.safetensors)")->required();
  cmd->add_option("--out", o->out, "output bitstream (.kvc), or HDF5 container (.h5)")->required();
  cmd->add_option("--codec", o->codec, "codec name (see `kvscope-cli codecs`)")->required();
  cmd->add_option("--set", o->settings, "codec parameter key=value (repeatable)");
  cmd->add_option("--threads", o->threads, "worker threads (0 = all)");
  cmd->add_flag("--json", o->json, "print the size report as JSON");
  cmd->add_flag("--force,--overwrite", o->h5.force, "replace an existing .h5 file");
  cmd->add_flag("--include-reference", o->h5.include_reference,
                "with --out FILE.h5: also store the original cache (fp16, compressed)");
  cmd->add_option("--text", o->h5.text_file,
                  "with --out FILE.h5: store this file's text as the context text");
  cmd->callback([o] {
    const auto cache = read_cache_file(o->in);
    const codec::CodecConfig config{o->codec, parse_settings(o->settings)};
    codec::EncodeOptions eo;
    eo.threads = o->threads;
    eo.progress = o->json ? ProgressFn{} : terminal_progress();
    const auto r = codec::encode(cache, config, eo);
    if (is_hdf5_file(o->out)) {
      write_hdf5_file(r.bytes, cache, o->out, o->h5);  // docs/hdf5-format.md
    } else {
      write_encoded_file(r, config, o->out);
    }
    auto j = size_json(r, o->codec, cache.shape());
    j["out"] = o->out;
    if (o->json) {
      print_json(j);
      return;
    }
    std::cout << o->out << ": " << r.size.encoded_bytes << " bytes, " << r.size.bits_per_element()
              << " bits/element, " << r.size.ratio_vs_fp16() << "x vs fp16, "
              << j["ratio_vs_int8"].get<double>() << "x vs int8, " << r.seconds << " s\n";
    const double el = r.size.elements ? double(r.size.elements) : 1.0;
    auto bpe = [&](std::size_t bytes) { return 8.0 * double(bytes) / el; };
    std::cout << "  bits/element: headers " << bpe(r.size.header_bytes) << ", tables "
              << bpe(r.size.table_bytes) << ", steps " << bpe(r.size.step_bytes) << ", payload "
              << bpe(r.size.payload_bytes) << "\n";
  });
});

}  // namespace
}  // namespace kvscope::cli
