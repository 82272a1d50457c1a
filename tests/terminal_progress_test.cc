// Long commands show their progress on a terminal and nothing of it elsewhere:
// `swarm convert`, `synth`, `bench` and a `node` joining the DHT, each run once
// on a pseudo-terminal (where a bar is redrawn in place with '\r') and once with
// its output in a pipe or a file (where no '\r' and no bar may appear, so logs
// and the outputs other tests compare stay as they were).
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "swarm_harness.h"

namespace {

using swarm::testing::ChildProcess;
using swarm::testing::CmdResult;
using swarm::testing::find_testdata;
using swarm::testing::read_file;
using swarm::testing::run_swarm;

struct TerminalRun {
  int code = -1;    // exit code; -1 if it was killed (after `until` showed, or at the limit)
  std::string out;  // all it wrote to the terminal (the terminal turns "\n" into "\r\n")
};

// Runs `swarm ARGS` with stdin, stdout and stderr on a pseudo-terminal and
// collects what it writes until it exits, or until `until` (if not empty)
// appears, when it is killed, or until `limit` passes.
TerminalRun run_on_terminal(std::vector<std::string> args, const std::string& until = "",
                            std::chrono::seconds limit = std::chrono::seconds(120)) {
  args.insert(args.begin(), std::string(SWARM_BINARY_DIR) + "/swarm");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  TerminalRun r;
  int master = -1;
  const pid_t pid = ::forkpty(&master, nullptr, nullptr, nullptr);
  if (pid < 0) return r;
  if (pid == 0) {  // the child: only async-signal-safe calls until exec
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  const auto end = std::chrono::steady_clock::now() + limit;
  bool ended = false;  // the child closed its side of the terminal: it is exiting
  while (!ended && std::chrono::steady_clock::now() < end) {
    if (!until.empty() && r.out.find(until) != std::string::npos) break;
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::read(master, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      ended = true;  // EIO once the child's side is closed
    else
      r.out.append(buf, static_cast<size_t>(n));
  }
  if (!ended) ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(master);
  if (ended && WIFEXITED(status)) r.code = WEXITSTATUS(status);
  return r;
}

// A bar drawn in place: '\r', then its label and the opening of the bar.
bool has_bar(const std::string& out, const std::string& label) {
  return out.find("\r" + label + " [") != std::string::npos;
}
// Output that no terminal saw carries no '\r' at all.
bool has_carriage_return(const std::string& out) { return out.find('\r') != std::string::npos; }

std::string temp(const std::string& name) {
  return ::testing::TempDir() + "/progress_" + std::to_string(::getpid()) + "_" + name;
}

TEST(TerminalProgress, ConvertDrawsABarOnATerminalOnly) {
  const std::string hf = find_testdata("tiny-qwen2/hf");
  ASSERT_FALSE(hf.empty()) << "tiny-qwen2/hf is missing from tests/data";
  const std::string out = temp("qwen2.gguf");
  TerminalRun t = run_on_terminal({"convert", hf, "-o", out, "--type", "F32", "-t", "1"});
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_TRUE(has_bar(t.out, "converting to F32")) << t.out;
  // Finished: the whole bar filled, then the line ended before the summary.
  EXPECT_NE(t.out.find("[########################]"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find(" MB/s\033[K\r\n"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("\r\nwrote "), std::string::npos) << t.out;

  CmdResult piped = run_swarm("convert " + hf + " -o " + out + " --type F32 -t 1");
  ASSERT_EQ(piped.code, 0) << piped.out;
  EXPECT_FALSE(has_carriage_return(piped.out)) << piped.out;
  EXPECT_EQ(piped.out.find("converting to"), std::string::npos) << piped.out;
  EXPECT_NE(piped.out.find("wrote "), std::string::npos) << piped.out;
  std::filesystem::remove(out);
}

TEST(TerminalProgress, SynthDrawsABarOnATerminalOnly) {
  const std::string out = temp("demo.gguf");
  TerminalRun t =
      run_on_terminal({"synth", "--shape", "demo-tiny", "--type", "Q8_0", "-o", out, "-t", "1"});
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_TRUE(has_bar(t.out, "writing demo-tiny Q8_0")) << t.out;
  EXPECT_NE(t.out.find("[########################]"), std::string::npos) << t.out;

  CmdResult piped = run_swarm("synth --shape demo-tiny --type Q8_0 -t 1 -o " + out);
  ASSERT_EQ(piped.code, 0) << piped.out;
  EXPECT_FALSE(has_carriage_return(piped.out)) << piped.out;
  EXPECT_EQ(piped.out.rfind("wrote ", 0), 0u) << piped.out;
  std::filesystem::remove(out);
}

// bench: a bar while the model loads, then one over its runs' steps naming the
// run; the JSON line still comes whole on stdout.
TEST(TerminalProgress, BenchShowsLoadingAndRunsOnATerminalOnly) {
  const std::string model = find_testdata("tiny-llama/gguf/tiny-llama-Q8_0.gguf");
  ASSERT_FALSE(model.empty());
  TerminalRun t =
      run_on_terminal({"bench", "-m", model, "-p", "8", "-n", "4", "-r", "2", "-t", "1", "--json"});
  ASSERT_EQ(t.code, 0) << t.out;
  EXPECT_TRUE(has_bar(t.out, "loading layers 0:4")) << t.out;  // the tiny model has 4 layers
  EXPECT_TRUE(has_bar(t.out, "bench run 2/2")) << t.out;
  EXPECT_NE(t.out.find("10/10 steps"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("\r\n{\"bench\":\"engine\""), std::string::npos) << t.out;

  CmdResult piped = run_swarm("bench -m " + model + " -p 8 -n 4 -r 2 -t 1 --json");
  ASSERT_EQ(piped.code, 0) << piped.out;
  EXPECT_FALSE(has_carriage_return(piped.out)) << piped.out;
  EXPECT_EQ(piped.out.rfind("{\"bench\":\"engine\"", 0), 0u) << piped.out;
  EXPECT_EQ(piped.out.find('\n'), piped.out.size() - 1) << "one line: " << piped.out;
}

// A node joining through the DHT numbers its stages on a terminal (identifying
// the model, joining, choosing layers, loading them with a bar, announcing);
// with its stderr in a file, the log has none of it.
class NodeJoinProgress : public swarm::testing::SwarmHarness {};

TEST_F(NodeJoinProgress, StagesAndLoadingBarOnATerminalOnly) {
  ChildProcess boot({"dht", "--listen", "127.0.0.1:0"}, dir_ + "/dht.err");
  ASSERT_TRUE(boot.ok()) << read_file(dir_ + "/dht.err");
  const swarm::testing::KeyFile k1 = keygen("n1"), k2 = keygen("n2");
  TerminalRun t = run_on_terminal({"node", "-m", model_, "--listen", "127.0.0.1:0", "-t", "1",
                                   "--identity", k1.path, "--bootstrap", boot.address()},
                                  "listening on ");
  EXPECT_NE(t.out.find("listening on "), std::string::npos) << t.out;
  size_t at = 0;  // the stages in order, the loading bar between its stage and the next
  for (const std::string part :
       {"node [1/5] identifying the model\r\n", "node [2/5] joining the DHT through ",
        "node [3/5] choosing layers\r\n",
        "node [4/5] loading layers 0:", "\rloading layers 0:", "node [5/5] announcing\r\n"}) {
    const size_t found = t.out.find(part, at);
    ASSERT_NE(found, std::string::npos) << "no '" << part << "' after byte " << at << " of:\n"
                                        << t.out;
    at = found + part.size();
  }

  ChildProcess* quiet = start_node({"--identity", k2.path, "--bootstrap", boot.address()});
  ASSERT_TRUE(quiet->ok()) << read_file(node_log());
  const std::string log = read_file(node_log());
  EXPECT_FALSE(has_carriage_return(log)) << log;
  EXPECT_EQ(log.find("node [1/"), std::string::npos) << log;
  EXPECT_EQ(log.find("loading layers"), std::string::npos) << log;
}

}  // namespace
