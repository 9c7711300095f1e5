// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli inspect`: the header, sections and sizes of a bitstream,
// without decoding it.
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "cmd_codec_io.h"
#include "command_registry.h"
#include "kvscope/codec/bitstream.h"

namespace kvscope::cli {
namespace {

struct Options {
  std::string in;
  bool json = false;
  bool sections = false;
};

const CommandRegistrar inspect_command(220, [](CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("inspect", "Show a bitstream's header, sections and sizes by part");
  cmd->add_option("file", o->in, "bitstream (.kvc) or HDF5 container (.h5)")->required();
  cmd->add_flag("--json", o->json, "print JSON (always includes every section)");
  cmd->add_flag("--sections", o->sections, "list every section in text output");
  cmd->callback([o] {
    if (is_hdf5_file(o->in)) {  // the container's own summary (docs/hdf5-format.md)
      const auto j = hdf5_summary_json(o->in);
      if (o->json) {
        print_json(j);
        return;
      }
      const auto& m = j["model"];
      std::cout << o->in << ": KVScope HDF5 container, format " << j["format_version"] << ", written "
                << j["created_utc"].get<std::string>() << " by KVScope " << j["kvscope_version"].get<std::string>()
                << "\nmodel " << m["name"].get<std::string>() << ": " << m["layers"] << " layers x "
                << m["kv_heads"] << " kv heads x " << m["tokens"] << " tokens x " << m["head_dim"] << " dim\n";
      for (const auto& l : j["levels"])
        std::cout << "level " << l["index"] << ": " << l["codec"].get<std::string>() << ", " << l["encoded_bytes"]
                  << " bytes, " << l["bits_per_element"].get<double>() << " bits/element, " << l["sections"].size()
                  << " sections\n";
      std::cout << "reference data: " << (j["has_reference"].get<bool>() ? "yes" : "no")
                << "; all checksums verified\n";
      return;
    }
    const auto bytes = read_encoded_file(o->in);
    codec::StreamInfo info;
    try {
      info = codec::inspect_stream(bytes);
    } catch (const Error& e) {
      throw Error(e.code(), o->in, e.what());
    }
    std::size_t section_headers = 0, table = 0, chunk = 0;
    nlohmann::json sections = nlohmann::json::array();
    for (const auto& s : info.sections) {
      section_headers += s.header_bytes;
      (s.kind == codec::SectionKind::Table ? table : chunk) += s.payload_bytes;
      sections.push_back({{"kind", codec::to_string(s.kind)},
                          {"layer", s.layer},
                          {"kv", kv::to_string(s.kv)},
                          {"token_begin", s.token_begin},
                          {"token_count", s.token_count},
                          {"offset", s.offset},
                          {"payload_offset", s.payload_offset},
                          {"payload_bytes", s.payload_bytes},
                          {"crc32c", s.crc}});
    }
    const auto& sh = info.shape;
    nlohmann::json j = {
        {"file", o->in},
        {"format_version", info.format_version},
        {"codec", info.codec},
        {"codec_version", info.codec_version},
        {"params", info.params},
        {"shape",
         {{"layers", sh.layers},
          {"kv_heads", sh.kv_heads},
          {"tokens", sh.tokens},
          {"head_dim", sh.head_dim}}},
        {"cache_info",
         {{"model_name", info.info.model_name},
          {"architecture", info.info.architecture},
          {"model_sha256", info.info.model_sha256},
          {"rope_applied", info.info.rope_applied},
          {"rope_theta", info.info.rope_theta},
          {"token_ids", info.info.token_ids.size()},
          {"positions", info.info.positions.size()}}},
        {"sizes",
         {{"total_bytes", info.total_bytes},
          {"header_bytes", info.header_bytes},
          {"codec_header_bytes", info.codec_header_bytes},
          {"section_header_bytes", section_headers},
          {"table_section_bytes", table},
          {"chunk_section_bytes", chunk},
          {"bits_per_element", sh.elements() ? 8.0 * double(info.total_bytes) / double(sh.elements()) : 0.0},
          {"ratio_vs_fp16", info.total_bytes ? double(sh.fp16_bytes()) / double(info.total_bytes) : 0.0}}},
        {"sections", sections},
    };
    if (o->json) {
      print_json(j);
      return;
    }
    std::cout << o->in << ": codec " << info.codec << " (format " << info.format_version << ")\n"
              << "shape: " << sh.layers << " layers x " << sh.kv_heads << " kv heads x " << sh.tokens
              << " tokens x " << sh.head_dim << " dim\n"
              << "params:";
    for (const auto& [k, v] : info.params) std::cout << " " << k << "=" << v;
    std::cout << "\nsizes: total " << info.total_bytes << ", header " << info.header_bytes
              << ", section headers " << section_headers << ", tables " << table << ", chunks " << chunk
              << "\n"
              << info.sections.size() << " sections\n";
    if (o->sections)
      for (const auto& s : info.sections)
        std::cout << "  " << codec::to_string(s.kind) << " layer " << s.layer << " " << kv::to_string(s.kv)
                  << " tokens " << s.token_begin << "+" << s.token_count << " at " << s.offset << ", "
                  << s.payload_bytes << " bytes\n";
  });
});

}  // namespace
}  // namespace kvscope::cli
