#include "api/embeddings_request.h"

#include <sodium.h>

#include <cstring>

namespace swarm {
namespace {

using nlohmann::json;
using OJson = nlohmann::ordered_json;

ApiError bad_input(const std::string& message, const std::string& param = "input") {
  return invalid_request(message, param, "invalid_value");
}

// A list of token ids (`at` names it in errors).
std::variant<std::vector<int32_t>, ApiError> read_ids(const json& v, const std::string& at,
                                                      int n_vocab) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i < v.size(); ++i) {
    const json& x = v[i];
    if (!x.is_number_integer())
      return invalid_request("Invalid type for '" + at + "[" + std::to_string(i) +
                                 "]': expected an integer token id.",
                             at, "invalid_type");
    const int64_t id = x.get<int64_t>();
    if (id < 0 || id >= n_vocab)
      return bad_input("Invalid '" + at + "[" + std::to_string(i) + "]': token id " +
                           std::to_string(id) + " is outside the vocabulary of " +
                           std::to_string(n_vocab) + " tokens.",
                       at);
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

std::string base64_of(const std::vector<float>& v) {
  std::vector<unsigned char> bytes(v.size() * sizeof(float));
  std::memcpy(bytes.data(), v.data(), bytes.size());  // little-endian hosts only (x86, ARM)
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

}  // namespace

std::variant<EmbeddingsRequest, ApiError> parse_embeddings_request(const json& body,
                                                                   const Tokenizer& tok,
                                                                   int max_tokens) {
  if (!body.is_object()) return invalid_request("The request body must be a JSON object.");
  EmbeddingsRequest r;
  if (auto m = body.find("model"); m != body.end() && !m->is_null()) {
    if (!m->is_string())
      return invalid_request("Invalid type for 'model': expected a string.", "model", "invalid_type");
    r.model = m->get<std::string>();
  }
  if (auto f = body.find("encoding_format"); f != body.end() && !f->is_null()) {
    if (!f->is_string() || (*f != "float" && *f != "base64"))
      return bad_input("Invalid 'encoding_format': expected 'float' or 'base64'.", "encoding_format");
    r.base64 = *f == "base64";
  }
  if (auto dims = body.find("dimensions"); dims != body.end() && !dims->is_null())
    return invalid_request("'dimensions' is not supported by this server: vectors have the model's width.",
                           "dimensions", "unsupported_parameter");
  auto in = body.find("input");
  if (in == body.end() || in->is_null())
    return invalid_request("Missing required parameter: 'input'.", "input", "missing_required_parameter");
  const int n_vocab = tok.vocab_size();
  auto add_text = [&](const json& s) {
    r.inputs.push_back(tok.encode(s.get<std::string>(), tok.add_bos_default(), /*parse_special=*/false));
  };
  if (in->is_string()) {
    if (in->get<std::string>().empty()) return bad_input("'input' must not be an empty string.");
    add_text(*in);
  } else if (!in->is_array() || in->empty()) {
    return bad_input("'input' must be a string, an array of strings, an array of token ids or an "
                     "array of arrays of token ids, and not empty.");
  } else if (in->size() > kMaxEmbeddingInputs) {
    return bad_input("'input' holds " + std::to_string(in->size()) + " inputs; at most " +
                     std::to_string(kMaxEmbeddingInputs) + ".");
  } else if ((*in)[0].is_number()) {  // one input as token ids
    auto ids = read_ids(*in, "input", n_vocab);
    if (auto* e = std::get_if<ApiError>(&ids)) return *e;
    r.inputs.push_back(std::move(std::get<std::vector<int32_t>>(ids)));
  } else {
    for (size_t i = 0; i < in->size(); ++i) {
      const json& x = (*in)[i];
      const std::string at = "input[" + std::to_string(i) + "]";
      if (x.is_string()) {
        if (x.get<std::string>().empty()) return bad_input("'" + at + "' must not be an empty string.", at);
        add_text(x);
      } else if (x.is_array()) {
        auto ids = read_ids(x, at, n_vocab);
        if (auto* e = std::get_if<ApiError>(&ids)) return *e;
        r.inputs.push_back(std::move(std::get<std::vector<int32_t>>(ids)));
      } else {
        return invalid_request("Invalid type for '" + at + "': expected a string or an array of token ids.",
                               at, "invalid_type");
      }
    }
  }
  size_t total = 0;
  for (size_t i = 0; i < r.inputs.size(); ++i) {
    const size_t n = r.inputs[i].size();
    const std::string at = in->is_array() && !(*in)[0].is_number() ? "input[" + std::to_string(i) + "]" : "input";
    if (n == 0) return bad_input("'" + at + "' has no tokens: it must not be empty.", at);
    if (n > static_cast<size_t>(max_tokens))
      return invalid_request("'" + at + "' is " + std::to_string(n) + " tokens; this model's maximum is " +
                                 std::to_string(max_tokens) + " tokens per input.",
                             at, "context_length_exceeded");
    total += n;
  }
  if (total > kMaxEmbeddingTokensTotal)
    return bad_input("'input' holds " + std::to_string(total) + " tokens in all; at most " +
                     std::to_string(kMaxEmbeddingTokensTotal) + " per request.");
  return r;
}

OJson embeddings_response(const EmbeddingsRequest& req, const std::string& model,
                          const std::vector<std::vector<float>>& vectors) {
  OJson data = OJson::array();
  int64_t tokens = 0;
  for (size_t i = 0; i < vectors.size(); ++i) {
    OJson e = {{"object", "embedding"}, {"index", i}};
    if (req.base64)
      e["embedding"] = base64_of(vectors[i]);
    else
      e["embedding"] = vectors[i];
    data.push_back(std::move(e));
  }
  for (const auto& in : req.inputs) tokens += static_cast<int64_t>(in.size());
  return {{"object", "list"},
          {"data", std::move(data)},
          {"model", model},
          {"usage", {{"prompt_tokens", tokens}, {"total_tokens", tokens}}}};
}

}  // namespace swarm
