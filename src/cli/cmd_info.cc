// swarm info HOST:PORT[@KEY] [--timeout-ms MS]
// Asks a node what it serves and how busy it is (the Stage.Info RPC) and prints
// the answer as one JSON line (protobuf's JSON mapping: int64 counters are
// strings). Benchmarks read the compute and cancelled-compute counters from it.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <cstdio>

#include "cli/common.h"
#include "net/peer_address.h"
#include "pipeline/grpc_stage_transport.h"
#include "swarm/v1/stage.grpc.pb.h"

namespace swarm::cli {

void register_info(CLI::App& app) {
  struct Opts {
    std::string peer;
    int timeout_ms = 3000;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd =
      app.add_subcommand("info", "Print a node's Info (what it serves, its counters) as JSON");
  cmd->add_option("peer", o->peer, "HOST:PORT, or HOST:PORT@KEY for a node reached over pinned TLS")
      ->required();
  cmd->add_option("--timeout-ms", o->timeout_ms, "Deadline (default 3000)")
      ->check(CLI::Range(1, 600000));
  cmd->callback([o] {
    auto peer = net::parse_peer_spec(o->peer);
    if (!peer.ok()) fail("peer: " + peer.status().message());
    auto stub = v1::Stage::NewStub(stage_channel(peer->address, peer->pin));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(o->timeout_ms));
    v1::InfoResponse info;
    const grpc::Status s = stub->Info(&ctx, v1::InfoRequest(), &info);
    if (!s.ok()) fail(peer->address + ": " + s.error_message());
    std::string out;
    google::protobuf::util::JsonPrintOptions jo;
    jo.always_print_primitive_fields = true;
    jo.preserve_proto_field_names = true;
    (void)google::protobuf::util::MessageToJsonString(info, &out, jo);
    std::printf("%s\n", out.c_str());
  });
}

}  // namespace swarm::cli
