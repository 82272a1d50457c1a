// The gateway's reading of a provider's SSE stream: ids are kept and removed,
// pieces split anywhere give the same output, a resumed stream reads as one
// answer, and a cut-off or failing stream is held back for the caller.
#include "api/skill_stream.h"

#include <gtest/gtest.h>

#include <string>

namespace swarm {
namespace {

using OJson = nlohmann::ordered_json;

std::string chunk(const std::string& id, const OJson& delta, const OJson& ids,
                  const OJson& finish = nullptr) {
  OJson j = {{"id", id},
             {"object", "chat.completion.chunk"},
             {"created", 100},
             {"model", "m"},
             {"choices", {{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}}}};
  if (!ids.is_null()) j["swarm_token_ids"] = ids;
  return "data: " + j.dump() + "\n\n";
}

const std::string kStream = chunk("a", {{"role", "assistant"}, {"content", ""}}, nullptr) +
                            chunk("a", {{"content", "Hel"}}, {1, 2}) +
                            chunk("a", {{"content", "lo"}}, {3}) +
                            chunk("a", OJson::object(), OJson::array(), "stop") + "data: [DONE]\n\n";

TEST(SkillStreamTest, PassesEventsOnWithoutTheProvidersTokenIds) {
  SkillStream s(/*chat=*/true);
  const std::string out = s.feed(kStream);
  EXPECT_EQ(out.find("swarm_token_ids"), std::string::npos);
  EXPECT_NE(out.find("\"Hel\""), std::string::npos);
  EXPECT_NE(out.find("data: [DONE]"), std::string::npos);
  EXPECT_TRUE(s.done());
  EXPECT_FALSE(s.failed());
  EXPECT_EQ(s.token_ids(), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(s.text_bytes(), 5);
  EXPECT_EQ(s.content_events(), 2);
  EXPECT_TRUE(s.resumable());
}

TEST(SkillStreamTest, PiecesSplitAnywhereGiveTheSameOutput) {
  SkillStream whole(true);
  std::string expected = whole.feed(kStream);
  expected += whole.finish();
  for (size_t step : {1, 3, 7, 50}) {
    SkillStream s(true);
    std::string out;
    for (size_t i = 0; i < kStream.size(); i += step) out += s.feed(kStream.substr(i, step));
    out += s.finish();
    EXPECT_EQ(out, expected) << "pieces of " << step;
    EXPECT_EQ(s.token_ids().size(), 3u);
  }
  // CR LF line ends are events too.
  std::string crlf = kStream;
  for (size_t p = crlf.find("\n\n"); p != std::string::npos; p = crlf.find("\n\n", p + 4))
    crlf.replace(p, 2, "\r\n\r\n");
  SkillStream s(true);
  s.feed(crlf);
  EXPECT_TRUE(s.done());
  EXPECT_EQ(s.text_bytes(), 5);
}

TEST(SkillStreamTest, ACutOffStreamIsHeldForTheCallerAndResumesAsOneAnswer) {
  SkillStream s(true);
  std::string out = s.feed(chunk("a", {{"role", "assistant"}, {"content", ""}}, nullptr) +
                           chunk("a", {{"content", "Hel"}}, {1, 2}) + "data: {\"cho");
  out += s.finish();
  EXPECT_TRUE(s.failed());
  EXPECT_FALSE(s.done());
  EXPECT_NE(s.error_event().find("ended before it was complete"), std::string::npos);
  EXPECT_EQ(s.text_bytes(), 3);
  // The next provider resumes: its role chunk is dropped, its id becomes the first's.
  s.resume_on_next_provider(/*keep_tokens=*/true);
  s.set_provider("node-b", 0.5, 1);
  const std::string more = s.feed(chunk("b", {{"role", "assistant"}, {"content", ""}}, nullptr) +
                                  chunk("b", {{"content", "lo"}}, {3}) +
                                  "data: {\"id\":\"b\",\"created\":200,\"choices\":[],\"usage\":"
                                  "{\"prompt_tokens\":10,\"completion_tokens\":3,\"total_tokens\":13}}\n\n"
                                  "data: [DONE]\n\n");
  EXPECT_EQ(more.find("\"role\""), std::string::npos);
  EXPECT_EQ(more.find("\"b\""), std::string::npos);
  EXPECT_NE(more.find("\"id\":\"a\""), std::string::npos);
  EXPECT_NE(more.find("\"created\":100"), std::string::npos);
  EXPECT_NE(more.find("\"provider\":\"node-b\""), std::string::npos);
  EXPECT_NE(more.find("\"cost\":0.0065"), std::string::npos);
  EXPECT_NE(more.find("\"failovers\":1"), std::string::npos);
  EXPECT_TRUE(s.done());
  EXPECT_EQ(s.token_ids(), (std::vector<int32_t>{1, 2, 3}));
}

TEST(SkillStreamTest, ErrorEventsAreHeldAndTextWithoutIdsIsNotResumable) {
  SkillStream s(/*chat=*/false);
  const std::string out =
      s.feed("data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"text\":\"x\"}]}\n\n"
             "data: {\"error\":{\"message\":\"boom\"}}\n\n");
  EXPECT_NE(out.find("\"x\""), std::string::npos);
  EXPECT_EQ(out.find("boom"), std::string::npos);
  EXPECT_TRUE(s.failed());
  EXPECT_NE(s.error_event().find("boom"), std::string::npos);
  EXPECT_FALSE(s.resumable());  // a provider that sent no ids: nothing to replay
  // Starting afresh elsewhere forgets what the failed one counted.
  s.resume_on_next_provider(/*keep_tokens=*/false);
  EXPECT_EQ(s.text_bytes(), 0);
  EXPECT_FALSE(s.failed());
}

TEST(SkillStreamTest, AnEventOverTheCapFailsTheStream) {
  SkillStream s(true);
  s.feed("data: " + std::string(SkillStream::kMaxEventBytes + 1, 'x'));
  EXPECT_TRUE(s.failed());
  EXPECT_NE(s.error_event().find("over"), std::string::npos);
}

}  // namespace
}  // namespace swarm
