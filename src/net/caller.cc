#include "net/caller.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

namespace swarm::net {
namespace {

// An allow list file is configuration, not input from strangers; still bounded.
constexpr size_t kMaxAllowFileBytes = 1 << 20;

std::string_view trim(std::string_view s) {
  const size_t a = s.find_first_not_of(" \t\r\n");
  if (a == std::string_view::npos) return {};
  const size_t b = s.find_last_not_of(" \t\r\n");
  return s.substr(a, b - a + 1);
}

bool looks_like_pin(std::string_view s) {
  if (s.size() != 2 * kNodeIdBytes && s.size() != 2 * kPublicKeyBytes) return false;
  for (char c : s)
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

}  // namespace

std::string CallerIdentity::quota_key() const { return has_key ? "node:" + node_id : "ip:" + host; }

std::string CallerIdentity::describe() const {
  return has_key ? "node " + node_id : "anonymous caller at " + host;
}

std::string peer_host(std::string_view peer) {
  std::string_view rest;
  if (peer.starts_with("ipv4:")) {
    rest = peer.substr(5);
    const size_t colon = rest.rfind(':');
    return std::string(colon == std::string_view::npos ? rest : rest.substr(0, colon));
  }
  if (peer.starts_with("ipv6:")) {
    rest = peer.substr(5);
    if (rest.starts_with('[')) {
      const size_t close = rest.find(']');
      if (close != std::string_view::npos) return std::string(rest.substr(1, close - 1));
    }
    return std::string(rest);
  }
  return std::string(peer);
}

Result<CallerIdentity> caller_identity_from(std::string_view transport_security_type,
                                            std::string_view peer_certificate_pem,
                                            std::string_view peer) {
  CallerIdentity c;
  // "tls" from TlsServerCredentials, "ssl" from SslServerCredentials.
  c.tls = transport_security_type == "tls" || transport_security_type == "ssl";
  c.host = peer_host(peer);
  if (!c.tls || peer_certificate_pem.empty()) return c;
  auto key = certificate_public_key(peer_certificate_pem);
  if (!key.ok())
    return Status::InvalidArgument("the client certificate from " + c.host +
                                   " is not an identity: " + key.status().message());
  c.has_key = true;
  c.public_key = *key;
  c.node_id = node_id_of(*key);
  return c;
}

Result<CallerIdentity> caller_identity(const grpc::ServerContextBase& ctx) {
  return caller_identity(ctx, ctx.peer());
}

Result<CallerIdentity> caller_identity(const grpc::ServerContextBase& ctx, std::string_view peer) {
  std::string type, pem;
  if (auto auth = ctx.auth_context()) {
    auto types = auth->FindPropertyValues(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME);
    if (!types.empty()) type.assign(types[0].data(), types[0].size());
    auto certs = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
    if (!certs.empty()) pem.assign(certs[0].data(), certs[0].size());
  }
  return caller_identity_from(type, pem, peer);
}

Result<AllowList> AllowList::Parse(std::string_view spec) {
  std::vector<KeyPin> pins;
  auto add = [&](std::string_view entry, const std::string& where) -> Status {
    auto pin = KeyPin::Parse(entry);
    if (!pin.ok()) return pin.status().annotate(where);
    pins.push_back(*pin);
    return Status::Ok();
  };
  // A list when every entry is a node id or key; otherwise the name of a file.
  bool is_list = !trim(spec).empty();
  for (size_t at = 0; is_list && at <= spec.size();) {
    const size_t comma = std::min(spec.find(',', at), spec.size());
    is_list = looks_like_pin(trim(spec.substr(at, comma - at)));
    at = comma + 1;
  }
  if (is_list) {
    for (size_t at = 0; at <= spec.size();) {
      const size_t comma = std::min(spec.find(',', at), spec.size());
      SWARM_RETURN_IF_ERROR(add(trim(spec.substr(at, comma - at)), "allow list"));
      at = comma + 1;
    }
    return AllowList(std::move(pins));
  }
  const std::string path(spec);
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Status::NotFound("'" + path +
                            "' is neither a list of node ids or keys (40 or 64 hex digits, "
                            "comma-separated) nor a readable file");
  std::string text(kMaxAllowFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxAllowFileBytes)
    return Status::InvalidArgument(path + ": over " + std::to_string(kMaxAllowFileBytes) +
                                   " bytes");
  std::istringstream lines(text);
  std::string line;
  for (int n = 1; std::getline(lines, line); ++n) {
    std::string_view entry = line;
    entry = trim(entry.substr(0, entry.find('#')));
    if (entry.empty()) continue;
    SWARM_RETURN_IF_ERROR(add(entry, path + ":" + std::to_string(n)));
  }
  if (pins.empty()) return Status::InvalidArgument(path + ": names no node id or key");
  return AllowList(std::move(pins));
}

bool AllowList::admits(const PublicKey& key) const {
  for (const KeyPin& pin : pins_)
    if (pin.matches(key)) return true;
  return false;
}

grpc::Status admit_session_caller(const CallerIdentity& caller, const CallerPolicy& policy) {
  if (!policy.tls) return grpc::Status::OK;
  if (!caller.has_key) {
    if (policy.allow_anonymous && !policy.allow) return grpc::Status::OK;
    return grpc::Status(
        grpc::StatusCode::UNAUTHENTICATED,
        "this node serves sessions only to callers that present a client certificate holding "
        "their Ed25519 identity (mutual TLS); " +
            caller.describe() + " presented none");
  }
  if (policy.allow && !policy.allow->admits(caller.public_key))
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        "node " + caller.node_id + " is not on this node's allow list");
  return grpc::Status::OK;
}

}  // namespace swarm::net
