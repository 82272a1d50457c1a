// The common ground of the swarm tests (plaintext, TLS, DHT, speculation): a
// fixture that finds the tiny test model, gives each test a folder of its own
// for its processes' logs, starts real `swarm node` and `swarm gateway`
// processes on 127.0.0.1, makes identities with `swarm keygen`, asks a gateway
// for completions, and runs the kill/stall test that the --peers swarm and the
// DHT swarm share.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "engine/model_loader.h"
#include "engine/test_data.h"
#include "engine/test_process.h"
#include "swarm_client.h"

namespace swarm::testing {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A TCP socket on 127.0.0.1 at a port the kernel picked; listening (but never
// accepting) unless `listen_too` is false. port() is 0 if that failed.
class LoopbackSocket {
 public:
  explicit LoopbackSocket(bool listen_too) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        (listen_too && ::listen(fd_, 64) != 0) ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      return;
    port_ = ntohs(a.sin_port);
  }
  ~LoopbackSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  LoopbackSocket(const LoopbackSocket&) = delete;
  LoopbackSocket& operator=(const LoopbackSocket&) = delete;
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A port nobody listens on now (connections to it are refused), for a process
// to bind a moment later or for an address that answers nothing.
inline int free_port() { return LoopbackSocket(/*listen_too=*/false).port(); }

// An address where the TCP handshake completes but nothing ever answers, as
// when packets to a node's announced address are dropped (NAT, firewall): a
// caller waits out its deadline.
using SilentListener = LoopbackSocket;

// Prompts the swarm tests generate from: plain prose, digits, code-like text,
// accents and a tab, so tokenizers and chains see more than one kind of text.
inline const char* const kPrompts[] = {
    "The licensee may copy and distribute verbatim copies of the Program's source code",
    "Hello world! 12345 tokens",
    "Once upon a time",
    "In the beginning",
    "Copyright (C) 1989, 1991 Free Software Foundation",
    "emojis and accents",
    "New paragraph\twith tab.",
    "the quick brown fox",
};

// How many sessions a node's log says it opened.
inline int sessions_opened(const std::string& log) {
  const std::string text = read_file(log);
  int n = 0;
  // "session 'ID' opened by CALLER: layers ..."
  for (size_t at = 0; (at = text.find("' opened by ", at)) != std::string::npos; ++at) ++n;
  return n;
}

// An identity from `swarm keygen`: its key file, the node id it prints, and the
// public key (hex) from the file (the second half of its 64-byte secret key).
struct KeyFile {
  std::string path, node_id, public_key;
};

// `--layers a:b`.
inline std::vector<std::string> layers(int a, int b) {
  return {"--layers", std::to_string(a) + ":" + std::to_string(b)};
}

class SwarmHarness : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = find_testdata("tiny-llama/gguf/tiny-llama-Q8_0.gguf");
    ASSERT_FALSE(model_.empty()) << "tiny-llama-Q8_0.gguf is missing from tests/data";
    const ::testing::TestInfo* t = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string(t->test_suite_name()) + "_" + t->name();
    std::replace(name.begin(), name.end(), '/', '_');  // parameterized tests' names
    dir_ = ::testing::TempDir() + "/" + name + "_" + std::to_string(::getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  // Logs stay where a test failed.
  void TearDown() override {
    stop_all();
    if (!dir_.empty() && !HasFailure()) std::filesystem::remove_all(dir_);
  }

  // Kills the gateways, then the nodes.
  void stop_all() {
    gateways_.clear();
    nodes_.clear();
  }

  // Runs `swarm ARGV...` with its stderr in `log`, keeps it in `into`, and expects it
  // to come up (the log in the failure message otherwise).
  ChildProcess* launch(const std::vector<std::string>& argv, const std::string& log,
                       std::vector<std::unique_ptr<ChildProcess>>& into) {
    into.push_back(std::make_unique<ChildProcess>(argv, log));
    EXPECT_TRUE(into.back()->ok()) << read_file(log);
    return into.back().get();
  }

  // Starts `swarm node -m MODEL --listen 127.0.0.1:0 -t 1 ARGS...` (`model`: the
  // test model when empty), its stderr in node_log(i), i counting the test's
  // nodes from 0. Expects it to serve; the caller checks ok() where it must.
  ChildProcess* start_node(const std::vector<std::string>& args, const std::string& model = "") {
    std::vector<std::string> argv = {
        "node", "-m", model.empty() ? model_ : model, "--listen", "127.0.0.1:0", "-t", "1"};
    argv.insert(argv.end(), args.begin(), args.end());
    return launch(argv, node_log(node_logs_++), nodes_);
  }
  std::string node_log(size_t i) const { return dir_ + "/node" + std::to_string(i) + ".err"; }
  std::string node_log() const { return node_log(node_logs_ - 1); }  // the last node's

  // Starts `swarm gateway -m MODEL --listen 127.0.0.1:0 --model-name tiny
  // ARGS...` (MODEL: the test model unless given; ARGS say where its peers are: --peers or --bootstrap), its stderr
  // in gateway_log(i), i counting the test's gateways from 0. Its trust
  // database is trust_db() unless ARGS name one: each test starts with no
  // reputation, and a gateway restarted in a test finds its predecessor's.
  ChildProcess* start_gateway(const std::vector<std::string>& args, const std::string& model = "") {
    std::vector<std::string> argv = {"gateway",     "-m",           model.empty() ? model_ : model,
                                     "--listen",    "127.0.0.1:0", "--model-name", "tiny"};
    argv.insert(argv.end(), args.begin(), args.end());
    if (std::find(args.begin(), args.end(), "--trust-db") == args.end())
      argv.insert(argv.end(), {"--trust-db", trust_db()});
    return launch(argv, gateway_log(gateway_logs_++), gateways_);
  }
  std::string gateway_log(size_t i) const { return dir_ + "/gateway" + std::to_string(i) + ".err"; }
  std::string trust_db() const { return dir_ + "/trust.db"; }
  // The gateway started last, and its log.
  ChildProcess* gateway() const { return gateways_.back().get(); }
  std::string gateway_log() const { return gateway_log(gateway_logs_ - 1); }

  // One plaintext node per range (with `node_flags`, serving `model` or the
  // test model) and a gateway over them (--peers, with `gateway_flags`); false
  // if any failed to start.
  bool start_chain(const std::vector<std::pair<int, int>>& ranges,
                   const std::vector<std::string>& gateway_flags = {},
                   const std::vector<std::string>& node_flags = {}, const std::string& model = "") {
    std::string peers;
    for (const auto& [a, b] : ranges) {
      std::vector<std::string> args = layers(a, b);
      args.insert(args.end(), node_flags.begin(), node_flags.end());
      ChildProcess* n = start_node(args, model);
      if (!n->ok()) return false;
      peers += (peers.empty() ? "" : ",") + n->address();
    }
    std::vector<std::string> args = {"--peers", peers};
    args.insert(args.end(), gateway_flags.begin(), gateway_flags.end());
    return start_gateway(args)->ok();
  }

  // A fresh identity in the test's folder.
  KeyFile keygen(const std::string& name) {
    KeyFile k;
    k.path = dir_ + "/" + name + ".key";
    auto r = run_swarm("keygen -o " + shell_quote(k.path));
    EXPECT_EQ(r.code, 0) << r.out;
    std::stringstream out(r.out);
    for (std::string line; std::getline(out, line);)
      if (line.size() == 40) k.node_id = line;
    std::stringstream file(read_file(k.path));
    std::string magic, secret;
    file >> magic >> secret;
    EXPECT_EQ(secret.size(), 128u);
    if (secret.size() == 128) k.public_key = secret.substr(64);
    EXPECT_EQ(k.node_id.size(), 40u) << r.out;
    return k;
  }

  // A copy of the test model in the test's folder with one byte flipped in the
  // middle of `tensor`: the same architecture and layout, other weights.
  std::string tampered_copy(const std::string& tensor) {
    const std::string path = dir_ + "/tampered.gguf";
    std::filesystem::copy_file(model_, path, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::permissions(path, std::filesystem::perms::owner_write,
                                 std::filesystem::perm_options::add);
    auto src = swarm::open_model_source(path);
    EXPECT_TRUE(src.ok());
    const swarm::TensorInfo* t = src->find(tensor);
    EXPECT_NE(t, nullptr) << tensor;
    if (!t) return path;
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(t->offset + t->nbytes / 2);
    char c = 0;
    f.seekg(at);
    f.read(&c, 1);
    c = static_cast<char>(c ^ 0x01);
    f.seekp(at);
    f.write(&c, 1);
    return path;
  }

  // The node process serving `address`, or null.
  ChildProcess* node_at(const std::string& address) {
    for (auto& n : nodes_)
      if (n && n->address() == address) return n.get();
    return nullptr;
  }

  // The chain the last gateway logged at start: "chain A [0,1) -> B [1,3) -> C [3,4)".
  std::vector<std::string> logged_chain() const {
    const std::string log = read_file(gateway_log());
    std::vector<std::string> addrs;
    const size_t at = log.find("chain ");
    if (at == std::string::npos) return addrs;
    std::stringstream line(log.substr(at + 6, log.find('\n', at) - at - 6));
    for (std::string word; line >> word;)
      if (word.find(':') != std::string::npos && word[0] != '[') addrs.push_back(word);
    return addrs;
  }

  std::string single_process(const std::string& prompt, int n) {
    return single_process_greedy(model_, prompt, n);
  }

  // POST /v1/completions with `body` to `gw` (null: the last gateway): the
  // answer, or {"error": HTTP status (-1: none), "body": ...}.
  nlohmann::json post_completion(const nlohmann::json& body, ChildProcess* gw = nullptr) {
    httplib::Client c("127.0.0.1", (gw ? gw : gateway())->port());
    c.set_read_timeout(120, 0);
    auto res = c.Post("/v1/completions", body.dump(), "application/json");
    if (!res || res->status != 200)
      return {{"error", res ? res->status : -1}, {"body", res ? res->body : "<no answer>"}};
    return nlohmann::json::parse(res->body);
  }

  // A greedy completion of `n` tokens from `gw` (null: the last gateway): the
  // text, or the failed answer's body; `status` gets the HTTP status.
  std::string complete(const std::string& prompt, int n, int* status = nullptr,
                       ChildProcess* gw = nullptr) {
    const nlohmann::json got = post_completion(
        {{"model", "tiny"}, {"prompt", prompt}, {"max_tokens", n}, {"temperature", 0}}, gw);
    if (status) *status = got.contains("error") ? got["error"].get<int>() : 200;
    if (got.contains("error")) return got["body"].get<std::string>();
    return got["choices"][0]["text"].get<std::string>();
  }

  // The same streamed from the last gateway, its SSE chunks joined; `on_chunk`
  // sees each piece as it arrives.
  std::string complete_streamed(
      const std::string& prompt, int n, const std::function<void()>& on_chunk = [] {}) {
    return stream_completion(gateway()->port(), "tiny", prompt, n, on_chunk);
  }

  // The kill/stall test of a swarm with two nodes per range: streamed
  // generations of `n_tokens` for each of `prompts` run through the last
  // gateway; once every one is under way, the node of the middle stage of the
  // gateway's first chain gets `sig` (SIGKILL: it dies; SIGSTOP: it stalls).
  // Every stream must still give its `want`, and the gateway must log routes
  // that recovered around that node.
  void expect_streams_survive_a_lost_middle_stage(int sig, const std::vector<std::string>& prompts,
                                                  const std::vector<std::string>& want,
                                                  int n_tokens) {
    const std::vector<std::string> chain = logged_chain();
    ASSERT_EQ(chain.size(), 3u) << read_file(gateway_log());
    ChildProcess* victim = node_at(chain[1]);
    ASSERT_NE(victim, nullptr);
    const int n_streams = static_cast<int>(prompts.size());
    std::atomic<int> chunks{0};
    std::vector<std::future<std::string>> got;
    for (int i = 0; i < n_streams; ++i)
      got.push_back(std::async(std::launch::async, [&, i] {
        return complete_streamed(prompts[i], n_tokens, [&] { ++chunks; });
      }));
    // Strike once every stream is under way.
    ASSERT_TRUE(
        eventually([&] { return chunks.load() >= 2 * n_streams; }, std::chrono::seconds(60)));
    victim->signal(sig);
    for (int i = 0; i < n_streams; ++i) EXPECT_EQ(got[i].get(), want[i]) << "stream " << i;
    if (sig == SIGSTOP) victim->signal(SIGCONT);
    // The gateway logs each request's route: the failure was met and routed around.
    std::ifstream in(gateway_log());
    int recovered = 0;
    for (std::string line; std::getline(in, line);)
      if (line.find("recovered") != std::string::npos) {
        ++recovered;
        EXPECT_EQ(line.find(chain[1] + " ["), std::string::npos)
            << "still routed through the failed node: " << line;
      }
    EXPECT_GE(recovered, 1);
  }

  std::string model_, dir_;
  std::vector<std::unique_ptr<ChildProcess>> nodes_, gateways_;

 private:
  size_t node_logs_ = 0, gateway_logs_ = 0;
};

// Names for the kill/stall parameters.
inline std::string signal_name(const ::testing::TestParamInfo<int>& i) {
  return i.param == SIGKILL ? "Killed" : "Stalled";
}

}  // namespace swarm::testing
