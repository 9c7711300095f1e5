// SPDX-License-Identifier: Apache-2.0
// "Real mode" with two processes: `kvscope-cli serve` is the sender,
// `kvscope-cli stream --store tcp://...` the receiver, both started here.
// Also the store commands against a folder store, and the sender process
// killed mid-stream (the receiver ends with a clear status, in time).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "child_process.h"
#include "kvscope/common/paths.h"
#include "kvscope/io/raw_cache.h"
#include "redis_fixture.h"
#include "stream_fixture.h"

namespace kvscope::stream {
namespace {

using testing::ChildProcess;
using testing::ScratchDir;

struct Run {
  int exit_code = -1;
  std::string out;
};

/// Runs kvscope-cli with `args` to completion (at most `seconds`).
Run cli(const std::vector<std::string>& args, const std::filesystem::path& err, double seconds = 60) {
  std::vector<std::string> argv{KVSCOPE_CLI_PATH};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess p(argv, err.string());
  Run r;
  r.out = p.read_all(seconds);
  const auto status = p.wait_for(seconds);
  if (status && WIFEXITED(*status)) r.exit_code = WEXITSTATUS(*status);
  return r;
}

class TwoProcesses : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cache = testing::synthetic_context(512);
    cache->info.model_name = "synthetic";
    cache_path = (dir.path / "context.safetensors").string();
    io::save_cache(*cache, cache_path, io::RawDtype::F32);
    store = "dir:" + (dir.path / "store").string();
    ladder = (resource_dir() / "ladders" / "quantization.json").string();
    const auto put = cli({"store", "put", "--store", store, "--cache", cache_path, "--ladder", ladder,
                          "--chunk-tokens", "64", "--json"},
                         dir.path / "put.err");
    ASSERT_EQ(put.exit_code, 0) << put.out << read_file(dir.path / "put.err");
    const auto j = nlohmann::json::parse(put.out);
    EXPECT_EQ(j["chunks"], 8);
    EXPECT_EQ(j["levels"].size(), 2u);
    manifest_key = j["manifest_key"];
  }

  /// Starts `kvscope-cli serve` on a free port and returns its tcp:// spec.
  std::string serve(ChildProcess& server) {
    server = ChildProcess({KVSCOPE_CLI_PATH, "serve", "--store", store, "--port", "0", "--log-requests"},
                          (dir.path / "serve.err").string());
    const auto line = server.read_line(30);
    EXPECT_TRUE(line.has_value()) << read_file(dir.path / "serve.err");
    if (!line) return "";
    const auto at = line->find("tcp://");
    EXPECT_NE(at, std::string::npos) << *line;
    return line->substr(at);
  }

  ScratchDir dir{"two_process"};
  std::string cache_path, store, ladder, manifest_key;
};

TEST_F(TwoProcesses, StoreCommandsListGetAndRemove) {
  auto ls = cli({"store", "ls", "--store", store, "--json"}, dir.path / "ls.err");
  ASSERT_EQ(ls.exit_code, 0);
  const auto keys = nlohmann::json::parse(ls.out)["keys"];
  EXPECT_EQ(keys.size(), 8u * 2u + 1u);
  std::string chunk;
  for (const auto& k : keys)
    if (k["kind"] == "chunk") chunk = k["key"];
  auto get = cli({"store", "get", "--store", store, chunk}, dir.path / "get.err");
  ASSERT_EQ(get.exit_code, 0) << read_file(dir.path / "get.err");
  EXPECT_EQ(nlohmann::json::parse(get.out)["bitstream"]["crc"], "ok");
  auto manifest = cli({"store", "get", "--store", store, manifest_key}, dir.path / "get.err");
  EXPECT_EQ(nlohmann::json::parse(manifest.out)["manifest"]["tokens"], 512);
  // A damaged chunk is reported by key, with a non-zero exit.
  const auto path = dir.path / "store" / chunk;
  auto bytes = read_file(path);
  bytes[bytes.size() / 2] ^= 1;
  write_file_atomically(path, bytes.data(), bytes.size());
  auto bad = cli({"store", "get", "--store", store, chunk}, dir.path / "bad.err");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(read_file(dir.path / "bad.err").find(chunk), std::string::npos);
  auto rm = cli({"store", "rm", "--store", store, chunk}, dir.path / "rm.err");
  EXPECT_EQ(rm.exit_code, 0);
  EXPECT_NE(rm.out.find("removed 1 of 1"), std::string::npos) << rm.out;
}

TEST_F(TwoProcesses, ReceiverStreamsFromASeparateSenderProcess) {
  ChildProcess server;
  const std::string spec = serve(server);
  ASSERT_FALSE(spec.empty());
  const auto r = cli({"stream", "--store", spec, "--cache", cache_path, "--chunk-tokens", "64", "--trace",
                      "constant-20mbps", "--slo", "5", "--policy", "adaptive", "--json"},
                     dir.path / "stream.err");
  ASSERT_EQ(r.exit_code, 0) << r.out << read_file(dir.path / "stream.err");
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["status"], "ok");
  EXPECT_EQ(j["mode"], "real");
  EXPECT_EQ(j["store"], spec);
  EXPECT_EQ(j["chunks"].size(), 8u);
  for (const auto& c : j["chunks"]) {
    EXPECT_TRUE(c["decoded"].get<bool>());
    EXPECT_EQ(c["node"], spec.substr(6));
  }
  EXPECT_GT(j["bytes_sent"].get<double>(), 0);
  server.kill(SIGTERM);
}

// `--decode-rate`: a simulated run charges every chunk's decode at the rate
// given (the machine's own speed no longer enters the timeline).
TEST_F(TwoProcesses, DecodeRateIsWhatEachSimulatedDecodeIsCharged) {
  const auto r = cli(
      {"stream", "--store", store, "--cache", cache_path, "--chunk-tokens", "64", "--trace",
       "constant-20mbps", "--slo", "5", "--policy", "int8", "--simulate", "--decode-rate", "1000", "--json"},
      dir.path / "stream.err");
  ASSERT_EQ(r.exit_code, 0) << r.out << read_file(dir.path / "stream.err");
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["chunks"].size(), 8u);
  for (const auto& c : j["chunks"]) EXPECT_DOUBLE_EQ(c["decode_seconds"].get<double>(), 64 / 1000.0);
  const auto bad = cli({"stream", "--store", store, "--cache", cache_path, "--trace", "constant-20mbps",
                        "--slo", "5", "--simulate", "--decode-rate", "-1"},
                       dir.path / "bad.err");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(read_file(dir.path / "bad.err").find("--decode-rate"), std::string::npos)
      << read_file(dir.path / "bad.err");
}

TEST_F(TwoProcesses, SenderKilledMidStreamEndsWithANetworkError) {
  ChildProcess server;
  const std::string spec = serve(server);
  ASSERT_FALSE(spec.empty());
  // About 0.26 s per int8 chunk at 2 Mbit/s: the sender dies during chunk 2-3.
  const auto trace = (dir.path / "slow.json").string();
  const std::string text = R"({"name": "slow", "kind": "constant", "mbps": 2})";
  write_file_atomically(trace, text.data(), text.size());
  ChildProcess receiver(
      {KVSCOPE_CLI_PATH, "stream", "--store", spec, "--cache", cache_path, "--chunk-tokens", "64", "--trace",
       trace, "--slo", "30", "--policy", "int8", "--store-timeout", "1", "--json"},
      (dir.path / "stream.err").string());
  // Kill the sender once it has served the manifest and two chunks.
  int gets = 0;
  while (gets < 3) {
    const auto line = server.read_line(30);
    ASSERT_TRUE(line.has_value()) << "the receiver never asked";
    gets += line->rfind("GET ", 0) == 0;
  }
  server.kill(SIGKILL);
  const auto out = receiver.read_all(20);
  const auto status = receiver.wait_for(20);
  ASSERT_TRUE(status.has_value()) << "the receiver hung";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["status"], "network_error");
  EXPECT_NE(j["error"].get<std::string>().find(spec), std::string::npos) << j["error"];
  EXPECT_GE(j["failed_chunk"].get<int>(), 1);
  EXPECT_NE(read_file(dir.path / "stream.err").find("error"), std::string::npos);
}

}  // namespace
}  // namespace kvscope::stream
