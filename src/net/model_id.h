// A model's identity on the network (doc/protocol.md, "Model id"):
//  - the model id commits to the weights: the root of a Merkle tree (net/merkle.h)
//    whose leaves are the header's hash and a hash of every tensor (name, type,
//    shape and bytes), so two files that differ in one weight byte have different
//    ids, and a node can prove its own layers' part of the id;
//  - the layout id hashes only the header (architecture, hyper-parameters,
//    tokenizer, tensor names, shapes and types), so a gateway can tell "the same
//    architecture with other weights" (a fine-tune, a modified file) from
//    "another model".
// Hashing the weights reads every byte once (about a second per GB); the result
// is cached beside the model (net/model_id_cache.h) and reused while the file is
// unchanged.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/model_source.h"
#include "engine/status.h"
#include "net/merkle.h"

namespace swarm::net {

struct ModelIds {
  std::string model_id;   // hex Merkle root over the header and every tensor (sized_root)
  std::string layout_id;  // hex hash of the header alone
};

struct TensorLeaf {
  std::string name;
  Digest hash{};
};

struct ModelIdentity {
  ModelIds ids;
  Digest layout{};
  // Leaves 1.. of the tree, in leaf order: the tensors sorted by name (bytewise).
  // Leaf 0 is header_leaf(layout).
  std::vector<TensorLeaf> tensors;
  bool from_cache = false;    // read from a cache file, no weights hashed
  uint64_t bytes_hashed = 0;  // tensor bytes this call read and hashed
  std::string cache_path;     // the cache file read or written; "" if none
};

struct ModelIdOptions {
  bool use_cache = true;  // read and write the cache file (net/model_id_cache.h)
  bool progress = true;   // a progress bar on stderr when it is a terminal
  int threads = 0;        // hashing threads; 0: the machine's cores, at most 8
};

// The tree's leaves for `identity`: header_leaf(layout), then the tensors' hashes.
std::vector<Digest> leaves_of(const ModelIdentity& identity);

// The layout id's digest: BLAKE2b-256 over the model's header bytes:
//  - GGUF: the file's bytes [0, start of the tensor data section): metadata and
//    tensor table (names, types, shapes, offsets);
//  - Hugging Face folder: config.json, then each safetensors file's header
//    (its 8-byte length and JSON), in ModelSource::files order.
// Each part is framed by its kind and length. Reads only the headers (milliseconds).
Result<Digest> layout_digest(const ModelSource& source);

// Both ids, every tensor's leaf hash, and whether they came from the cache.
// Corrupt, foreign or stale cache files are ignored and rewritten.
Result<ModelIdentity> compute_model_identity(const ModelSource& source,
                                             const ModelIdOptions& options = {});

// Both ids, with the cache; remembered per file state within this process, so a
// second call for an unchanged model costs only a stat.
Result<ModelIds> model_ids(const ModelSource& source);

// model_ids(source).model_id: what nodes and gateways compare.
Result<std::string> model_content_id(const ModelSource& source);

// Why a peer's model with a model id other than ours differs, for errors and
// logs: "same architecture and layout, other weights (a fine-tune or a modified
// file)" when the layout ids are equal, "another model" otherwise.
std::string model_mismatch_reason(const std::string& our_layout_id,
                                  const std::string& their_layout_id);

// The tensors that serve layers [first, last) of a model of `n_layer` layers, by
// llama.cpp's naming: "blk.N.*" for first <= N < last; "token_embd.*" when
// first == 0, or when last == n_layer and the head reuses the embeddings
// (`tied`); "output_norm.*" and "output.*" when last == n_layer; every other
// tensor outside the blocks (e.g. "rope_freqs.weight") for every range.
bool tensor_serves_layers(const std::string& name, int first, int last, int n_layer, bool tied);

// Proof that the tensors of layers [first_layer, last_layer) belong to model_id.
struct LayerProofLeaf {
  uint64_t index = 0;  // leaf index in the tree (tensors start at 1)
  std::string name;
  Digest hash{};
  std::vector<Digest> path;  // merkle_path, bottom first
};
struct LayerProof {
  std::string model_id, layout_id;
  uint64_t n_leaves = 0;
  int n_layer = 0, first_layer = 0, last_layer = 0;
  std::vector<Digest> header_path;      // for leaf 0, header_leaf(layout_id)
  std::vector<LayerProofLeaf> tensors;  // in leaf order
};

// The proof for layers [first, last) of a model described by `config`.
Result<LayerProof> prove_layers(const ModelIdentity& identity, const ModelConfig& config, int first,
                                int last);

// Ok if every leaf of `proof` (the header leaf recomputed from its layout id, and
// each tensor's hash) leads through its path to `model_id`, indices are distinct
// and in range, leaves are in name order, and every tensor serves the proof's
// layer range. Corruption naming the first leaf that fails otherwise.
Status verify_layer_proof(const LayerProof& proof, const std::string& model_id);

// The proof's JSON form (doc/protocol.md, "Layer proofs") and back. Parsing caps
// sizes (text, tensors, path lengths) and never throws.
std::string layer_proof_json(const LayerProof& proof);
Result<LayerProof> parse_layer_proof(const std::string& json_text);

}  // namespace swarm::net
