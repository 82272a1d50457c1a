// swarm keygen [-o PATH] [--force]
// Creates a node's Ed25519 identity in a key file readable by its owner only
// (default ~/.config/swarm/node.key, its folder created with mode 0700) and prints
// the node id. An existing key file is left alone unless --force: replacing it
// gives the node a new identity, and peers forget what they knew of the old one.
#include <cstdio>

#include "cli/common.h"
#include "net/identity.h"

namespace swarm::cli {

void register_keygen(CLI::App& app) {
  struct Opts {
    std::string path;
    bool force = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmd =
      app.add_subcommand("keygen", "Create this node's identity key and print its node id");
  cmd->add_option("-o,--output", o->path, "Key file (default ~/.config/swarm/node.key)");
  cmd->add_flag("--force", o->force, "Replace an existing key file (the node gets a new identity)");
  cmd->callback([o] {
    std::string path = o->path;
    if (path.empty()) {
      auto def = net::default_key_path();
      check(def.status());
      path = *def;
    }
    if (!o->force) {
      auto existing = net::Identity::Load(path);
      if (existing.ok())
        fail(path + " already holds the key of node " + existing->node_id() +
             "; use --force to replace it with a new identity");
      if (existing.status().code() != Status::Code::kNotFound)
        fail(existing.status().ToString() + " (use --force to replace it)");
    }
    auto id = net::Identity::Generate();
    check(id.status());
    check(id->Save(path, o->force));
    std::fprintf(stderr, "swarm: wrote %s\n", path.c_str());
    std::printf("%s\n", id->node_id().c_str());
  });
}

}  // namespace swarm::cli
