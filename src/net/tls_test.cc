// TLS pinned to identities: the certificate holds the identity's own key, the
// pin check accepts exactly that key (or its node id), and over real gRPC on
// loopback a pinned client reaches the right node and is refused by any other.
// Callers present their own identity the same way, and the server reads it
// from the call (net/caller.h): what allow lists and quotas go by.
#include "net/tls.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "net/caller.h"
#include "net/channel_cache.h"
#include "net/peer_address.h"
#include "net/test_identity.h"
#include "swarm/v1/stage.grpc.pb.h"

namespace swarm::net {
namespace {

// A self-signed certificate with a P-256 key: a certificate, but no identity.
std::string ec_certificate_pem() {
  EVP_PKEY* ec = EVP_EC_gen("P-256");
  if (!ec) return "";
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("ec"), 2, -1, 0);
  X509_set_issuer_name(x, X509_get_subject_name(x));
  X509_set_pubkey(x, ec);
  const bool signed_ok = X509_sign(x, ec, EVP_sha256()) > 0;
  BIO* out = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(out, x);
  char* data = nullptr;
  const long n = BIO_get_mem_data(out, &data);
  std::string pem = signed_ok && n > 0 ? std::string(data, static_cast<size_t>(n)) : "";
  BIO_free(out);
  X509_free(x);
  EVP_PKEY_free(ec);
  return pem;
}

TEST(KeyPin, ParsesKeysAndNodeIdsInEitherCase) {
  const Identity a = identity_from(1);
  const std::string key_hex = to_hex(a.public_key().data(), a.public_key().size());
  std::string upper = key_hex;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto by_key = KeyPin::Parse(upper);
  ASSERT_TRUE(by_key.ok()) << by_key.status().ToString();
  EXPECT_EQ(by_key->hex(), key_hex);
  EXPECT_FALSE(by_key->is_node_id());
  EXPECT_TRUE(by_key->matches(a.public_key()));
  auto by_id = KeyPin::Parse(a.node_id());
  ASSERT_TRUE(by_id.ok());
  EXPECT_TRUE(by_id->is_node_id());
  EXPECT_TRUE(by_id->matches(a.public_key()));

  const Identity b = identity_from(2);
  EXPECT_FALSE(by_key->matches(b.public_key()));
  EXPECT_FALSE(by_id->matches(b.public_key()));

  EXPECT_FALSE(KeyPin::Parse("").ok());
  EXPECT_FALSE(KeyPin::Parse(key_hex.substr(1)).ok());         // 63 digits
  EXPECT_FALSE(KeyPin::Parse("zz" + key_hex.substr(2)).ok());  // not hex
  EXPECT_FALSE(KeyPin::Parse(a.node_id() + "00").ok());        // 42 digits
}

TEST(PeerSpec, PlainOrPinnedByKeyOrNodeId) {
  const Identity a = identity_from(9);
  auto plain = parse_peer_spec("127.0.0.1:7001");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->address, "127.0.0.1:7001");
  EXPECT_EQ(plain->pin, "");
  auto by_id = parse_peer_spec("[::1]:7002@" + a.node_id());
  ASSERT_TRUE(by_id.ok()) << by_id.status().ToString();
  EXPECT_EQ(by_id->address, "[::1]:7002");
  EXPECT_EQ(by_id->pin, a.node_id());
  const std::string key_hex = to_hex(a.public_key().data(), a.public_key().size());
  auto by_key = parse_peer_spec("host:1@" + key_hex);
  ASSERT_TRUE(by_key.ok());
  EXPECT_EQ(by_key->pin, key_hex);
  EXPECT_FALSE(parse_peer_spec("host:1@").ok());
  EXPECT_FALSE(parse_peer_spec("host:1@abc").ok());
  EXPECT_FALSE(parse_peer_spec("@" + key_hex).ok());
  EXPECT_FALSE(parse_peer_spec("").ok());
}

TEST(IdentityCertificate, HoldsTheIdentityKeyAndNodeIdAndVerifiesItself) {
  const Identity a = identity_from(7);
  std::array<uint8_t, kSeedBytes> seed;
  seed.fill(7);
  EXPECT_EQ(a.seed(), seed);  // the key OpenSSL is given is the identity's own
  auto pair = make_identity_certificate(a);
  ASSERT_TRUE(pair.ok()) << pair.status().ToString();
  EXPECT_NE(pair->certificate_pem.find("-----BEGIN CERTIFICATE-----"), std::string::npos);
  EXPECT_NE(pair->private_key_pem.find("-----BEGIN PRIVATE KEY-----"), std::string::npos);

  auto key = certificate_public_key(pair->certificate_pem);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(*key, a.public_key());

  // Parsed independently: CN is the node id, and the self-signature checks out.
  BIO* bio =
      BIO_new_mem_buf(pair->certificate_pem.data(), static_cast<int>(pair->certificate_pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(cert, nullptr);
  char cn[128] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
  EXPECT_EQ(std::string(cn), a.node_id());
  EXPECT_EQ(X509_verify(cert, X509_get0_pubkey(cert)), 1);
  X509_free(cert);

  // The private key is the identity's: its public half is the same key.
  BIO* kbio =
      BIO_new_mem_buf(pair->private_key_pem.data(), static_cast<int>(pair->private_key_pem.size()));
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(kbio, nullptr, nullptr, nullptr);
  BIO_free(kbio);
  ASSERT_NE(pkey, nullptr);
  PublicKey pub{};
  size_t len = pub.size();
  ASSERT_EQ(EVP_PKEY_get_raw_public_key(pkey, pub.data(), &len), 1);
  EXPECT_EQ(pub, a.public_key());
  EVP_PKEY_free(pkey);
}

TEST(IdentityCertificate, PinCheckRefusesAnotherKeyAndGarbage) {
  const Identity a = identity_from(3), b = identity_from(4);
  auto pair = make_identity_certificate(a);
  ASSERT_TRUE(pair.ok());
  EXPECT_TRUE(check_pinned_certificate(pair->certificate_pem, KeyPin::Of(a.public_key())).ok());
  EXPECT_TRUE(check_pinned_certificate(pair->certificate_pem, *KeyPin::Parse(a.node_id())).ok());

  const Status wrong = check_pinned_certificate(pair->certificate_pem, KeyPin::Of(b.public_key()));
  EXPECT_EQ(wrong.code(), Status::Code::kUnavailable);
  EXPECT_NE(wrong.message().find("mismatch"), std::string::npos) << wrong.message();
  EXPECT_NE(wrong.message().find(a.node_id()), std::string::npos) << wrong.message();
  EXPECT_NE(wrong.message().find(to_hex(b.public_key().data(), 32)), std::string::npos);
  EXPECT_FALSE(check_pinned_certificate(pair->certificate_pem, *KeyPin::Parse(b.node_id())).ok());

  EXPECT_FALSE(check_pinned_certificate("", KeyPin::Of(a.public_key())).ok());
  EXPECT_FALSE(
      check_pinned_certificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                               KeyPin::Of(a.public_key()))
          .ok());
  EXPECT_FALSE(certificate_public_key(pair->private_key_pem).ok());
  // A certificate with another key type is refused, not misread.
  auto ec_key = certificate_public_key(ec_certificate_pem());
  ASSERT_FALSE(ec_key.ok());
  EXPECT_NE(ec_key.status().message().find("not Ed25519"), std::string::npos)
      << ec_key.status().message();
}

// Answers Info with a fixed model id, so a client can tell it got through, and
// says who called: node_id the caller's (empty: anonymous), model_name
// "tls"/"plaintext" and d_model 1 if caller_identity failed.
class InfoOnly final : public v1::Stage::Service {
  grpc::Status Info(grpc::ServerContext* ctx, const v1::InfoRequest*,
                    v1::InfoResponse* r) override {
    r->set_model_id("reached");
    auto caller = caller_identity(*ctx);
    if (!caller.ok()) {
      r->set_d_model(1);
      return grpc::Status::OK;
    }
    r->set_node_id(caller->node_id);
    r->set_model_name(caller->tls ? "tls" : "plaintext");
    return grpc::Status::OK;
  }
};

class TlsServer {
 public:
  explicit TlsServer(std::shared_ptr<grpc::ServerCredentials> creds) {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", std::move(creds), &port_);
    b.RegisterService(&service_);
    server_ = b.BuildAndStart();
  }
  ~TlsServer() { server_->Shutdown(std::chrono::system_clock::now()); }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  bool started() const { return server_ != nullptr && port_ > 0; }

 private:
  InfoOnly service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

grpc::Status call_info(const std::string& address, std::shared_ptr<grpc::ChannelCredentials> creds,
                       const std::string& target_name = "", v1::InfoResponse* out = nullptr) {
  grpc::ChannelArguments args;
  if (!target_name.empty()) args.SetSslTargetNameOverride(target_name);
  auto stub = v1::Stage::NewStub(grpc::CreateCustomChannel(address, std::move(creds), args));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::InfoResponse r;
  grpc::Status st = stub->Info(&ctx, v1::InfoRequest(), &r);
  if (st.ok() && r.model_id() != "reached")
    return grpc::Status(grpc::StatusCode::INTERNAL, "wrong answer");
  if (out) *out = r;
  return st;
}

// Who answered Info over `channel`, as the server saw the caller.
v1::InfoResponse caller_seen(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = v1::Stage::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::InfoResponse r;
  const grpc::Status st = stub->Info(&ctx, v1::InfoRequest(), &r);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return r;
}

std::shared_ptr<const ClientCertificate> certificate_of(const Identity& id) {
  auto cert = client_certificate_of(id);
  EXPECT_TRUE(cert.ok()) << cert.status().ToString();
  return cert.ok() ? *cert : nullptr;
}

TEST(MutualTls, TheServerKnowsWhoCallsAndAnAnonymousCallerStillGetsInfo) {
  const Identity node = identity_from(20), caller = identity_from(21);
  auto creds = identity_server_credentials(node);
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  TlsServer server(*creds);
  ASSERT_TRUE(server.started());
  const std::string addr = server.address();
  const KeyPin pin = KeyPin::Of(node.public_key());

  v1::InfoResponse r;
  grpc::Status st = call_info(addr, pinned_channel_credentials(pin, addr, certificate_of(caller)),
                              pinned_node_id(pin), &r);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(r.node_id(), caller.node_id());
  EXPECT_EQ(r.model_name(), "tls");
  EXPECT_EQ(r.d_model(), 0) << "the server could not read the caller's certificate";

  st = call_info(addr, pinned_channel_credentials(pin, addr), pinned_node_id(pin), &r);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(r.node_id(), "");  // anonymous: completed the handshake with no certificate
  EXPECT_EQ(r.model_name(), "tls");

  TlsServer plain(grpc::InsecureServerCredentials());
  ASSERT_TRUE(plain.started());
  st = call_info(plain.address(), grpc::InsecureChannelCredentials(), "", &r);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(r.model_name(), "plaintext");
  EXPECT_EQ(r.node_id(), "");
}

// make_channel presents the certificate it is given, else the process default
// (an ephemeral identity until one is set); a ChannelCache presents its own.
TEST(MutualTls, ChannelsPresentTheGivenTheCachesOrTheProcessCertificate) {
  const Identity node = identity_from(22), gw = identity_from(23), stage = identity_from(24);
  auto creds = identity_server_credentials(node);
  ASSERT_TRUE(creds.ok());
  TlsServer server(*creds);
  ASSERT_TRUE(server.started());
  const std::string addr = server.address(), pin = node.node_id();

  auto ephemeral = default_client_certificate();
  ASSERT_NE(ephemeral, nullptr);
  EXPECT_EQ(default_client_certificate(), ephemeral);  // made once
  EXPECT_EQ(caller_seen(make_channel(addr, pin)).node_id(), ephemeral->node_id);

  set_default_client_certificate(certificate_of(gw));
  EXPECT_EQ(caller_seen(make_channel(addr, pin)).node_id(), gw.node_id());
  EXPECT_EQ(caller_seen(make_channel(addr, pin, certificate_of(stage))).node_id(),
            stage.node_id());
  ChannelCache cache;
  cache.set_client_certificate(certificate_of(stage));
  EXPECT_EQ(caller_seen(cache.get(addr, pin)).node_id(), stage.node_id());
  set_default_client_certificate(nullptr);  // back to an ephemeral one for other tests
}

TEST(CallerIdentity, ReadsTheTransportAndCertificate) {
  const Identity a = identity_from(25);
  auto pair = make_identity_certificate(a);
  ASSERT_TRUE(pair.ok());
  auto c = caller_identity_from("ssl", pair->certificate_pem, "ipv4:10.1.2.3:4567");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->tls && c->has_key);
  EXPECT_EQ(c->public_key, a.public_key());
  EXPECT_EQ(c->node_id, a.node_id());
  EXPECT_EQ(c->quota_key(), "node:" + a.node_id());
  EXPECT_EQ(c->describe(), "node " + a.node_id());

  auto anon = caller_identity_from("tls", "", "ipv6:[::1]:80");
  ASSERT_TRUE(anon.ok());
  EXPECT_TRUE(anon->tls);
  EXPECT_FALSE(anon->has_key);
  EXPECT_EQ(anon->quota_key(), "ip:::1");
  EXPECT_EQ(anon->describe(), "anonymous caller at ::1");

  // Plaintext: a certificate cannot be there; nothing is read from one.
  auto plain = caller_identity_from("insecure", pair->certificate_pem, "ipv4:127.0.0.1:9");
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->tls || plain->has_key);
  EXPECT_EQ(plain->quota_key(), "ip:127.0.0.1");

  auto ec = caller_identity_from("ssl", ec_certificate_pem(), "ipv4:10.0.0.9:1");
  ASSERT_FALSE(ec.ok());
  EXPECT_NE(ec.status().message().find("10.0.0.9"), std::string::npos) << ec.status().message();
  EXPECT_NE(ec.status().message().find("not Ed25519"), std::string::npos);

  EXPECT_EQ(peer_host("ipv4:192.168.1.2:80"), "192.168.1.2");
  EXPECT_EQ(peer_host("ipv6:[2001:db8::1]:443"), "2001:db8::1");
  EXPECT_EQ(peer_host("unix:/tmp/s"), "unix:/tmp/s");
}

TEST(AllowList, ParsesIdsKeysAndFilesAndRefusesTheRest) {
  const Identity a = identity_from(30), b = identity_from(31), c = identity_from(32);
  std::string b_key = to_hex(b.public_key().data(), b.public_key().size());
  for (char& ch : b_key) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  auto list = AllowList::Parse(a.node_id() + ", " + b_key);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  EXPECT_EQ(list->size(), 2u);
  EXPECT_TRUE(list->admits(a.public_key()));
  EXPECT_TRUE(list->admits(b.public_key()));
  EXPECT_FALSE(list->admits(c.public_key()));

  const std::string path = ::testing::TempDir() + "/allow_" + std::to_string(::getpid());
  {
    std::ofstream f(path);
    f << "# gateways\n" << c.node_id() << "  # the front door\n\n   \n" << a.node_id() << "\n";
  }
  auto file = AllowList::Parse(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ(file->size(), 2u);
  EXPECT_TRUE(file->admits(c.public_key()));
  EXPECT_FALSE(file->admits(b.public_key()));
  {
    std::ofstream f(path);
    f << a.node_id() << "\nnot-an-id\n";
  }
  auto bad_line = AllowList::Parse(path);
  ASSERT_FALSE(bad_line.ok());
  EXPECT_NE(bad_line.status().message().find(path + ":2"), std::string::npos)
      << bad_line.status().message();
  {
    std::ofstream f(path);
    f << "# nobody\n";
  }
  EXPECT_FALSE(AllowList::Parse(path).ok());  // an empty list would refuse everyone
  std::remove(path.c_str());

  auto missing = AllowList::Parse(path);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("neither"), std::string::npos)
      << missing.status().message();
  EXPECT_FALSE(AllowList::Parse("").ok());
  EXPECT_FALSE(AllowList::Parse(a.node_id() + ",").ok());
}

TEST(AdmitSessionCaller, PlaintextAdmitsAllTlsWantsAKeyAndTheAllowListNamesWho) {
  const Identity a = identity_from(33), b = identity_from(34);
  CallerIdentity anon;
  anon.tls = true;
  anon.host = "10.0.0.1";
  CallerIdentity ca = anon, cb = anon;
  ca.has_key = cb.has_key = true;
  ca.public_key = a.public_key();
  ca.node_id = a.node_id();
  cb.public_key = b.public_key();
  cb.node_id = b.node_id();

  CallerPolicy plain;
  EXPECT_TRUE(admit_session_caller(CallerIdentity{}, plain).ok());

  CallerPolicy tls;
  tls.tls = true;
  EXPECT_TRUE(admit_session_caller(ca, tls).ok());
  grpc::Status st = admit_session_caller(anon, tls);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(st.error_message().find("client certificate"), std::string::npos) << st.error_message();
  EXPECT_NE(st.error_message().find("10.0.0.1"), std::string::npos) << st.error_message();
  tls.allow_anonymous = true;
  EXPECT_TRUE(admit_session_caller(anon, tls).ok());

  tls.allow = *AllowList::Parse(a.node_id());
  EXPECT_TRUE(admit_session_caller(ca, tls).ok());
  st = admit_session_caller(cb, tls);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_NE(st.error_message().find(b.node_id()), std::string::npos) << st.error_message();
  // An allow list names identities: an anonymous caller is on none.
  EXPECT_EQ(admit_session_caller(anon, tls).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST(PinnedTls, ReachesTheNodeItIsPinnedToAndNoOther) {
  const Identity a = identity_from(5), b = identity_from(6);
  auto creds = identity_server_credentials(a);
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  TlsServer server(*creds);
  ASSERT_TRUE(server.started());

  const std::string addr = server.address();
  const KeyPin a_key = KeyPin::Of(a.public_key()), a_id = *KeyPin::Parse(a.node_id());
  EXPECT_EQ(pinned_node_id(a_key), a.node_id());
  EXPECT_EQ(pinned_node_id(a_id), a.node_id());
  grpc::Status st = call_info(addr, pinned_channel_credentials(a_key, addr), pinned_node_id(a_key));
  EXPECT_TRUE(st.ok()) << st.error_message();
  st = call_info(addr,
                 pinned_channel_credentials(a_id, addr));  // the target name is not what is checked
  EXPECT_TRUE(st.ok()) << st.error_message();

  const KeyPin b_key = KeyPin::Of(b.public_key()), b_id = *KeyPin::Parse(b.node_id());
  st = call_info(addr, pinned_channel_credentials(b_key, addr), pinned_node_id(b_key));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  st = call_info(addr, pinned_channel_credentials(b_id, addr), a.node_id());  // nor is the CN
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();

  // A plaintext client cannot talk to a TLS node: it fails, it does not hang.
  st = call_info(server.address(), grpc::InsecureChannelCredentials());
  EXPECT_FALSE(st.ok());
}

TEST(PinnedTls, APinnedClientRefusesAPlaintextServer) {
  TlsServer server(grpc::InsecureServerCredentials());
  ASSERT_TRUE(server.started());
  const Identity a = identity_from(8);
  EXPECT_TRUE(call_info(server.address(), grpc::InsecureChannelCredentials()).ok());
  EXPECT_FALSE(
      call_info(server.address(), pinned_channel_credentials(KeyPin::Of(a.public_key()), "plain"))
          .ok());
}

}  // namespace
}  // namespace swarm::net
