// HTTPS pinned to node identities, for skill providers' endpoints
// (doc/skills.md, "Transport security"), as net/tls.h does for gRPC: a
// provider serves TLS with a self-signed certificate holding its Ed25519
// identity key, and a gateway accepts the handshake only if that key is the one
// that signed the provider's skill record. Nobody else can answer for the
// provider, and nobody between them can read or change the traffic.
#pragma once

#include <openssl/ssl.h>

#include <memory>

#include "engine/status.h"
#include "net/identity.h"
#include "net/tls.h"

namespace swarm {

// A server's TLS context: the certificate and key of `key_pair` (PEM, as
// net::make_identity_certificate makes them), TLS 1.2 at least.
class TlsServerContext {
 public:
  static Result<std::shared_ptr<TlsServerContext>> FromKeyPair(const net::TlsKeyPair& key_pair);
  // From an identity: its certificate made here.
  static Result<std::shared_ptr<TlsServerContext>> ForIdentity(const net::Identity& identity);
  ~TlsServerContext();
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

  SSL_CTX* get() const { return ctx_; }

 private:
  explicit TlsServerContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
};

// Makes a client's `ctx` accept a server only if its certificate's key is
// `*pin` (any chain, self-signed included: the key is what is checked). `pin`
// must outlive every handshake on `ctx`.
void pin_server_key(SSL_CTX* ctx, const net::PublicKey* pin);

}  // namespace swarm
