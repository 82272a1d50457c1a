// A node's persistent identity: an Ed25519 key pair (libsodium crypto_sign).
// The node id, by which the swarm knows a node, is derived from the public key,
// so whoever holds the secret key is the node and nobody else can speak for it.
//
// Key file (doc/dht-records.md): two lines of text,
//   swarm-ed25519-v1
//   <128 lowercase hex digits: the 64-byte libsodium secret key, seed || public key>
// readable by its owner only (mode 0600). Load refuses a file that group or others
// may read, as ssh does.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "engine/status.h"

namespace swarm::net {

inline constexpr size_t kPublicKeyBytes = 32;
inline constexpr size_t kSeedBytes = 32;
inline constexpr size_t kSignatureBytes = 64;
inline constexpr size_t kNodeIdBytes = 20;  // BLAKE2b-160; 40 hex digits
inline constexpr std::string_view kKeyFileMagic = "swarm-ed25519-v1";

using PublicKey = std::array<uint8_t, kPublicKeyBytes>;
using Signature = std::array<uint8_t, kSignatureBytes>;

// Lowercase hex of BLAKE2b-160 of the public key.
std::string node_id_of(const PublicKey& public_key);

// Lowercase hex; from_hex accepts exactly that (no upper case, no odd length), so
// one byte string has one spelling.
std::string to_hex(const uint8_t* data, size_t n);
Result<std::string> from_hex(std::string_view hex);

// Where `swarm keygen` and nodes keep the key by default:
// $XDG_CONFIG_HOME/swarm/node.key, else $HOME/.config/swarm/node.key.
Result<std::string> default_key_path();

class Identity {
 public:
  // A fresh random key pair.
  static Result<Identity> Generate();
  // The key pair of a 32-byte seed (RFC 8032 "secret key"); for tests and tools.
  static Result<Identity> FromSeed(const std::array<uint8_t, kSeedBytes>& seed);
  // Reads a key file; refuses one that is not a regular file, that group or
  // others may read or write, or whose contents are malformed.
  static Result<Identity> Load(const std::string& path);
  // Loads `path`, or creates it with a fresh key if it does not exist.
  static Result<Identity> LoadOrCreate(const std::string& path);

  // Writes the key file with mode 0600 and fsyncs it; missing parent folders are
  // created with mode 0700. Without `overwrite`, an
  // existing file is an error and is left as it was; with it, the new file
  // replaces the old one atomically (written beside it, then renamed).
  Status Save(const std::string& path, bool overwrite = false) const;

  Identity(Identity&& other) noexcept;
  Identity& operator=(Identity&& other) noexcept;
  Identity(const Identity&) = delete;
  Identity& operator=(const Identity&) = delete;
  ~Identity();  // wipes the secret key

  const PublicKey& public_key() const { return public_key_; }
  // The 32-byte RFC 8032 seed the key pair derives from. Only for building the
  // same key in another library (the node's TLS key, net/tls.h); never log or
  // send it.
  std::array<uint8_t, kSeedBytes> seed() const;
  const std::string& node_id() const { return node_id_; }

  Signature sign(std::string_view message) const;
  static bool verify(const PublicKey& public_key, std::string_view message,
                     const Signature& signature);

 private:
  Identity() = default;
  std::array<uint8_t, 64> secret_key_{};  // libsodium layout: seed || public key
  PublicKey public_key_{};
  std::string node_id_;
};

}  // namespace swarm::net
