// Concurrent settlements against the credits ledger (doc/trust.md, "Credits
// ledger"): --threads threads each run whole requests (authorize, reserve the
// most a request may cost, settle the work of --nodes nodes) for keys chosen
// at random among --keys, on a fresh SQLite file (WAL, synchronous=FULL, so
// every settlement waits for the disk). Prints one JSON line: settlements per
// second, and whether every credit granted is accounted for afterwards.
//   ledger_bench [--threads T] [--keys K] [--requests N] [--nodes M] [--db PATH]
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "trust/credits.h"
#include "trust/ledger.h"

using namespace swarm;
using namespace swarm::trust;

int main(int argc, char** argv) {
  int threads = 8, keys = 64, requests = 2000, nodes = 3;
  std::string db = "/tmp/ledger_bench_" + std::to_string(::getpid()) + ".db";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--threads") threads = std::atoi(v.c_str());
    else if (k == "--keys") keys = std::atoi(v.c_str());
    else if (k == "--requests") requests = std::atoi(v.c_str());
    else if (k == "--nodes") nodes = std::atoi(v.c_str());
    else if (k == "--db") db = v;
    else {
      std::fprintf(stderr, "ledger_bench: unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  if (threads < 1 || keys < 1 || requests < 1 || nodes < 1) {
    std::fprintf(stderr, "ledger_bench: --threads, --keys, --requests, --nodes must be >= 1\n");
    return 2;
  }
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
  auto opened = Ledger::Open(db);
  if (!opened.ok()) {
    std::fprintf(stderr, "ledger_bench: %s\n", opened.status().ToString().c_str());
    return 1;
  }
  Ledger& ledger = **opened;
  std::vector<std::string> key_names;
  for (int k = 0; k < keys; ++k) {
    key_names.push_back("sk-bench-" + std::to_string(k) + "-0123456789abcdef");
    if (!ledger.add_account(key_names.back(), "k" + std::to_string(k), 1'000'000 * kMicroPerCredit).ok())
      return 1;
  }

  std::atomic<int> next{0}, settled{0}, refused{0}, errors{0};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i; (i = next++) < requests;) {
        auto account = ledger.authorize(key_names[rng() % keys]);
        if (!account.ok()) {
          ++errors;
          continue;
        }
        std::vector<NodeWork> work(nodes);
        double price = 0;
        const int64_t tokens = 16 + rng() % 512;
        for (int n = 0; n < nodes; ++n) {
          work[n].node_id = "node" + std::to_string(rng() % (4 * nodes));
          work[n].address = "127.0.0.1:" + std::to_string(4000 + n);
          work[n].first_layer = n;
          work[n].last_layer = n + 1;
          work[n].tokens = work[n].steps = tokens - rng() % 16;
          work[n].price_per_1k = (rng() % 1000) / 333.0;
          work[n].receipts = std::string(64, 'f');
          price += work[n].price_per_1k;
        }
        auto cost = max_cost(price, tokens);
        auto hold = ledger.reserve(*account, *cost, "bench-" + std::to_string(i));
        if (!hold.ok()) {
          ++(hold.status().code() == Status::Code::kResourceExhausted ? refused : errors);
          continue;
        }
        if (ledger.settle(*hold, work).ok())
          ++settled;
        else
          ++errors;
      }
    });
  for (auto& t : pool) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto totals = ledger.totals();
  const bool conserved = totals.ok() && totals->conserved() && totals->open_holds == 0;
  std::printf(
      "{\"bench\":\"ledger\",\"threads\":%d,\"keys\":%d,\"nodes_per_request\":%d,\"requests\":%d,"
      "\"settled\":%d,\"refused\":%d,\"errors\":%d,\"seconds\":%.3f,\"settlements_per_s\":%.1f,"
      "\"entries\":%lld,\"conserved\":%s}\n",
      threads, keys, nodes, requests, settled.load(), refused.load(), errors.load(), seconds,
      settled.load() / seconds, static_cast<long long>(totals.ok() ? totals->entries : -1),
      conserved ? "true" : "false");
  opened->reset();
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
  return conserved && errors.load() == 0 ? 0 : 1;
}
