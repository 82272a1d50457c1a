#include "engine/chat_template.h"

#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "engine/model_source.h"

namespace swarm {
namespace {

struct NamedFamily {
  ChatFamily family;
  const char* name;
};

constexpr NamedFamily kFamilies[] = {
    {ChatFamily::kChatML, "chatml"},
    {ChatFamily::kLlama2, "llama2"},
    {ChatFamily::kLlama2NoSystem, "llama2-nosys"},
    {ChatFamily::kLlama3, "llama3"},
    {ChatFamily::kMistralV1, "mistral-v1"},
    {ChatFamily::kMistralV3, "mistral-v3"},
    {ChatFamily::kMistralV3Tekken, "mistral-v3-tekken"},
    {ChatFamily::kMistralV7, "mistral-v7"},
    {ChatFamily::kMistralV7Tekken, "mistral-v7-tekken"},
    {ChatFamily::kGemma, "gemma"},
    {ChatFamily::kPhi3, "phi3"},
    {ChatFamily::kZephyr, "zephyr"},
};

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Jinja's `trim` and Python's str.strip() on ASCII whitespace.
std::string trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

// One turn of a family that has no system role: the system text to fold into it.
struct Turn {
  bool user;
  std::string content;
  std::string system;
};

enum class Fold { kNextUser, kLastUser };

// Folds system messages into user turns: into the next user turn, or into the last
// one. Several system messages are joined by a blank line. A system message with no
// user turn to go into becomes a user turn of its own.
std::vector<Turn> fold_system(const std::vector<ChatMessage>& messages, Fold fold) {
  std::vector<Turn> turns;
  std::string pending;
  auto add_pending = [&pending](const std::string& text) {
    pending += (pending.empty() ? "" : "\n\n") + text;
  };
  for (const ChatMessage& m : messages) {
    if (m.role == "system") {
      add_pending(m.content);
    } else if (m.role == "user") {
      turns.push_back({true, m.content, fold == Fold::kNextUser ? std::move(pending) : ""});
      if (fold == Fold::kNextUser) pending.clear();
    } else {
      turns.push_back({false, m.content, ""});
    }
  }
  if (pending.empty()) return turns;
  if (fold == Fold::kLastUser) {
    for (auto it = turns.rbegin(); it != turns.rend(); ++it) {
      if (it->user) {
        it->system = std::move(pending);
        return turns;
      }
    }
  }
  turns.push_back({true, std::move(pending), ""});
  return turns;
}

std::string render_folded(ChatFamily family, const std::vector<ChatMessage>& messages,
                          bool add_generation_prompt, const std::string& bos,
                          const std::string& eos) {
  const bool last_user = family == ChatFamily::kMistralV3 || family == ChatFamily::kMistralV3Tekken;
  std::string out;
  for (const Turn& t : fold_system(messages, last_user ? Fold::kLastUser : Fold::kNextUser)) {
    switch (family) {
      case ChatFamily::kLlama2:
        // Meta's template: BOS before every [INST] (the first is the tokenizer's); the
        // system block is part of the first user turn, and the whole turn is stripped.
        if (t.user) {
          std::string sys = t.system.empty() ? "" : "<<SYS>>\n" + t.system + "\n<</SYS>>\n\n";
          out += (out.empty() ? "" : bos) + "[INST] " + trim(sys + t.content) + " [/INST]";
        } else {
          out += " " + trim(t.content) + " " + eos;
        }
        break;
      case ChatFamily::kLlama2NoSystem:
        if (t.user) {
          out += "[INST] " + (t.system.empty() ? "" : t.system + "\n") + t.content + " [/INST]";
        } else {
          out += t.content + eos;
        }
        break;
      case ChatFamily::kMistralV1:
        if (t.user) {
          out += " [INST] " + (t.system.empty() ? "" : t.system + "\n\n") + t.content + " [/INST]";
        } else {
          out += " " + t.content + eos;
        }
        break;
      case ChatFamily::kMistralV3:
        if (t.user) {
          out += "[INST] " + (t.system.empty() ? "" : t.system + "\n\n") + t.content + "[/INST]";
        } else {
          out += " " + trim(t.content) + eos;
        }
        break;
      case ChatFamily::kMistralV3Tekken:
        if (t.user) {
          out += "[INST]" + (t.system.empty() ? "" : t.system + "\n\n") + t.content + "[/INST]";
        } else {
          out += t.content + eos;
        }
        break;
      case ChatFamily::kGemma:
        // Gemma 3's template: the system text, then a blank line, opens the user turn.
        out += t.user ? "<start_of_turn>user\n" : "<start_of_turn>model\n";
        if (!t.system.empty()) out += t.system + "\n\n";
        out += trim(t.content) + "<end_of_turn>\n";
        break;
      default:
        break;
    }
  }
  if (add_generation_prompt && family == ChatFamily::kGemma) out += "<start_of_turn>model\n";
  return out;
}

}  // namespace

const char* chat_family_name(ChatFamily family) {
  for (const NamedFamily& f : kFamilies)
    if (f.family == family) return f.name;
  return "unknown";
}

bool parse_chat_family(const std::string& name, ChatFamily* family) {
  for (const NamedFamily& f : kFamilies) {
    if (name == f.name) {
      *family = f.family;
      return true;
    }
  }
  return false;
}

std::string chat_family_names() {
  std::string names;
  for (const NamedFamily& f : kFamilies) names += (names.empty() ? "" : ", ") + std::string(f.name);
  return names;
}

ChatFamily detect_chat_family(std::string_view tmpl) {
  ChatFamily named;
  if (parse_chat_family(std::string(tmpl), &named)) return named;
  auto has = [tmpl](std::string_view marker) {
    return tmpl.find(marker) != std::string_view::npos;
  };

  if (has("<|im_start|>")) {
    // Phi-4 (<|im_sep|>) and SmolVLM (<end_of_utterance>) borrow the marker but
    // are not ChatML.
    if (has("<|im_sep|>") || has("<end_of_utterance>")) return ChatFamily::kUnknown;
    return ChatFamily::kChatML;
  }
  if (has("[INST]")) {
    if (has("[SYSTEM_PROMPT]")) {
      return has("[SYSTEM_PROMPT] ") ? ChatFamily::kMistralV7 : ChatFamily::kMistralV7Tekken;
    }
    // Mistral's official templates: v1 puts a space before [INST]; v3 and v3-tekken
    // carry tool markers and differ in the space after [INST].
    if (has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]")) {
      if (has(" [INST]")) return ChatFamily::kMistralV1;
      if (has("\"[INST]\"") || has("'[INST]'")) return ChatFamily::kMistralV3Tekken;
      return ChatFamily::kMistralV3;
    }
    // Llama 2 and its look-alikes: a system block, or Meta's BOS before every [INST].
    if (has("<<SYS>>") || has("bos_token + '[INST]")) return ChatFamily::kLlama2;
    return ChatFamily::kLlama2NoSystem;
  }
  if (has("<|assistant|>") && has("<|end|>")) return ChatFamily::kPhi3;
  if (has("<|user|>") && has("<|assistant|>") && !has("[gMASK]") &&
      (has("eos_token") || has("<|endoftext|>"))) {
    return ChatFamily::kZephyr;
  }
  if (has("<start_of_turn>")) return ChatFamily::kGemma;
  if (has("<|start_header_id|>") && has("<|end_header_id|>")) return ChatFamily::kLlama3;
  return ChatFamily::kUnknown;
}

Result<ChatFamily> choose_chat_family(std::string_view tmpl, const std::string& override_name,
                                      std::string* note) {
  std::string why;
  ChatFamily family = ChatFamily::kChatML;
  if (!override_name.empty()) {
    if (!parse_chat_family(override_name, &family))
      return Status::InvalidArgument("unknown chat template '" + override_name +
                                     "' (known: " + chat_family_names() + ")");
    why = "chat template: " + override_name + " (from --chat-template)";
  } else if (tmpl.empty()) {
    why = "chat template: the model has none; falling back to chatml";
  } else if (ChatFamily detected = detect_chat_family(tmpl); detected != ChatFamily::kUnknown) {
    family = detected;
    why = std::string("chat template: ") + chat_family_name(family) +
          " (detected from the model's template)";
  } else {
    why =
        "chat template: the model's template is not one we recognise; falling back to chatml "
        "(choose another with --chat-template NAME: " +
        chat_family_names() + ")";
  }
  if (note != nullptr) *note = std::move(why);
  return family;
}

Result<std::string> render_chat(ChatFamily family, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, const std::string& bos_token,
                                const std::string& eos_token) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant")
      return Status::InvalidArgument("chat message " + std::to_string(i) + " has role '" + role +
                                     "' (expected system, user or assistant)");
  }
  std::string out;
  switch (family) {
    case ChatFamily::kUnknown:
      return Status::InvalidArgument("cannot render a chat in an unknown template family");
    case ChatFamily::kChatML:
      for (const ChatMessage& m : messages)
        out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (add_generation_prompt) out += "<|im_start|>assistant\n";
      break;
    case ChatFamily::kLlama3:
      for (const ChatMessage& m : messages)
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) +
               "<|eot_id|>";
      if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      break;
    case ChatFamily::kPhi3:
      // Phi-3/3.5's template ends a conversation without a generation prompt with EOS.
      for (const ChatMessage& m : messages) out += "<|" + m.role + "|>\n" + m.content + "<|end|>\n";
      out += add_generation_prompt ? "<|assistant|>\n" : eos_token;
      break;
    case ChatFamily::kZephyr:
      for (const ChatMessage& m : messages)
        out += "<|" + m.role + "|>\n" + m.content + eos_token + "\n";
      if (add_generation_prompt) out += "<|assistant|>\n";
      break;
    case ChatFamily::kMistralV7:
    case ChatFamily::kMistralV7Tekken: {
      const std::string sp = family == ChatFamily::kMistralV7 ? " " : "";
      for (const ChatMessage& m : messages) {
        if (m.role == "system") {
          out += "[SYSTEM_PROMPT]" + sp + m.content + "[/SYSTEM_PROMPT]";
        } else if (m.role == "user") {
          out += "[INST]" + sp + m.content + "[/INST]";
        } else {
          out += sp + m.content + eos_token;
        }
      }
      break;
    }
    case ChatFamily::kLlama2:
    case ChatFamily::kLlama2NoSystem:
    case ChatFamily::kMistralV1:
    case ChatFamily::kMistralV3:
    case ChatFamily::kMistralV3Tekken:
    case ChatFamily::kGemma:
      out = render_folded(family, messages, add_generation_prompt, bos_token, eos_token);
      break;
  }
  return out;
}

}  // namespace swarm

namespace swarm {

std::string model_chat_template(const ModelSource& source) {
  auto get = [&](const char* key) {
    auto it = source.metadata.find(key);
    return it == source.metadata.end() ? std::string() : it->second;
  };
  if (std::string t = get("tokenizer.chat_template"); !t.empty()) return t;
  auto read_file = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  };
  if (std::string p = get("hf.chat_template"); !p.empty()) return read_file(p);
  if (std::string p = get("hf.tokenizer_config"); !p.empty()) {
    const nlohmann::json cfg = nlohmann::json::parse(read_file(p), nullptr, /*allow_exceptions=*/false);
    if (cfg.is_object() && cfg.contains("chat_template") && cfg["chat_template"].is_string())
      return cfg["chat_template"].get<std::string>();
  }
  return "";
}

}  // namespace swarm
