// TLS pinned to node identities (doc/protocol.md, "Transport security").
//
// A node's TLS key IS its Ed25519 identity key: it serves a self-signed X.509
// certificate whose subject public key is the identity's public key. Nobody
// signs it and nobody needs to: a client that knows which node it wants (from a
// signed node record, or a --peers HOST:PORT@KEY entry) accepts the handshake
// only if the certificate's key is that node's key. The TLS handshake itself
// proves the server holds the matching secret key, so a man in the middle, or a
// node answering at an address that another node's record names, is refused.
//
// Callers are known the same way (mutual TLS): a client presents a self-signed
// certificate holding its own Ed25519 identity key, and the handshake proves it
// holds the secret key. The server checks no chain: the key IS the caller's
// identity, and what the node lets that identity do is its policy
// (net/caller.h). A client without a certificate completes the handshake as an
// anonymous caller, which a node refuses everything but Info unless told
// otherwise.
//
// A pin is written in lowercase or upper case hex: 64 digits are the Ed25519
// public key itself, 40 digits a node id (BLAKE2b-160 of it, net/identity.h).
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <string_view>

#include "engine/status.h"
#include "net/identity.h"

namespace swarm::net {

// What a client requires of a peer's certificate key.
class KeyPin {
 public:
  // 64 hex digits (a public key) or 40 (a node id), either case.
  static Result<KeyPin> Parse(std::string_view hex);
  static KeyPin Of(const PublicKey& key);

  bool matches(const PublicKey& key) const;
  bool is_node_id() const { return hex_.size() == 2 * kNodeIdBytes; }
  // Canonical lowercase hex, as parsed.
  const std::string& hex() const { return hex_; }

 private:
  explicit KeyPin(std::string hex) : hex_(std::move(hex)) {}
  std::string hex_;
};

// A certificate and its private key, both PEM.
struct TlsKeyPair {
  std::string certificate_pem;
  std::string private_key_pem;
};

// A self-signed X.509 v3 certificate for `identity`: its key is the identity's
// Ed25519 key, its subject and issuer CN the node id, valid from an hour ago
// until 9999-12-31 (RFC 5280's "no expiry": the pin, not a date, is what is
// checked).
Result<TlsKeyPair> make_identity_certificate(const Identity& identity);

// The Ed25519 public key of a PEM certificate; an error for anything else (not
// PEM, not X.509, another key type).
Result<PublicKey> certificate_public_key(std::string_view certificate_pem);

// Ok if `certificate_pem`'s key satisfies `pin`; otherwise Unavailable naming
// the key found and the key expected.
Status check_pinned_certificate(std::string_view certificate_pem, const KeyPin& pin);

// What a caller presents: its identity's certificate and key, and its node id.
struct ClientCertificate {
  std::string node_id;
  TlsKeyPair key_pair;
};
Result<std::shared_ptr<const ClientCertificate>> client_certificate_of(const Identity& identity);

// The certificate this process presents when it calls a node over TLS and no
// other is given (the gateway's --identity, a node's own identity). Until one is
// set, the first use generates an ephemeral identity, so a tool without a key
// file (swarm info, swarm status, a gateway without --identity) can still reach
// nodes that require a caller identity. Thread-safe; channels made before a
// change keep the certificate they were made with.
void set_default_client_certificate(std::shared_ptr<const ClientCertificate> certificate);
std::shared_ptr<const ClientCertificate> default_client_certificate();

// Server credentials that serve `identity`'s certificate and ask callers for
// theirs (any self-signed certificate is taken, none is required at this
// level: net/caller.h reads the caller's key and decides what it may do).
Result<std::shared_ptr<grpc::ServerCredentials>> identity_server_credentials(
    const Identity& identity);

// Channel credentials that accept a server only if its certificate's key
// satisfies `pin` (no certificate authority, no host name check: the key is the
// identity). A mismatch fails the handshake and is logged (spdlog, warn) with
// `peer` (the address, for the log), the key found and the key expected.
// `client` is the certificate presented to the server; null presents none (an
// anonymous caller, which identity nodes refuse sessions).
std::shared_ptr<grpc::ChannelCredentials> pinned_channel_credentials(
    const KeyPin& pin, const std::string& peer,
    const std::shared_ptr<const ClientCertificate>& client = nullptr);

// The node id the pin stands for: the CN of the certificate it accepts. A pinned
// channel gives it as its TLS target name (GRPC_SSL_TARGET_NAME_OVERRIDE_ARG),
// so gRPC's own name matching, which runs even though nothing depends on it,
// finds that name instead of logging an error for every connection.
std::string pinned_node_id(const KeyPin& pin);

}  // namespace swarm::net
