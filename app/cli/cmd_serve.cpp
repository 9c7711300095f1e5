// SPDX-License-Identifier: Apache-2.0
// `kvscope-cli serve`: the sender process of the plain-TCP mode. Serves a
// chunk store's values (optionally publishing a context into it first) to
// receivers that open it as tcp://HOST:PORT, until SIGINT or SIGTERM.
#include <csignal>
#include <iostream>
#include <memory>

#include "cli_util.h"
#include "command_registry.h"
#include "kvscope/stream/chunk_server.h"
#include "kvscope/stream/manifest.h"
#include "kvscope/stream/streamer.h"
#include "stream_context.h"

namespace kvscope::cli {
namespace {

struct Options {
  std::string store = "memory:";
  std::string bind = "127.0.0.1";
  int port = 0;
  StreamContextOptions context;
  std::string ladder;
  int chunk_tokens = 1024;
  std::int64_t corrupt_at = -1, cut_after = -1;
  bool log_requests = false;
};

void run(const Options& o) {
  // Block the stop signals before any thread starts, then wait for one.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  std::shared_ptr<stream::ChunkStore> store = stream::open_store(o.store);
  if (!o.context.context.empty() || !o.context.cache.empty()) {
    const auto progress = terminal_progress();
    StreamContext ctx = load_stream_context(o.context, false, progress);
    const auto ladder = stream::load_ladder(o.ladder.empty() ? stream::default_ladder_path()
                                                             : std::filesystem::path(o.ladder));
    stream::EncodedContext context(ctx.cache, o.chunk_tokens);
    std::vector<codec::CodecConfig> configs;
    for (const auto& l : ladder.levels) configs.push_back(l.config);
    stream::PrepareOptions prep;
    prep.progress = progress;
    context.prepare(configs, prep);
    const auto r = stream::publish(context, ladder.levels, *store, progress);
    std::cout << "published " << r.manifest.manifest_key() << "\n";
  }
  stream::ServerOptions so;
  so.bind = o.bind;
  so.port = o.port;
  so.fault.corrupt_at = o.corrupt_at;
  so.fault.cut_after = o.cut_after;
  if (o.log_requests)
    so.on_request = [](const std::string& verb, const std::string& key) {
      std::cout << verb << " " << key << std::endl;
    };
  stream::ChunkServer server(store, so);
  // Tests and scripts read this line to learn the port.
  std::cout << "serving " << store->describe() << " on tcp://" << server.address() << std::endl;
  int sig = 0;
  sigwait(&stop, &sig);
  server.stop();
  std::cout << "stopped after " << server.requests() << " requests" << std::endl;
}

const CommandRegistrar serve_command(61, [](CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "serve", "Sender process: serve a chunk store to receivers over TCP (tcp://HOST:PORT)");
  cmd->add_option("--store", o->store, "the store to serve: memory:, dir:PATH or redis://...")
      ->capture_default_str();
  cmd->add_option("--bind", o->bind, "IPv4 address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "port (0 = any free; the chosen one is printed)")->capture_default_str();
  add_stream_context_options(cmd, o->context);
  cmd->add_option("--ladder", o->ladder, "with --context/--cache: codec ladder to publish");
  cmd->add_option("--chunk-tokens", o->chunk_tokens, "with --context/--cache: tokens per chunk")
      ->capture_default_str();
  cmd->add_option("--fault-corrupt-at", o->corrupt_at,
                  "testing: flip the byte at this offset of each connection");
  cmd->add_option("--fault-cut-after", o->cut_after, "testing: close each connection after this many bytes");
  cmd->add_flag("--log-requests", o->log_requests, "print each request (GET KEY / LIST PREFIX) on stdout");
  cmd->callback([o] { run(*o); });
});

}  // namespace
}  // namespace kvscope::cli
