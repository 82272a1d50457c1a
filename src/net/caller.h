// Who calls a node, and whether it may (doc/protocol.md, "Transport security").
//
// A node with an identity serves mutual TLS (net/tls.h): a caller, a gateway or
// the stage before this one in a chain, presents a self-signed certificate
// holding its own Ed25519 key, and the handshake proves it holds the secret
// half. That key, or its node id, is the caller's identity here: what quotas
// count by and what an allow list names. Nobody vouches for a key, so a
// stranger can make as many as it likes; an identity is worth what the node's
// policy makes it worth (an allow list, quotas, later reputation).
#pragma once

#include <grpcpp/grpcpp.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"
#include "net/identity.h"
#include "net/tls.h"

namespace swarm::net {

struct CallerIdentity {
  bool tls = false;      // the call came over TLS
  bool has_key = false;  // it presented a certificate (only over TLS)
  PublicKey public_key{};
  std::string node_id;  // node_id_of(public_key); empty without a key
  std::string host;     // the peer's address without its port ("127.0.0.1", "::1")

  // What per-caller quotas count by: "node:<node id>" for a caller with a key,
  // "ip:<host>" for one without (plaintext, or anonymous over TLS).
  std::string quota_key() const;
  // For errors and logs: "node <id>" or "anonymous caller at <host>".
  std::string describe() const;
};

// The caller of `ctx`'s call as its transport knows it (a sync ServerContext
// or a CallbackServerContext alike). An error (InvalidArgument) when it
// presented a certificate whose key is not Ed25519: such a caller has no
// identity in this swarm and is no anonymous one either.
Result<CallerIdentity> caller_identity(const grpc::ServerContextBase& ctx);
// The same with the peer's address given: where the server accepted the
// connection itself, gRPC's peer() names its descriptor, not the caller
// (net/connection_acceptor.h).
Result<CallerIdentity> caller_identity(const grpc::ServerContextBase& ctx, std::string_view peer);

// The same from the parts gRPC gives: the transport security type ("tls" or
// "ssl" for TLS, "insecure" for plaintext), the peer certificate's PEM (empty: none) and
// ServerContext::peer().
Result<CallerIdentity> caller_identity_from(std::string_view transport_security_type,
                                            std::string_view peer_certificate_pem,
                                            std::string_view peer);

// gRPC's peer string without scheme and port: "ipv4:127.0.0.1:5000" gives
// "127.0.0.1", "ipv6:[::1]:5000" gives "::1"; anything else is returned whole.
std::string peer_host(std::string_view grpc_peer);

// The identities a private swarm's node serves (swarm node --allow).
class AllowList {
 public:
  // Either a comma-separated list of node ids (40 hex digits) or public keys
  // (64), in either case, or the path of a file holding one per line (blank
  // lines and text after '#' are skipped). An empty list is an error: it would
  // refuse everyone.
  static Result<AllowList> Parse(std::string_view spec);

  bool admits(const PublicKey& key) const;
  size_t size() const { return pins_.size(); }

 private:
  explicit AllowList(std::vector<KeyPin> pins) : pins_(std::move(pins)) {}
  std::vector<KeyPin> pins_;
};

// What a node asks of the callers of its Session stream (Info answers anyone).
struct CallerPolicy {
  bool tls = false;              // the node has an identity; plaintext admits everyone
  bool allow_anonymous = false;  // admit TLS callers without a certificate
  std::optional<AllowList> allow;
};

// Whether `caller` may open sessions and push steps: OK; UNAUTHENTICATED for a
// caller without a certificate when the policy requires one; PERMISSION_DENIED,
// naming the caller's node id, for one not on the allow list.
grpc::Status admit_session_caller(const CallerIdentity& caller, const CallerPolicy& policy);

}  // namespace swarm::net
