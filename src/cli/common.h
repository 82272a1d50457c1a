// Pieces every `swarm` subcommand shares: argument parsing helpers and the one
// way a command reports failure (a message on stderr naming the problem, then a
// non-zero exit).
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/compute_devices.h"
#include "engine/model.h"
#include "engine/status.h"
#include "engine/tokenizer.h"
#include "net/peer_address.h"

namespace swarm::cli {

// --no-mmap, as llama.cpp spells it.
inline constexpr const char* kNoMmapHelp =
    "Read the weights into (huge-page) memory instead of mapping the file: more memory "
    "while loading, faster decode";

// --device, as `swarm devices` names devices.
inline constexpr const char* kDeviceHelp =
    "Where the layers run: cpu, vulkan or vulkan:N, as `swarm devices` lists them (default: the "
    "first discrete GPU, else the CPU)";

// The machine's devices (list_compute_devices), asked once per process:
// opening the Vulkan loader takes a fifth of a second.
const DeviceList& machine_devices();

// The device to run on: `flag` when given, else this machine's default
// (engine/compute_devices.h: the first discrete GPU, else the CPU).
std::string device_or_default(const std::string& flag);

// Calls `start(device)` on device_or_default(flag). When no device was asked
// for and the default is not the CPU, a failure there (a model too big for
// the GPU, a driver that cannot run it) calls start("cpu") instead, with a
// warning saying why: a user who named no device gets a working command. A
// device asked for by name fails as it fails.
Status start_on_device(const std::string& flag,
                       const std::function<Status(const std::string& device)>& start);

// load_model on the device `device_flag` names (start_on_device's rule).
std::unique_ptr<Model> load_model_on(const std::string& path, LoadOptions options,
                                     const std::string& device_flag);

// Prints "swarm: <message>" and ends the command with exit code 1.
[[noreturn]] void fail(const std::string& message);
inline void check(const Status& st) {
  if (!st.ok()) fail(st.ToString());
}

// "1,2,3" -> {1, 2, 3}; rejects empty lists, non-numbers and negative ids.
Result<std::vector<int32_t>> parse_token_list(const std::string& s);
// "2G", "512M", "1024" -> bytes (K, M, G, T are powers of 1024).
Result<uint64_t> parse_bytes(const std::string& s);
using net::parse_host_port;  // net/peer_address.h
// "A:B" -> {A, B} with 0 <= A < B.
Result<std::pair<int, int>> parse_layer_range(const std::string& s);

// Makes the key file at `key_path` (swarm keygen) the identity this process
// presents to TLS nodes, or, for an empty path, an ephemeral one made now; logs
// which node id it calls as. Fails (exits) on a key file that does not load.
void use_caller_identity(const std::string& key_path);

// For the long-running servers (node, serve, gateway): freed heap memory up to
// 64 MiB stays with the process instead of going back to the kernel. Every
// request message is read into fresh heap memory; glibc's defaults return
// large frees to the kernel at once, so each megabyte-sized message (a
// prompt's hidden states, or a caller's oversized one that gRPC reads before
// refusing) paid for its pages' faults again: a third of the CPU time that
// refusing a stream of 2 MB messages cost a node.
void keep_freed_memory_for_reuse();

// Model::Load, with a progress bar on stderr when it is a terminal.
std::unique_ptr<Model> load_model(const std::string& path, const LoadOptions& options = {});
// The model's tokenizer, refused when its vocabulary is empty or larger than the
// model's `n_vocab` embedding rows.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, int n_vocab);
void write_f32(const std::string& path, const float* data, size_t n);

// Registration of each subcommand (one file each).
void register_logits(CLI::App& app);
void register_hidden(CLI::App& app);
void register_synth(CLI::App& app);
void register_convert(CLI::App& app);
void register_bench(CLI::App& app);
void register_generate(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_node(CLI::App& app);
void register_gateway(CLI::App& app);
void register_chat(CLI::App& app);
void register_loadgen(CLI::App& app);
void register_serve(CLI::App& app);
void register_keygen(CLI::App& app);
void register_info(CLI::App& app);
void register_spec_eval(CLI::App& app);
void register_dht(CLI::App& app);
void register_status(CLI::App& app);
void register_model_id(CLI::App& app);
void register_sim(CLI::App& app);
void register_devices(CLI::App& app);
void register_ledger(CLI::App& app);

}  // namespace swarm::cli
