// Chat templates: turning a conversation into the prompt text a model was tuned on.
//
// Models ship their template as Jinja (GGUF `tokenizer.chat_template`, HF
// `chat_template.jinja` or tokenizer_config.json's `chat_template`). Like llama.cpp's
// built-in templates we do not run Jinja: we recognise the family a template belongs
// to by its distinctive markers and render that family's format in C++. Renderings
// follow what the model's own template produces (what transformers, vLLM and
// llama.cpp --jinja give), with these contracts:
//  - The text never starts with `bos_token`: the tokenizer adds BOS as the model says.
//    A BOS inside the history (Llama 2 puts one before every [INST] but the first) is
//    rendered.
//  - Special markers (`<|im_start|>`, `[INST]`, eos_token ...) appear as text; the
//    tokenizer must match them as special tokens when encoding a rendered prompt.
//  - Families without a system role fold system messages into the next user turn
//    (Llama 2 in <<SYS>>, Gemma and Mistral v1 with a blank line); Mistral v3 puts it
//    in the last user turn, as Mistral's own tokenizer does.
//  - Default system prompts that some templates inject (Qwen2.5, Llama 3.1's dates)
//    are not added.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"

namespace swarm {

// A function call an assistant turn made (OpenAI's `tool_calls[i]`).
struct ToolCall {
  std::string id;         // "" when the model gave none
  std::string name;
  std::string arguments;  // JSON text of the arguments object, as OpenAI passes it
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" or (chat_tools.h only) "tool"
  std::string content;
  std::vector<ToolCall> tool_calls = {};  // an assistant turn's calls
  std::string tool_call_id = {};          // a "tool" message: the call it answers
  std::string name = {};                  // a "tool" message: the function's name, if given
};

enum class ChatFamily {
  kUnknown,
  kChatML,           // <|im_start|>role\n...<|im_end|>\n (Qwen, OpenHermes, SmolLM ...)
  kLlama2,           // Meta Llama 2 chat: [INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST]
  kLlama2NoSystem,   // [INST] without <<SYS>> (Mistral 7B Instruct v0.1/v0.2's first template)
  kLlama3,           // <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|>
  kMistralV1,        // " [INST] ... [/INST] ...</s>" (Mistral 7B Instruct, Mixtral 8x7B)
  kMistralV3,        // "[INST] ...[/INST] ...</s>" (Mistral 7B v0.3, Mistral Large 2407)
  kMistralV3Tekken,  // "[INST]...[/INST]...</s>" (Mistral Nemo)
  kMistralV7,        // [SYSTEM_PROMPT] ...[/SYSTEM_PROMPT][INST] ...[/INST] ...</s>
  kMistralV7Tekken,  // the same without the spaces (Mistral Small 3.x)
  kGemma,            // <start_of_turn>user\n...<end_of_turn>\n; assistant is "model"
  kPhi3,             // <|user|>\n...<|end|>\n
  kZephyr,           // <|user|>\n...</s>\n (Zephyr, TinyLlama chat)
};

// The family's name as --chat-template takes it ("llama3", "chatml" ...);
// "unknown" for kUnknown.
const char* chat_family_name(ChatFamily family);

// Parses a --chat-template NAME: llama2, llama2-nosys, llama3, chatml, mistral-v1,
// mistral-v3, mistral-v3-tekken, mistral-v7, mistral-v7-tekken, gemma, phi3, zephyr.
// Returns false (and leaves *family alone) for any other name.
bool parse_chat_family(const std::string& name, ChatFamily* family);

// A comma-separated list of the names parse_chat_family accepts, for help texts.
std::string chat_family_names();

// The family of a Jinja chat template, by its markers (as llama.cpp's
// llm_chat_detect_template does); a bare family name is accepted too.
// kUnknown when no family matches or `tmpl` is empty.
ChatFamily detect_chat_family(std::string_view tmpl);

// The policy for choosing a family: a non-empty `override_name` (--chat-template)
// wins, and an unknown name is InvalidArgument listing the known ones; otherwise the
// family detected from `tmpl`; otherwise ChatML. `*note` (if not null) gets one line
// saying what was chosen and why, for the caller to log once.
Result<ChatFamily> choose_chat_family(std::string_view tmpl, const std::string& override_name,
                                      std::string* note);

// Renders `messages` in `family`'s format. With `add_generation_prompt` the text ends
// with what opens an assistant turn (families whose user turn already ends in the
// assistant's cue, like [/INST], add nothing). `bos_token`/`eos_token` are the
// model's token texts, used where the format puts them ("<s>", "</s>").
// A role other than system/user/assistant, or kUnknown, is InvalidArgument.
Result<std::string> render_chat(ChatFamily family, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, const std::string& bos_token,
                                const std::string& eos_token);

}  // namespace swarm

namespace swarm {

struct ModelSource;

// The chat template a model ships: GGUF `tokenizer.chat_template`, or in a
// Hugging Face folder `chat_template.jinja` or tokenizer_config.json's
// `chat_template`. Empty when the model has none.
std::string model_chat_template(const ModelSource& source);

}  // namespace swarm
