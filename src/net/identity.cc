#include "net/identity.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "engine/unique_fd.h"

namespace swarm::net {

static_assert(kPublicKeyBytes == crypto_sign_PUBLICKEYBYTES);
static_assert(kSeedBytes == crypto_sign_SEEDBYTES);
static_assert(kSignatureBytes == crypto_sign_BYTES);
static_assert(crypto_sign_SECRETKEYBYTES == 64);

namespace {

constexpr size_t kMaxKeyFileBytes = 4096;

Status sodium_ready() {
  static const int rc = sodium_init();  // thread-safe once; 1 means "already"
  return rc < 0 ? Status::Internal("libsodium failed to initialise") : Status::Ok();
}

std::string errno_text(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

std::string mode_text(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}


std::string parent_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Makes `dir` and its missing parents, each new one with mode 0700.
Status make_dirs(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return Status::IOError(dir + " is not a folder");
    return Status::Ok();
  }
  if (errno != ENOENT) return Status::IOError(errno_text("cannot look at", dir));
  const std::string parent = parent_of(dir);
  if (parent != dir) SWARM_RETURN_IF_ERROR(make_dirs(parent));
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return Status::IOError(errno_text("cannot create folder", dir));
  return Status::Ok();
}

// Best effort: makes a new directory entry durable. Some filesystems refuse to
// fsync a directory; the key file itself is already synced then.
void sync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

Status write_all(int fd, const std::string& data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(errno_text("cannot write", path));
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Creates `path` (which must not exist) with mode 0600, writes `data` and syncs it.
// On failure the partial file is removed.
Status create_private_file(const std::string& path, const std::string& data) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (fd.get() < 0) {
    if (errno == EEXIST)
      return Status::InvalidArgument(path + " already exists; not overwriting it");
    return Status::IOError(errno_text("cannot create", path));
  }
  Status st = Status::Ok();
  if (::fchmod(fd.get(), 0600) != 0) st = Status::IOError(errno_text("cannot chmod", path));
  if (st.ok()) st = write_all(fd.get(), data, path);
  if (st.ok() && ::fsync(fd.get()) != 0) st = Status::IOError(errno_text("cannot fsync", path));
  if (fd.close() != 0 && st.ok()) st = Status::IOError(errno_text("cannot close", path));
  if (!st.ok()) ::unlink(path.c_str());
  return st;
}

}  // namespace

std::string to_hex(const uint8_t* data, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = kDigits[data[i] >> 4];
    s[2 * i + 1] = kDigits[data[i] & 15];
  }
  return s;
}

Result<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return Status::InvalidArgument("hex string of odd length");
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out(hex.size() / 2, '\0');
  for (size_t i = 0; i < out.size(); ++i) {
    const int hi = digit(hex[2 * i]), lo = digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return Status::InvalidArgument("not a lowercase hex string");
    out[i] = static_cast<char>(hi * 16 + lo);
  }
  return out;
}

std::string node_id_of(const PublicKey& public_key) {
  uint8_t hash[kNodeIdBytes];
  crypto_generichash(hash, sizeof hash, public_key.data(), public_key.size(), nullptr, 0);
  return to_hex(hash, sizeof hash);
}

Result<std::string> default_key_path() {
  const char* xdg = std::getenv("XDG_CONFIG_HOME");
  if (xdg != nullptr && xdg[0] == '/') return std::string(xdg) + "/swarm/node.key";
  const char* home = std::getenv("HOME");
  if (home == nullptr || home[0] == '\0')
    return Status::NotFound("neither $XDG_CONFIG_HOME nor $HOME is set; give the key file's path");
  return std::string(home) + "/.config/swarm/node.key";
}

Identity::Identity(Identity&& other) noexcept
    : secret_key_(other.secret_key_),
      public_key_(other.public_key_),
      node_id_(std::move(other.node_id_)) {
  sodium_memzero(other.secret_key_.data(), other.secret_key_.size());
}

Identity& Identity::operator=(Identity&& other) noexcept {
  if (this != &other) {
    secret_key_ = other.secret_key_;
    public_key_ = other.public_key_;
    node_id_ = std::move(other.node_id_);
    sodium_memzero(other.secret_key_.data(), other.secret_key_.size());
  }
  return *this;
}

Identity::~Identity() { sodium_memzero(secret_key_.data(), secret_key_.size()); }

Result<Identity> Identity::FromSeed(const std::array<uint8_t, kSeedBytes>& seed) {
  SWARM_RETURN_IF_ERROR(sodium_ready());
  Identity id;
  if (crypto_sign_seed_keypair(id.public_key_.data(), id.secret_key_.data(), seed.data()) != 0)
    return Status::Internal("crypto_sign_seed_keypair failed");
  id.node_id_ = node_id_of(id.public_key_);
  return id;
}

Result<Identity> Identity::Generate() {
  SWARM_RETURN_IF_ERROR(sodium_ready());
  std::array<uint8_t, kSeedBytes> seed;
  randombytes_buf(seed.data(), seed.size());
  Result<Identity> id = FromSeed(seed);
  sodium_memzero(seed.data(), seed.size());
  return id;
}

Result<Identity> Identity::Load(const std::string& path) {
  SWARM_RETURN_IF_ERROR(sodium_ready());
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (fd.get() < 0) {
    if (errno == ENOENT) return Status::NotFound("key file " + path + " does not exist");
    return Status::IOError(errno_text("cannot open key file", path));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::IOError(errno_text("cannot stat key file", path));
  if (!S_ISREG(st.st_mode))
    return Status::InvalidArgument("key file " + path + " is not a regular file");
  if ((st.st_mode & 077) != 0)
    return Status::InvalidArgument("key file " + path + " has mode " + mode_text(st.st_mode) +
                                   ": it must not be accessible by group or others (chmod 600 " +
                                   path + ")");
  if (st.st_size > static_cast<off_t>(kMaxKeyFileBytes))
    return Status::Corruption("key file " + path + " is too large to be a key file");

  std::string text(kMaxKeyFileBytes, '\0');
  size_t got = 0;
  for (;;) {
    const ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::IOError(errno_text("cannot read key file", path));
    if (n == 0 || (got += static_cast<size_t>(n)) == text.size()) break;
  }
  text.resize(got);
  auto corrupt = [&](const std::string& why) {
    sodium_memzero(text.data(), text.size());
    return Status::Corruption("key file " + path + ": " + why);
  };
  const std::string header = std::string(kKeyFileMagic) + "\n";
  if (text.compare(0, header.size(), header) != 0)
    return corrupt("does not start with \"" + std::string(kKeyFileMagic) + "\"");
  std::string_view hex = std::string_view(text).substr(header.size());
  if (!hex.empty() && hex.back() == '\n') hex.remove_suffix(1);
  if (hex.size() != 2 * crypto_sign_SECRETKEYBYTES)
    return corrupt("expected " + std::to_string(2 * crypto_sign_SECRETKEYBYTES) +
                   " hex digits of secret key on line 2");
  Result<std::string> secret = from_hex(hex);
  if (!secret.ok()) return corrupt(secret.status().message());
  std::array<uint8_t, kSeedBytes> seed;
  std::memcpy(seed.data(), secret->data(), seed.size());
  Result<Identity> id = FromSeed(seed);
  sodium_memzero(seed.data(), seed.size());
  // The second half of a libsodium secret key is the public key: a file whose
  // halves disagree was damaged, and would otherwise be a different identity.
  const bool consistent = id.ok() && std::memcmp(secret->data() + kSeedBytes,
                                                 id->public_key().data(), kPublicKeyBytes) == 0;
  sodium_memzero(secret->data(), secret->size());
  if (!id.ok()) return id.status();
  if (!consistent) return corrupt("public key does not match the secret key (damaged file?)");
  sodium_memzero(text.data(), text.size());
  return id;
}

Result<Identity> Identity::LoadOrCreate(const std::string& path) {
  Result<Identity> id = Load(path);
  if (id.ok() || id.status().code() != Status::Code::kNotFound) return id;
  Result<Identity> fresh = Generate();
  if (!fresh.ok()) return fresh.status();
  Status st = fresh->Save(path);
  if (st.ok()) return fresh;
  // Another process created it between our look and our write: use theirs.
  Result<Identity> theirs = Load(path);
  return theirs.ok() ? std::move(theirs) : Result<Identity>(st);
}

Status Identity::Save(const std::string& path, bool overwrite) const {
  std::string text =
      std::string(kKeyFileMagic) + "\n" + to_hex(secret_key_.data(), secret_key_.size()) + "\n";
  Status st = make_dirs(parent_of(path));
  if (!st.ok()) return st;
  if (!overwrite) {
    st = create_private_file(path, text);
  } else {
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    ::unlink(tmp.c_str());  // a leftover of ours from a crash
    st = create_private_file(tmp, text);
    if (st.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
      st = Status::IOError(errno_text("cannot replace", path));
      ::unlink(tmp.c_str());
    }
  }
  sodium_memzero(text.data(), text.size());
  if (st.ok()) sync_dir(parent_of(path));
  return st;
}

std::array<uint8_t, kSeedBytes> Identity::seed() const {
  // libsodium's secret key is seed || public key.
  std::array<uint8_t, kSeedBytes> seed;
  std::copy(secret_key_.begin(), secret_key_.begin() + kSeedBytes, seed.begin());
  return seed;
}

Signature Identity::sign(std::string_view message) const {
  Signature sig;
  crypto_sign_detached(sig.data(), nullptr, reinterpret_cast<const unsigned char*>(message.data()),
                       message.size(), secret_key_.data());
  return sig;
}

bool Identity::verify(const PublicKey& public_key, std::string_view message,
                      const Signature& signature) {
  if (!sodium_ready().ok()) return false;
  return crypto_sign_verify_detached(signature.data(),
                                     reinterpret_cast<const unsigned char*>(message.data()),
                                     message.size(), public_key.data()) == 0;
}

}  // namespace swarm::net
