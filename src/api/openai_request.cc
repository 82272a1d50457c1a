#include "api/openai_request.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "api/structured_output.h"
#include "engine/logprobs.h"

namespace swarm {
namespace {

using nlohmann::json;


std::string number_text(double x) {
  if (x == std::floor(x) && std::fabs(x) < 1e15) return std::to_string(static_cast<int64_t>(x));
  std::string s = std::to_string(x);
  while (s.size() > 1 && s.back() == '0') s.pop_back();
  return s;
}

ApiError out_of_range(const std::string& param, const std::string& expected,
                      const std::string& got) {
  return invalid_request(
      "Invalid '" + param + "': expected a value " + expected + ", but got " + got + " instead.",
      param, "invalid_value");
}

// Reads the request's fields one by one; the first problem wins.
class Reader {
 public:
  explicit Reader(const json& body) : body_(body) {}
  std::optional<ApiError> error;

  // The field, or nullptr when absent or null (OpenAI treats null as absent).
  const json* field(const std::string& key) const {
    auto it = body_.find(key);
    if (it == body_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::optional<double> number(const std::string& key, double lo, double hi) {
    const json* v = field(key);
    if (v == nullptr || error) return std::nullopt;
    if (!v->is_number()) {
      error = wrong_type(key, "a number", *v);
      return std::nullopt;
    }
    const double x = v->get<double>();
    if (!(x >= lo && x <= hi)) {
      error = out_of_range(key, "between " + number_text(lo) + " and " + number_text(hi),
                           number_text(x));
      return std::nullopt;
    }
    return x;
  }

  std::optional<int64_t> integer(const std::string& key, int64_t lo, int64_t hi) {
    const json* v = field(key);
    if (v == nullptr || error) return std::nullopt;
    std::optional<int64_t> x = as_integer(*v);
    if (!x) {
      if (v->is_number_integer()) {
        error = out_of_range(key, "between " + std::to_string(lo) + " and " + std::to_string(hi),
                             v->dump());
      } else {
        error = wrong_type(key, "an integer", *v);
      }
      return std::nullopt;
    }
    if (*x < lo || *x > hi) {
      error = out_of_range(key, "between " + std::to_string(lo) + " and " + std::to_string(hi),
                           std::to_string(*x));
      return std::nullopt;
    }
    return x;
  }

  std::optional<bool> boolean(const std::string& key) {
    const json* v = field(key);
    if (v == nullptr || error) return std::nullopt;
    if (!v->is_boolean()) {
      error = wrong_type(key, "a boolean", *v);
      return std::nullopt;
    }
    return v->get<bool>();
  }

  // An integer that fits int64 (also a decimal with no fraction, as 16.0).
  static std::optional<int64_t> as_integer(const json& v) {
    if (v.is_number_unsigned()) {
      const uint64_t u = v.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
      return static_cast<int64_t>(u);
    }
    if (v.is_number_integer()) return v.get<int64_t>();
    return std::nullopt;
  }

 private:
  const json& body_;
};

constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();

std::optional<ApiError> read_messages(const json& v, std::vector<ChatMessage>* out) {
  if (!v.is_array()) return wrong_type("messages", "an array", v);
  if (v.empty())
    return invalid_request("'messages' must contain at least one message.", "messages",
                           "invalid_value");
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string at = "messages[" + std::to_string(i) + "]";
    const json& m = v[i];
    if (!m.is_object()) return wrong_type(at, "an object", m);
    auto role = m.find("role");
    if (role == m.end())
      return invalid_request("Missing required parameter: '" + at + ".role'.", at + ".role",
                             "missing_required_parameter");
    if (!role->is_string()) return wrong_type(at + ".role", "a string", *role);
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // OpenAI's newer name for the system role
    if (r != "system" && r != "user" && r != "assistant" && r != "tool")
      return invalid_request(
          "Invalid value for '" + at + ".role': '" + role->get<std::string>() +
              "'. Supported roles are 'system', 'developer', 'user', 'assistant' and 'tool'.",
          at + ".role", "invalid_value");
    auto content = m.find("content");
    std::string text;
    if (content == m.end() || content->is_null()) {
      if (r != "assistant")
        return invalid_request("Missing required parameter: '" + at + ".content'.", at + ".content",
                               "missing_required_parameter");
    } else if (content->is_string()) {
      text = content->get<std::string>();
    } else if (content->is_array()) {
      for (size_t k = 0; k < content->size(); ++k) {
        const std::string pat = at + ".content[" + std::to_string(k) + "]";
        const json& part = (*content)[k];
        if (!part.is_object()) return wrong_type(pat, "an object", part);
        auto type = part.find("type");
        if (type == part.end() || !type->is_string())
          return invalid_request("Missing required parameter: '" + pat + ".type'.", pat + ".type",
                                 "missing_required_parameter");
        if (*type != "text")
          return invalid_request("Invalid value for '" + pat + ".type': '" +
                                     type->get<std::string>() +
                                     "'. Only 'text' content parts are supported.",
                                 pat + ".type", "invalid_value");
        auto t = part.find("text");
        if (t == part.end() || t->is_null())
          return invalid_request("Missing required parameter: '" + pat + ".text'.", pat + ".text",
                                 "missing_required_parameter");
        if (!t->is_string()) return wrong_type(pat + ".text", "a string", *t);
        text += t->get<std::string>();
      }
    } else {
      return wrong_type(at + ".content", "a string or an array of content parts", *content);
    }
    ChatMessage message{r, std::move(text)};
    if (auto e = read_message_tool_fields(m, at, &message)) return *e;
    out->push_back(std::move(message));
  }
  return std::nullopt;
}

std::optional<ApiError> read_token_ids(const json& v, int n_vocab, std::vector<int32_t>* out) {
  for (size_t i = 0; i < v.size(); ++i) {
    std::optional<int64_t> id = Reader::as_integer(v[i]);
    if (!id) return wrong_type("prompt[" + std::to_string(i) + "]", "an integer token id", v[i]);
    if (*id < 0 || *id >= n_vocab)
      return invalid_request("Invalid 'prompt[" + std::to_string(i) + "]': token id " +
                                 std::to_string(*id) + " is outside the vocabulary of " +
                                 std::to_string(n_vocab) + " tokens.",
                             "prompt", "invalid_value");
    out->push_back(static_cast<int32_t>(*id));
  }
  return std::nullopt;
}

std::optional<ApiError> read_prompt(const json* v, int n_vocab, CompletionRequest* r) {
  if (v == nullptr)
    return invalid_request("Missing required parameter: 'prompt'.", "prompt",
                           "missing_required_parameter");
  if (v->is_string()) {
    r->prompt_text = v->get<std::string>();
    return std::nullopt;
  }
  if (!v->is_array())
    return wrong_type("prompt", "a string, an array of token ids or an array of one of those", *v);
  if (v->empty())
    return invalid_request("'prompt' must not be an empty array.", "prompt", "invalid_value");
  const json& first = (*v)[0];
  if (first.is_string() || first.is_array()) {  // a list of prompts: only one is supported
    if (v->size() != 1)
      return invalid_request("Only one prompt per request is supported; 'prompt' holds " +
                                 std::to_string(v->size()) + ".",
                             "prompt", "invalid_value");
    if (first.is_string()) {
      r->prompt_text = first.get<std::string>();
      return std::nullopt;
    }
    if (first.empty())
      return invalid_request("'prompt' must not be an empty array.", "prompt", "invalid_value");
    r->prompt_is_ids = true;
    return read_token_ids(first, n_vocab, &r->prompt_ids);
  }
  r->prompt_is_ids = true;
  return read_token_ids(*v, n_vocab, &r->prompt_ids);
}

std::optional<ApiError> read_stop(const json* v, std::vector<std::string>* out) {
  if (v == nullptr) return std::nullopt;
  if (v->is_string()) {
    out->push_back(v->get<std::string>());
    return std::nullopt;
  }
  if (!v->is_array()) return wrong_type("stop", "a string or an array of strings", *v);
  if (v->size() > 16)
    return invalid_request(
        "Invalid 'stop': at most 16 stop sequences, but got " + std::to_string(v->size()) + ".",
        "stop", "invalid_value");
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string())
      return wrong_type("stop[" + std::to_string(i) + "]", "a string", (*v)[i]);
    out->push_back((*v)[i].get<std::string>());
  }
  return std::nullopt;
}

std::optional<ApiError> read_logit_bias(const json* v, int n_vocab,
                                        std::vector<std::pair<int32_t, float>>* out) {
  if (v == nullptr) return std::nullopt;
  if (!v->is_object())
    return wrong_type("logit_bias", "an object mapping token ids to numbers", *v);
  for (auto it = v->begin(); it != v->end(); ++it) {
    const std::string& key = it.key();
    char* end = nullptr;
    errno = 0;
    const long long id = key.empty() ? -1 : std::strtoll(key.c_str(), &end, 10);
    if (key.empty() || errno != 0 || *end != '\0' || id < 0 || id >= n_vocab)
      return invalid_request("Invalid key in 'logit_bias': '" + key +
                                 "' is not a token id in [0, " + std::to_string(n_vocab) + ").",
                             "logit_bias", "invalid_value");
    if (!it.value().is_number()) return wrong_type("logit_bias." + key, "a number", it.value());
    const double b = it.value().get<double>();
    if (!(b >= -100 && b <= 100))
      return out_of_range("logit_bias." + key, "between -100 and 100", number_text(b));
    out->emplace_back(static_cast<int32_t>(id), static_cast<float>(b));
  }
  return std::nullopt;
}

// Chat: `logprobs` a boolean, `top_logprobs` 0-20 only with it. Completions:
// `logprobs` an integer 0-5 (OpenAI's limit), null for none. llama-server's
// `n_probs` (either endpoint; 0: none) 0-20.
std::optional<ApiError> read_logprobs(Reader& in, bool chat, int* out) {
  if (chat) {
    auto on = in.boolean("logprobs");
    auto top = in.integer("top_logprobs", 0, kMaxTopLogprobs);
    if (in.error) return in.error;
    if (top && !on.value_or(false))
      return invalid_request("'top_logprobs' is only allowed when 'logprobs' is true.",
                             "top_logprobs", "invalid_value");
    if (on.value_or(false)) *out = static_cast<int>(top.value_or(0));
  } else if (const json* lp = in.field("logprobs"); lp && lp->is_boolean()) {
    // Some clients send the chat form to completions: true is 0 alternatives.
    if (lp->get<bool>()) *out = 0;
  } else if (auto n = in.integer("logprobs", 0, 5)) {
    *out = static_cast<int>(*n);
  }
  if (auto n = in.integer("n_probs", 0, kMaxTopLogprobs); n && *n > 0)
    *out = std::max(*out, static_cast<int>(*n));
  if (in.error) return in.error;
  return std::nullopt;
}

// Every refusal of a resume names the field itself, the message the part at
// fault: a gateway tells "this server cannot resume it" from other 400s by it.
ApiError bad_resume(const std::string& why) {
  return invalid_request("Invalid 'swarm_resume': " + why, "swarm_resume", "invalid_value");
}

ApiError resume_type(const std::string& at, const char* expected, const json& v) {
  ApiError e = wrong_type(at, expected, v);
  e.param = "swarm_resume";
  return e;
}

// `swarm_resume`: {"tokens": [ids], "text_bytes": N}, each id in the vocabulary.
std::optional<ApiError> read_resume(const json& v, int n_vocab, SwarmResume* out) {
  if (!v.is_object()) return resume_type("swarm_resume", "an object", v);
  auto tokens = v.find("tokens");
  if (tokens == v.end() || tokens->is_null())
    return invalid_request("Missing required parameter: 'swarm_resume.tokens'.", "swarm_resume",
                           "missing_required_parameter");
  if (!tokens->is_array())
    return resume_type("swarm_resume.tokens", "an array of token ids", *tokens);
  if (tokens->size() > kMaxResumeTokens)
    return bad_resume("at most " + std::to_string(kMaxResumeTokens) + " tokens, but got " +
                      std::to_string(tokens->size()) + ".");
  out->tokens.reserve(tokens->size());
  for (size_t i = 0; i < tokens->size(); ++i) {
    const std::string at = "swarm_resume.tokens[" + std::to_string(i) + "]";
    std::optional<int64_t> id = Reader::as_integer((*tokens)[i]);
    if (!id) return resume_type(at, "an integer token id", (*tokens)[i]);
    if (*id < 0 || *id >= n_vocab)
      return bad_resume("'" + at + "' is token id " + std::to_string(*id) +
                        ", outside the vocabulary of " + std::to_string(n_vocab) + " tokens.");
    out->tokens.push_back(static_cast<int32_t>(*id));
  }
  auto bytes = v.find("text_bytes");
  if (bytes == v.end() || bytes->is_null())
    return invalid_request("Missing required parameter: 'swarm_resume.text_bytes'.", "swarm_resume",
                           "missing_required_parameter");
  std::optional<int64_t> n = Reader::as_integer(*bytes);
  if (!n) return resume_type("swarm_resume.text_bytes", "an integer", *bytes);
  if (*n < 0) return bad_resume("'text_bytes' must be >= 0, but got " + std::to_string(*n) + ".");
  out->text_bytes = *n;
  return std::nullopt;
}

// What a resumed completion cannot be combined with: what would need the
// first server's state (other choices, echoed prompt, logprobs of the tokens
// it generated) or reads the whole text at once (tool calls).
std::optional<ApiError> resume_conflict(const CompletionRequest& r) {
  if (r.n > 1) return bad_resume("a resumed completion has one choice ('n' must be 1).");
  if (r.echo) return bad_resume("it cannot be combined with 'echo'.");
  if (r.logprobs >= 0)
    return bad_resume("it cannot be combined with logprobs: the resumed tokens have none here.");
  if (r.tools.active())
    return bad_resume("it cannot be combined with tools: calls are read from the whole answer.");
  return std::nullopt;
}

ApiError unsupported(const std::string& param, const std::string& what) {
  return invalid_request(what + " is not supported by this server.", param,
                         "unsupported_parameter");
}

}  // namespace

std::variant<CompletionRequest, ApiError> parse_completion_request(const json& body, bool chat,
                                                                   int n_vocab) {
  if (!body.is_object())
    return invalid_request(std::string("The request body must be a JSON object, but got ") +
                           json_type_name(body) + ".");
  CompletionRequest r;
  r.chat = chat;
  Reader in(body);

  if (const json* m = in.field("model")) {
    if (!m->is_string()) return wrong_type("model", "a string", *m);
    r.model = m->get<std::string>();
  }
  if (chat) {
    const json* m = in.field("messages");
    if (m == nullptr)
      return invalid_request("Missing required parameter: 'messages'.", "messages",
                             "missing_required_parameter");
    if (auto e = read_messages(*m, &r.messages)) return *e;
  } else {
    if (auto e = read_prompt(in.field("prompt"), n_vocab, &r)) return *e;
    if (auto echo = in.boolean("echo")) r.echo = *echo;
  }

  if (auto s = in.boolean("stream")) r.stream = *s;
  if (const json* so = in.field("stream_options")) {
    if (!so->is_object()) return wrong_type("stream_options", "an object", *so);
    if (!r.stream)
      return invalid_request("'stream_options' is only allowed when 'stream' is true.",
                             "stream_options", "invalid_value");
    auto iu = so->find("include_usage");
    if (iu != so->end() && !iu->is_null()) {
      if (!iu->is_boolean()) return wrong_type("stream_options.include_usage", "a boolean", *iu);
      r.include_usage = iu->get<bool>();
    }
  }

  // max_completion_tokens is the newer name (chat); it wins over max_tokens,
  // which wins over llama.cpp's n_predict (-1: no limit).
  if (auto n = in.integer("n_predict", -1, kIntMax); n && *n >= 0) r.max_tokens = n;
  if (auto n = in.integer("max_tokens", 1, kIntMax)) r.max_tokens = n;
  if (chat)
    if (auto n = in.integer("max_completion_tokens", 1, kIntMax)) r.max_tokens = n;
  if (auto n = in.integer("n", 1, kMaxChoices)) r.n = static_cast<int>(*n);
  if (auto seed = in.integer("seed", std::numeric_limits<int64_t>::min(),
                             std::numeric_limits<int64_t>::max()))
    r.seed = static_cast<uint64_t>(*seed);

  SamplingParams& sp = r.sampling;
  if (auto t = in.number("temperature", 0, 2)) sp.temperature = static_cast<float>(*t);
  if (auto p = in.number("top_p", 0, 1)) sp.top_p = static_cast<float>(*p);
  if (auto p = in.number("presence_penalty", -2, 2)) sp.presence_penalty = static_cast<float>(*p);
  if (auto p = in.number("frequency_penalty", -2, 2)) sp.frequency_penalty = static_cast<float>(*p);
  // llama.cpp's extensions.
  if (auto k = in.integer("top_k", -1, kIntMax)) sp.top_k = static_cast<int>(*k);
  if (auto p = in.number("min_p", 0, 1)) sp.min_p = static_cast<float>(*p);
  if (auto p = in.number("repeat_penalty", 1e-6, 100)) sp.repeat_penalty = static_cast<float>(*p);
  if (auto n = in.integer("repeat_last_n", -1, kIntMax)) sp.repeat_last_n = static_cast<int>(*n);
  if (auto b = in.boolean("ignore_eos")) r.ignore_eos = *b;
  if (in.error) return *in.error;
  if (auto e = read_stop(in.field("stop"), &sp.stop)) return *e;
  if (auto e = read_logit_bias(in.field("logit_bias"), n_vocab, &sp.logit_bias)) return *e;

  // What would change the answer's shape or meaning and is not implemented.
  if (auto n = in.integer("best_of", 1, kIntMax); n && *n != 1)
    return unsupported("best_of", "best_of > 1");
  if (in.error) return *in.error;
  if (auto e = read_logprobs(in, chat, &r.logprobs)) return *e;
  if (const json* s = in.field("suffix"); s && !(s->is_string() && s->get<std::string>().empty()))
    return unsupported("suffix", "suffix");
  if (chat) {
    if (auto e = read_tool_request(body, &r.tools)) return *e;
  } else {
    for (const char* key : {"tools", "functions"})
      if (const json* t = in.field(key); t && !(t->is_array() && t->empty()))
        return unsupported(key, std::string(key) + " on /v1/completions (use /v1/chat/completions)");
  }
  // llama.cpp's other samplers: refused, never ignored.
  if (const json* m = in.field("mirostat"); m && !(m->is_number() && m->get<double>() == 0))
    return unsupported("mirostat", "mirostat");
  // Structured output: response_format, grammar, json_schema.
  if (auto e = read_structured_output(body, &sp.grammar)) return *e;
  if (!sp.grammar.empty() && r.ignore_eos)
    return invalid_request("'ignore_eos' cannot be combined with structured output: the end of "
                           "the grammar is where generation stops.", "ignore_eos", "invalid_value");
  // Resuming (doc/http-api.md, "Resuming a completion elsewhere").
  if (auto b = in.boolean("swarm_token_ids")) r.swarm_token_ids = *b;
  if (in.error) return *in.error;
  if (const json* v = in.field("swarm_resume")) {
    r.resume.emplace();
    if (auto e = read_resume(*v, n_vocab, &*r.resume)) return *e;
    if (auto e = resume_conflict(r)) return *e;
  }
  return r;
}

}  // namespace swarm
