#include "net/tls.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>

namespace swarm::net {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

// The verifier gRPC runs after the handshake (with verify_server_certs off, it
// is the only check): the server's certificate key must satisfy the pin.
class PinnedKeyVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  PinnedKeyVerifier(KeyPin pin, std::string peer) : pin_(std::move(pin)), peer_(std::move(peer)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> /*callback*/, grpc::Status* sync_status) override {
    const grpc::string_ref cert = request->peer_cert();
    const Status st = check_pinned_certificate(std::string_view(cert.data(), cert.size()), pin_);
    if (st.ok()) {
      *sync_status = grpc::Status::OK;
    } else {
      const std::string msg = "TLS peer " + peer_ + " refused: " + st.message();
      spdlog::warn("{}", msg);
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, msg);
    }
    return true;  // synchronous: nothing to wait for
  }

  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  const KeyPin pin_;
  const std::string peer_;
};

}  // namespace

Result<KeyPin> KeyPin::Parse(std::string_view hex) {
  if (hex.size() != 2 * kPublicKeyBytes && hex.size() != 2 * kNodeIdBytes)
    return Status::InvalidArgument("'" + std::string(hex.substr(0, 80)) +
                                   "' is neither a public key (64 hex digits) nor a node id (40)");
  std::string lower(hex);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto bytes = from_hex(lower);
  if (!bytes.ok())
    return Status::InvalidArgument("'" + std::string(hex) +
                                   "' is not hex: " + bytes.status().message());
  return KeyPin(std::move(lower));
}

KeyPin KeyPin::Of(const PublicKey& key) { return KeyPin(to_hex(key.data(), key.size())); }

bool KeyPin::matches(const PublicKey& key) const {
  return hex_ == (is_node_id() ? node_id_of(key) : to_hex(key.data(), key.size()));
}

Result<TlsKeyPair> make_identity_certificate(const Identity& identity) {
  auto seed = identity.seed();
  PkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size()));
  OPENSSL_cleanse(seed.data(), seed.size());  // OpenSSL holds its own copy now
  if (!key) return Status::Internal("OpenSSL cannot make an Ed25519 key");
  // The key OpenSSL derived must be the identity's, or the pin would never match.
  PublicKey derived{};
  size_t len = derived.size();
  if (EVP_PKEY_get_raw_public_key(key.get(), derived.data(), &len) != 1 || len != derived.size() ||
      derived != identity.public_key())
    return Status::Internal("OpenSSL's Ed25519 key differs from the identity's");

  X509Ptr cert(X509_new());
  if (!cert) return Status::Internal("OpenSSL cannot allocate a certificate");
  uint8_t serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) return Status::Internal("OpenSSL has no randomness");
  serial[0] &= 0x7f;  // a positive INTEGER
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  const bool serial_ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_NAME* name = X509_get_subject_name(cert.get());
  const std::string& cn = identity.node_id();
  const bool ok = serial_ok && X509_set_version(cert.get(), 2) == 1 &&
                  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) != nullptr &&
                  ASN1_TIME_set_string(X509_getm_notAfter(cert.get()), "99991231235959Z") == 1 &&
                  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                             reinterpret_cast<const unsigned char*>(cn.data()),
                                             static_cast<int>(cn.size()), -1, 0) == 1 &&
                  X509_set_issuer_name(cert.get(), name) == 1 &&
                  X509_set_pubkey(cert.get(), key.get()) == 1 &&
                  X509_sign(cert.get(), key.get(), nullptr) > 0;  // Ed25519 takes no digest
  if (!ok) return Status::Internal("OpenSSL cannot build the identity certificate");

  BioPtr cert_bio(BIO_new(BIO_s_mem())), key_bio(BIO_new(BIO_s_mem()));
  if (!cert_bio || !key_bio || PEM_write_bio_X509(cert_bio.get(), cert.get()) != 1 ||
      PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) !=
          1)
    return Status::Internal("OpenSSL cannot write the identity certificate as PEM");
  TlsKeyPair pair;
  pair.certificate_pem = bio_text(cert_bio.get());
  pair.private_key_pem = bio_text(key_bio.get());
  return pair;
}

Result<PublicKey> certificate_public_key(std::string_view certificate_pem) {
  if (certificate_pem.empty()) return Status::InvalidArgument("no certificate");
  if (certificate_pem.size() > (1 << 20)) return Status::InvalidArgument("certificate over 1 MiB");
  BioPtr bio(BIO_new_mem_buf(certificate_pem.data(), static_cast<int>(certificate_pem.size())));
  if (!bio) return Status::Internal("OpenSSL cannot allocate a buffer");
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return Status::InvalidArgument("not a PEM X.509 certificate");
  EVP_PKEY* key = X509_get0_pubkey(cert.get());  // owned by the certificate
  if (!key) return Status::InvalidArgument("the certificate's public key does not parse");
  if (EVP_PKEY_id(key) != EVP_PKEY_ED25519)
    return Status::InvalidArgument(std::string("the certificate's key is ") +
                                   OBJ_nid2sn(EVP_PKEY_id(key)) + ", not Ed25519");
  PublicKey out{};
  size_t len = out.size();
  if (EVP_PKEY_get_raw_public_key(key, out.data(), &len) != 1 || len != out.size())
    return Status::InvalidArgument("the certificate's Ed25519 key does not read");
  return out;
}

Status check_pinned_certificate(std::string_view certificate_pem, const KeyPin& pin) {
  auto key = certificate_public_key(certificate_pem);
  if (!key.ok())
    return Status::Unavailable("its certificate is unusable (" + key.status().message() +
                               "); expected " + (pin.is_node_id() ? "node id " : "key ") +
                               pin.hex());
  if (pin.matches(*key)) return Status::Ok();
  return Status::Unavailable("TLS identity mismatch: it presented key " +
                             to_hex(key->data(), key->size()) + " (node id " + node_id_of(*key) +
                             "), expected " + (pin.is_node_id() ? "node id " : "key ") + pin.hex());
}

Result<std::shared_ptr<const ClientCertificate>> client_certificate_of(const Identity& identity) {
  auto pair = make_identity_certificate(identity);
  if (!pair.ok()) return pair.status();
  auto cert = std::make_shared<ClientCertificate>();
  cert->node_id = identity.node_id();
  cert->key_pair = std::move(pair).value();
  return std::shared_ptr<const ClientCertificate>(std::move(cert));
}

namespace {
std::mutex default_client_mu;
std::shared_ptr<const ClientCertificate> default_client;  // guarded by default_client_mu
}  // namespace

void set_default_client_certificate(std::shared_ptr<const ClientCertificate> certificate) {
  std::lock_guard<std::mutex> lock(default_client_mu);
  default_client = std::move(certificate);
}

std::shared_ptr<const ClientCertificate> default_client_certificate() {
  std::lock_guard<std::mutex> lock(default_client_mu);
  if (default_client) return default_client;
  auto identity = Identity::Generate();
  if (!identity.ok()) {
    spdlog::error("cannot make an ephemeral caller identity: {}", identity.status().ToString());
    return nullptr;  // calls go out anonymous; nodes that require an identity say so
  }
  auto cert = client_certificate_of(*identity);
  if (!cert.ok()) {
    spdlog::error("cannot make an ephemeral caller certificate: {}", cert.status().ToString());
    return nullptr;
  }
  default_client = *cert;
  spdlog::debug("calling TLS nodes as ephemeral identity {}", default_client->node_id);
  return default_client;
}

Result<std::shared_ptr<grpc::ServerCredentials>> identity_server_credentials(
    const Identity& identity) {
  auto pair = make_identity_certificate(identity);
  if (!pair.ok()) return pair.status();
  using grpc::experimental::IdentityKeyCertPair;
  std::vector<IdentityKeyCertPair> pairs = {
      IdentityKeyCertPair{pair->private_key_pem, pair->certificate_pem}};
  auto provider = std::make_shared<grpc::experimental::StaticDataCertificateProvider>(pairs);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  // Ask for a certificate but leave judging it to the RPC layer (net/caller.h):
  // no authority signs a caller's key, and refusing a caller there, rather than
  // in the handshake, lets the refusal say why.
  options.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
  auto creds = grpc::experimental::TlsServerCredentials(options);
  if (!creds) return Status::Internal("gRPC cannot make TLS server credentials");
  return creds;
}

std::string pinned_node_id(const KeyPin& pin) {
  if (pin.is_node_id()) return pin.hex();
  auto bytes = from_hex(pin.hex());  // a parsed pin: 64 valid hex digits
  PublicKey key{};
  std::copy(bytes->begin(), bytes->end(), key.begin());
  return node_id_of(key);
}

std::shared_ptr<grpc::ChannelCredentials> pinned_channel_credentials(
    const KeyPin& pin, const std::string& peer,
    const std::shared_ptr<const ClientCertificate>& client) {
  grpc::experimental::TlsChannelCredentialsOptions options;
  if (client) {
    using grpc::experimental::IdentityKeyCertPair;
    std::vector<IdentityKeyCertPair> pairs = {IdentityKeyCertPair{
        client->key_pair.private_key_pem, client->key_pair.certificate_pem}};
    options.set_certificate_provider(
        std::make_shared<grpc::experimental::StaticDataCertificateProvider>(pairs));
    options.watch_identity_key_cert_pairs();
  }
  // No certificate authority vouches for a node: the pin replaces chain and
  // host name checks (PinnedKeyVerifier does the one check that matters).
  options.set_verify_server_certs(false);
  options.set_check_call_host(false);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<PinnedKeyVerifier>(pin, peer));
  return grpc::experimental::TlsCredentials(options);
}

}  // namespace swarm::net
