#include "api/http_tls.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstring>
#include <string>

namespace swarm {
namespace {

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// The verify callback of a pinned client: the leaf's key must be the pin.
int verify_pinned(int /*preverify_ok*/, X509_STORE_CTX* store) {
  // Above the leaf (a chain a server may send): the leaf's key decides.
  if (X509_STORE_CTX_get_error_depth(store) != 0) return 1;
  auto* ssl = static_cast<SSL*>(
      X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  if (ssl == nullptr) return 0;
  const auto* pin = static_cast<const net::PublicKey*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  X509* cert = X509_STORE_CTX_get_current_cert(store);
  if (pin == nullptr || cert == nullptr) return 0;
  EVP_PKEY* key = X509_get0_pubkey(cert);
  uint8_t raw[64];
  size_t len = sizeof raw;
  if (key == nullptr || EVP_PKEY_get_raw_public_key(key, raw, &len) != 1 || len != pin->size())
    return 0;
  if (std::memcmp(raw, pin->data(), len) != 0) return 0;
  X509_STORE_CTX_set_error(store, X509_V_OK);  // self-signed is expected: the pin vouches
  return 1;
}

}  // namespace

Result<std::shared_ptr<TlsServerContext>> TlsServerContext::FromKeyPair(
    const net::TlsKeyPair& key_pair) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) return Status::Internal("TLS: " + openssl_error());
  std::shared_ptr<TlsServerContext> out(new TlsServerContext(ctx));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  BIO* cert_bio = BIO_new_mem_buf(key_pair.certificate_pem.data(),
                                  static_cast<int>(key_pair.certificate_pem.size()));
  X509* cert = PEM_read_bio_X509(cert_bio, nullptr, nullptr, nullptr);
  BIO_free(cert_bio);
  BIO* key_bio = BIO_new_mem_buf(key_pair.private_key_pem.data(),
                                 static_cast<int>(key_pair.private_key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(key_bio, nullptr, nullptr, nullptr);
  BIO_free(key_bio);
  const bool ok = cert && key && SSL_CTX_use_certificate(ctx, cert) == 1 &&
                  SSL_CTX_use_PrivateKey(ctx, key) == 1 && SSL_CTX_check_private_key(ctx) == 1;
  X509_free(cert);
  EVP_PKEY_free(key);
  if (!ok) return Status::InvalidArgument("TLS certificate or key: " + openssl_error());
  return out;
}

Result<std::shared_ptr<TlsServerContext>> TlsServerContext::ForIdentity(
    const net::Identity& identity) {
  auto pair = net::make_identity_certificate(identity);
  if (!pair.ok()) return pair.status();
  return FromKeyPair(*pair);
}

TlsServerContext::~TlsServerContext() { SSL_CTX_free(ctx_); }

void pin_server_key(SSL_CTX* ctx, const net::PublicKey* pin) {
  SSL_CTX_set_app_data(ctx, const_cast<net::PublicKey*>(pin));
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_pinned);
}

}  // namespace swarm
