#include "net/peer_address.h"

#include <cerrno>
#include <cstdlib>

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

Result<std::pair<std::string, int>> parse_host_port(const std::string& s) {
  const size_t colon = s.rfind(':');
  const auto bad = [&] { return Status::InvalidArgument("'" + s + "' is not HOST:PORT (e.g. 127.0.0.1:8080)"); };
  if (colon == std::string::npos || colon == 0) return bad();
  std::string host = s.substr(0, colon);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = s.substr(colon + 1);
  char* end = nullptr;
  errno = 0;
  const long p = std::strtol(port.c_str(), &end, 10);
  if (host.empty() || port.empty() || *end != '\0' || errno != 0 || p < 0 || p > 65535) return bad();
  return std::make_pair(host, static_cast<int>(p));
}

}  // namespace swarm::net
