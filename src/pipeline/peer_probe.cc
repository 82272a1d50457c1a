#include "pipeline/peer_probe.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <system_error>
#include <thread>

#include "net/tls.h"
#include "pipeline/grpc_stage_transport.h"
#include "swarm/v1/stage.grpc.pb.h"

namespace swarm {
namespace {

namespace v1 = ::swarm::v1;
using Clock = std::chrono::steady_clock;

// The hex key a pinned peer's hops are pinned to: its Info's key, which must
// satisfy the pin (the channel's handshake already checked the certificate; a
// node-id pin learns the full key here). "" for a plaintext peer.
Result<std::string> pinned_key_of(const std::string& pin_hex, const v1::InfoResponse& info) {
  if (pin_hex.empty()) return std::string();
  auto pin = net::KeyPin::Parse(pin_hex);
  if (!pin.ok()) return pin.status();
  if (info.public_key().size() != net::kPublicKeyBytes)
    return Status::Unavailable("its Info reports no Ed25519 public key");
  net::PublicKey key{};
  std::copy(info.public_key().begin(), info.public_key().end(), key.begin());
  if (!pin->matches(key))
    return Status::Unavailable("its Info reports key " + net::to_hex(key.data(), key.size()) +
                               ", not the pinned " + pin->hex());
  return net::to_hex(key.data(), key.size());
}

PeerProbe probe_one(const net::PeerAddress& peer, int first, std::chrono::milliseconds timeout) {
  const std::vector<std::string> addrs = peer.addresses();
  std::vector<int> order;
  if (first >= 0 && first < static_cast<int>(addrs.size())) order.push_back(first);
  for (int i = 0; i < static_cast<int>(addrs.size()); ++i)
    if (i != first) order.push_back(i);
  PeerProbe out;
  // A record may list 16 addresses where nothing answers: a peer gets two
  // addresses' worth of waiting in all (enough for a dead first address and a
  // live second one), so it cannot hold a survey for 16 deadlines.
  const auto budget_end = std::chrono::system_clock::now() + kPeerProbeBudget * timeout;
  for (int i : order) {
    const std::string& addr = addrs[static_cast<size_t>(i)];
    const auto now = std::chrono::system_clock::now();
    if (now >= budget_end) {
      out.error += (out.error.empty() ? "" : "; ") + addr + ": not asked (the peer's time ran out)";
      continue;
    }
    const auto deadline = std::min(now + timeout, budget_end);
    std::shared_ptr<grpc::Channel> channel = stage_channel(addr, peer.pin);
    v1::InfoResponse info;
    grpc::Status s;
    auto t0 = Clock::now();
    bool connected = true;  // the answering call went over a connection already up
    for (int attempt = 0; attempt < 2; ++attempt) {
      const grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/false);
      connected = state == GRPC_CHANNEL_READY;
      // A channel that failed to connect waits out a backoff (up to seconds)
      // before it tries again, failing calls at once meanwhile with its last
      // error: a node that has just come up would look unreachable until
      // then. Such a channel is replaced by one that connects now.
      if (state == GRPC_CHANNEL_TRANSIENT_FAILURE) channel = renew_stage_channel(addr, peer.pin);
      grpc::ClientContext ctx;
      ctx.set_deadline(deadline);
      t0 = Clock::now();
      s = v1::Stage::NewStub(channel)->Info(&ctx, v1::InfoRequest(), &info);
      // A connection that died under the call (the peer restarted, or another
      // process took its port) says nothing about the address: ask once more,
      // on a new connection.
      if (s.ok() || state != GRPC_CHANNEL_READY || s.error_code() != grpc::StatusCode::UNAVAILABLE)
        break;
    }
    double rtt = std::chrono::duration<double>(Clock::now() - t0).count();
    // A call that had to connect first timed the handshakes too (TCP, HTTP/2,
    // TLS: several round trips, and a busy peer's start-up), which would rank
    // a twin behind another for as long as the survey stands. Timed again on
    // the connection now up, it is one round trip.
    if (s.ok() && !connected && std::chrono::system_clock::now() < deadline) {
      grpc::ClientContext ctx;
      ctx.set_deadline(deadline);
      v1::InfoResponse again;
      const auto t1 = Clock::now();
      if (v1::Stage::NewStub(channel)->Info(&ctx, v1::InfoRequest(), &again).ok())
        rtt = std::chrono::duration<double>(Clock::now() - t1).count();
    }
    std::string error;
    if (!s.ok()) {
      error = s.error_message().empty() ? "code " + std::to_string(s.error_code())
                                        : s.error_message();
      out.timed_out = out.timed_out || s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    } else if (auto key = pinned_key_of(peer.pin, info); !key.ok()) {
      error = key.status().message();
    } else {
      out.reached = true;
      out.address_index = i;
      out.address = addr;
      out.public_key = *key;
      out.info = std::move(info);
      out.rtt_seconds = rtt;
      out.error.clear();
      return out;
    }
    out.error += (out.error.empty() ? "" : "; ") + addr + ": " + error;
  }
  return out;
}

}  // namespace

std::vector<PeerProbe> probe_peers(const std::vector<net::PeerAddress>& peers,
                                   const std::vector<int>& first_try,
                                   std::chrono::milliseconds timeout) {
  std::vector<PeerProbe> out(peers.size());
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < peers.size(); i = next++)
      out[i] = probe_one(peers[i], i < first_try.size() ? first_try[i] : 0, timeout);
  };
  const size_t n_threads = std::min(peers.size(), kMaxConcurrentProbes);
  if (n_threads <= 1) {
    work();
    return out;
  }
  std::vector<std::thread> threads;
  try {
    for (size_t t = 1; t < n_threads; ++t) threads.emplace_back(work);
  } catch (const std::system_error&) {
    // Out of threads: the ones started, and this one, do the work.
  }
  work();
  for (std::thread& t : threads) t.join();
  return out;
}

}  // namespace swarm
