#include "net/peer_address.h"

#include "net/tls.h"

namespace swarm::net {

std::vector<std::string> PeerAddress::addresses() const {
  std::vector<std::string> out = {address};
  out.insert(out.end(), more_addresses.begin(), more_addresses.end());
  return out;
}

Result<PeerAddress> parse_peer_spec(std::string_view spec) {
  PeerAddress peer;
  const size_t at = spec.rfind('@');
  peer.address = std::string(spec.substr(0, at));
  if (peer.address.empty())
    return Status::InvalidArgument("'" + std::string(spec) + "' names no HOST:PORT");
  if (at == std::string_view::npos) return peer;
  auto pin = KeyPin::Parse(spec.substr(at + 1));
  if (!pin.ok()) return pin.status().annotate("'" + std::string(spec) + "': after '@'");
  peer.pin = pin->hex();
  return peer;
}

}  // namespace swarm::net
