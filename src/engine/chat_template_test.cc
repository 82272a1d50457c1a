#include "engine/chat_template.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "engine/test_data.h"

namespace swarm {
namespace {

// Templates as the models ship them (tokenizer_config.json's `chat_template`, after
// JSON decoding). Long ones are cut to the parts that carry their markers.
// clang-format off

// meta-llama/Meta-Llama-3-8B-Instruct
const char* kLlama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content "
    "}}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' "
    "}}{% endif %}";

// meta-llama/Llama-2-7b-chat-hf
const char* kLlama2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}"
    "{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == "
    "0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% "
    "endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + "
    "system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
    "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
    "content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + "
    "' ' + eos_token }}{% endif %}{% endfor %}";

// tests/data tiny-llama's tokenizer_config.json
const char* kTinyLlamaTestdata =
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
    "message['content'] + ' [/INST]' }}{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% "
    "endfor %}";

// mistralai/Mistral-7B-Instruct-v0.1, first template (no system role, no <<SYS>>)
const char* kMistralOld =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == "
    "0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% "
    "endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif "
    "message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ "
    "raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

// mistralai/Mistral-7B-Instruct-v0.2, Mistral's 'v1' template
const char* kMistralV1 =
    "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n\n{{- bos_token }}\n{%- for message in loop_messages %}\n"
    "    {%- if message['role'] == 'user' %}\n        {%- if loop.first and system_message is defined %}\n"
    "            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}\n"
    "        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' [/INST]' }}\n"
    "        {%- endif %}\n    {%- elif message['role'] == 'assistant' %}\n"
    "        {{- ' ' + message['content'] + eos_token}}\n    {%- endif %}\n{%- endfor %}\n";

// mistralai/Mistral-7B-Instruct-v0.3, Mistral's 'v3' template
const char* kMistralV3 =
    "{%- if messages[0][\"role\"] == \"system\" %}\n    {%- set system_message = messages[0][\"content\"] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n{%- endif %}\n{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n    {%- if message[\"role\"] == \"user\" %}\n"
    "        {%- if tools is not none and (message == user_messages[-1]) %}\n"
    "            {{- \"[AVAILABLE_TOOLS] [\" }}\n            {{- \"[/AVAILABLE_TOOLS]\" }}\n"
    "        {%- endif %}\n        {%- if loop.last and system_message is defined %}\n"
    "            {{- \"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n"
    "        {%- else %}\n            {{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}\n"
    "        {%- endif %}\n    {%- elif message[\"role\"] == \"assistant\" %}\n"
    "        {{- \" \" + message[\"content\"]|trim + eos_token}}\n    {%- endif %}\n{%- endfor %}\n";

// mistralai/Mistral-Nemo-Instruct-2407, Mistral's 'v3-tekken' template
const char* kMistralNemo =
    "{%- for message in loop_messages %}\n    {%- if message[\"role\"] == \"user\" %}\n"
    "        {%- if tools is not none and (message == user_messages[-1]) %}\n"
    "            {{- \"[AVAILABLE_TOOLS][\" }}\n            {{- \"[/AVAILABLE_TOOLS]\" }}\n"
    "        {%- endif %}\n        {%- if loop.last and system_message is defined %}\n"
    "            {{- \"[INST]\" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n"
    "        {%- else %}\n            {{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}\n"
    "        {%- endif %}\n    {%- elif message[\"role\"] == \"assistant\" %}\n"
    "        {{- message[\"content\"] + eos_token}}\n    {%- endif %}\n{%- endfor %}\n";

// mistralai/Mistral-Large-Instruct-2411, Mistral's 'v7' template
const char* kMistralV7 =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
    "message['content'] + '[/INST]' }}{% elif message['role'] == 'system' %}{{ '[SYSTEM_PROMPT] ' + "
    "message['content'] + '[/SYSTEM_PROMPT]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + "
    "message['content'] + eos_token }}{% else %}{{ raise_exception('Only user, system and assistant roles "
    "are supported!') }}{% endif %}{% endfor %}";

// mistralai/Mistral-Small-3.1-24B-Instruct-2503, 'v7-tekken'
const char* kMistralSmall31 =
    "{{- bos_token }}\n{{- '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}\n"
    "{%- for message in loop_messages %}\n    {%- if message[\"role\"] == \"user\" %}\n"
    "        {%- if tools is not none and (message == user_messages[-1]) %}\n"
    "            {{- \"[AVAILABLE_TOOLS] [\" }}\n        {%- endif %}\n"
    "        {{- '[INST]' + message['content'] + '[/INST]' }}\n"
    "    {%- elif message['role'] == 'assistant' %}\n        {{- message['content'] + eos_token }}\n"
    "    {%- endif %}\n{%- endfor %}\n";

// Qwen/Qwen2.5-7B-Instruct
const char* kQwen25 =
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n    {%- else %}\n"
    "        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\" }}\n"
    "{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
    "        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
    "assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- endif %}\n{%- endfor %}\n{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";

// google/gemma-7b-it
const char* kGemma =
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') "
    "}}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) "
    "%}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif "
    "%}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = "
    "message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + "
    "'<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif "
    "%}";

// microsoft/Phi-3-mini-4k-instruct
const char* kPhi3 =
    "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + "
    "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + "
    "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\\n' + "
    "message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}";

// TinyLlama/TinyLlama-1.1B-Chat-v1.0 (Zephyr's format)
const char* kTinyLlamaChat =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + "
    "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + "
    "message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  "
    "+ message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ "
    "'<|assistant|>' }}\n{% endif %}\n{% endfor %}";

// eachadea/vicuna-13b-1.1: a family we do not render.
const char* kVicuna =
    "{%- for message in messages %}{%- if message['role'] == 'system' -%}{{- '' + message['content'] + "
    "'\\n\\n' -}}{%- else -%}{%- if message['role'] == 'user' -%}{{-'USER: ' + message['content'] + "
    "'\\n'-}}{%- else -%}{{-'ASSISTANT: ' + message['content'] + '</s>\\n' -}}{%- endif -%}{%- endif -%}"
    "{%- endfor -%}{%- if add_generation_prompt -%}{{-'ASSISTANT:'-}}{%- endif -%}";

// clang-format on

TEST(ChatTemplate, DetectsRealTemplates) {
  EXPECT_EQ(detect_chat_family(kLlama3), ChatFamily::kLlama3);
  EXPECT_EQ(detect_chat_family(kLlama2), ChatFamily::kLlama2);
  EXPECT_EQ(detect_chat_family(kTinyLlamaTestdata), ChatFamily::kLlama2);
  EXPECT_EQ(detect_chat_family(kMistralOld), ChatFamily::kLlama2NoSystem);
  EXPECT_EQ(detect_chat_family(kMistralV1), ChatFamily::kMistralV1);
  EXPECT_EQ(detect_chat_family(kMistralV3), ChatFamily::kMistralV3);
  EXPECT_EQ(detect_chat_family(kMistralNemo), ChatFamily::kMistralV3Tekken);
  EXPECT_EQ(detect_chat_family(kMistralV7), ChatFamily::kMistralV7);
  EXPECT_EQ(detect_chat_family(kMistralSmall31), ChatFamily::kMistralV7Tekken);
  EXPECT_EQ(detect_chat_family(kQwen25), ChatFamily::kChatML);
  EXPECT_EQ(detect_chat_family(kGemma), ChatFamily::kGemma);
  EXPECT_EQ(detect_chat_family(kPhi3), ChatFamily::kPhi3);
  EXPECT_EQ(detect_chat_family(kTinyLlamaChat), ChatFamily::kZephyr);
  EXPECT_EQ(detect_chat_family(kVicuna), ChatFamily::kUnknown);
  EXPECT_EQ(detect_chat_family(""), ChatFamily::kUnknown);
  EXPECT_EQ(detect_chat_family("gemma"), ChatFamily::kGemma);  // a bare name, as llama.cpp allows
}

TEST(ChatTemplate, TinyQwen2TemplateIsChatML) {
  const std::string path = testing::find_testdata("tiny-qwen2/hf/chat_template.jinja");
  ASSERT_FALSE(path.empty());
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  ASSERT_FALSE(text.str().empty());
  EXPECT_EQ(detect_chat_family(text.str()), ChatFamily::kChatML);
}

const std::vector<ChatMessage> kConversation = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
};

std::string render(ChatFamily f, const std::vector<ChatMessage>& m = kConversation,
                   bool gen = true) {
  Result<std::string> r = render_chat(f, m, gen, "<s>", "</s>");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? r.value() : "";
}

// The expected strings are what each model's own template (above) renders, less the
// leading BOS the tokenizer adds; they agree with llama.cpp's tests/test-chat-template.cpp
// except where llama.cpp departs from the model's template (noted).
TEST(ChatTemplate, RendersChatML) {
  EXPECT_EQ(render(ChatFamily::kChatML),
            "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
            "<|im_start|>user\nHello<|im_end|>\n"
            "<|im_start|>assistant\nHi there<|im_end|>\n"
            "<|im_start|>user\nWho are you<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplate, RendersLlama3) {
  EXPECT_EQ(render(ChatFamily::kLlama3),
            "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

// llama.cpp's built-in llama2 drops the spaces around the answer; Meta's template has them.
TEST(ChatTemplate, RendersLlama2) {
  EXPECT_EQ(render(ChatFamily::kLlama2),
            "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s>"
            "<s>[INST] Who are you [/INST]");
}

TEST(ChatTemplate, RendersLlama2WithoutSystemRole) {
  EXPECT_EQ(
      render(ChatFamily::kLlama2NoSystem),
      "[INST] You are a helpful assistant\nHello [/INST]Hi there</s>[INST] Who are you [/INST]");
}

TEST(ChatTemplate, RendersMistralV1) {
  EXPECT_EQ(render(ChatFamily::kMistralV1),
            " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you "
            "[/INST]");
}

// Mistral's v3 templates put the system prompt in the last user turn; llama.cpp's
// built-in moves it to the first.
TEST(ChatTemplate, RendersMistralV3) {
  EXPECT_EQ(
      render(ChatFamily::kMistralV3),
      "[INST] Hello[/INST] Hi there</s>[INST] You are a helpful assistant\n\nWho are you[/INST]");
  EXPECT_EQ(
      render(ChatFamily::kMistralV3Tekken),
      "[INST]Hello[/INST]Hi there</s>[INST]You are a helpful assistant\n\nWho are you[/INST]");
}

TEST(ChatTemplate, RendersMistralV7) {
  EXPECT_EQ(
      render(ChatFamily::kMistralV7),
      "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi there</s>"
      "[INST] Who are you[/INST]");
  EXPECT_EQ(
      render(ChatFamily::kMistralV7Tekken),
      "[SYSTEM_PROMPT]You are a helpful assistant[/SYSTEM_PROMPT][INST]Hello[/INST]Hi there</s>"
      "[INST]Who are you[/INST]");
}

TEST(ChatTemplate, RendersGemmaFoldingSystemIntoFirstUserTurn) {
  EXPECT_EQ(render(ChatFamily::kGemma),
            "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
            "<start_of_turn>model\nHi there<end_of_turn>\n"
            "<start_of_turn>user\nWho are you<end_of_turn>\n"
            "<start_of_turn>model\n");
}

TEST(ChatTemplate, RendersPhi3) {
  EXPECT_EQ(render(ChatFamily::kPhi3),
            "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n"
            "<|assistant|>\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n");
  // Without a generation prompt the template closes with EOS.
  EXPECT_EQ(render(ChatFamily::kPhi3, {{"user", "Hi"}}, false), "<|user|>\nHi<|end|>\n</s>");
}

TEST(ChatTemplate, RendersZephyr) {
  EXPECT_EQ(render(ChatFamily::kZephyr),
            "<|system|>\nYou are a helpful assistant</s>\n<|user|>\nHello</s>\n"
            "<|assistant|>\nHi there</s>\n<|user|>\nWho are you</s>\n<|assistant|>\n");
}

TEST(ChatTemplate, TrimsWhereTheTemplateTrims) {
  const std::vector<ChatMessage> m = {{"user", " Hello\n"},
                                      {"assistant", "   I am an assistant   "}};
  EXPECT_EQ(render(ChatFamily::kLlama3, m, false),
            "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>");
  EXPECT_EQ(render(ChatFamily::kGemma, m, false),
            "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nI am an "
            "assistant<end_of_turn>\n");
  EXPECT_EQ(render(ChatFamily::kLlama2, m, false), "[INST] Hello [/INST] I am an assistant </s>");
  EXPECT_EQ(render(ChatFamily::kMistralV3, m, false),
            "[INST]  Hello\n[/INST] I am an assistant</s>");
  // ChatML keeps content as it is.
  EXPECT_EQ(render(ChatFamily::kChatML, m, false),
            "<|im_start|>user\n Hello\n<|im_end|>\n<|im_start|>assistant\n   I am an assistant   "
            "<|im_end|>\n");
}

TEST(ChatTemplate, NoGenerationPromptEndsAfterTheLastTurn) {
  const std::vector<ChatMessage> m = {{"user", "Hi"}};
  EXPECT_EQ(render(ChatFamily::kChatML, m, false), "<|im_start|>user\nHi<|im_end|>\n");
  EXPECT_EQ(render(ChatFamily::kGemma, m, false), "<start_of_turn>user\nHi<end_of_turn>\n");
  // [/INST] is the assistant's cue whether or not a generation prompt is asked for.
  EXPECT_EQ(render(ChatFamily::kLlama2, m, true), render(ChatFamily::kLlama2, m, false));
}

TEST(ChatTemplate, UsesTheModelsBosAndEosTexts) {
  const std::vector<ChatMessage> m = {{"user", "a"}, {"assistant", "b"}, {"user", "c"}};
  Result<std::string> r = render_chat(ChatFamily::kLlama2, m, true, "<BOS>", "<EOS>");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), "[INST] a [/INST] b <EOS><BOS>[INST] c [/INST]");
}

TEST(ChatTemplate, SystemWithoutAUserTurnBecomesOne) {
  const std::vector<ChatMessage> m = {{"system", "Be terse."}};
  EXPECT_EQ(render(ChatFamily::kGemma, m),
            "<start_of_turn>user\nBe terse.<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(render(ChatFamily::kMistralV3, m), "[INST] Be terse.[/INST]");
  EXPECT_EQ(render(ChatFamily::kLlama2, m), "[INST] Be terse. [/INST]");
}

TEST(ChatTemplate, RejectsBadRolesByName) {
  Result<std::string> r =
      render_chat(ChatFamily::kChatML, {{"user", "x"}, {"tool", "y"}}, true, "", "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("'tool'"), std::string::npos) << r.status().message();
  EXPECT_FALSE(render_chat(ChatFamily::kUnknown, kConversation, true, "", "").ok());
}

TEST(ChatTemplate, ParsesEveryFamilyName) {
  for (const char* name :
       {"llama2", "llama2-nosys", "llama3", "chatml", "mistral-v1", "mistral-v3",
        "mistral-v3-tekken", "mistral-v7", "mistral-v7-tekken", "gemma", "phi3", "zephyr"}) {
    ChatFamily f = ChatFamily::kUnknown;
    ASSERT_TRUE(parse_chat_family(name, &f)) << name;
    EXPECT_STREQ(chat_family_name(f), name);
  }
  ChatFamily f = ChatFamily::kGemma;
  EXPECT_FALSE(parse_chat_family("llama9", &f));
  EXPECT_EQ(f, ChatFamily::kGemma);
}

TEST(ChatTemplate, ChoosesOverrideThenDetectedThenChatML) {
  std::string note;
  Result<ChatFamily> r = choose_chat_family(kLlama3, "gemma", &note);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), ChatFamily::kGemma);
  EXPECT_NE(note.find("--chat-template"), std::string::npos) << note;

  r = choose_chat_family(kLlama3, "", &note);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), ChatFamily::kLlama3);
  EXPECT_NE(note.find("llama3"), std::string::npos) << note;

  r = choose_chat_family(kVicuna, "", &note);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), ChatFamily::kChatML);
  EXPECT_NE(note.find("falling back to chatml"), std::string::npos) << note;

  r = choose_chat_family("", "", &note);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), ChatFamily::kChatML);
  EXPECT_NE(note.find("has none"), std::string::npos) << note;

  r = choose_chat_family(kLlama3, "llama9", &note);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("llama9"), std::string::npos);
  EXPECT_NE(r.status().message().find("chatml"), std::string::npos);  // lists the known names
}

}  // namespace
}  // namespace swarm
