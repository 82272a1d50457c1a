// The GBNF parser (good and bad grammars) and the matcher that walks it.
#include "engine/grammar.h"

#include <gtest/gtest.h>

#include "engine/grammar_matcher.h"

namespace swarm {
namespace {

// Whether `text` is a complete match of `gbnf`.
bool matches(const std::string& gbnf, const std::string& text) {
  auto g = parse_gbnf(gbnf);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  if (!g.ok()) return false;
  GrammarState s = GrammarState::start(*g);
  return s.advance(*g, text) && s.complete();
}

// Whether `text` can begin a match (complete or not).
bool prefix_ok(const std::string& gbnf, const std::string& text) {
  auto g = parse_gbnf(gbnf);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  if (!g.ok()) return false;
  GrammarState s = GrammarState::start(*g);
  return s.advance(*g, text);
}

std::string error_of(const std::string& gbnf) {
  auto g = parse_gbnf(gbnf);
  return g.ok() ? "" : g.status().message();
}

TEST(GbnfParser, AlternativesSequencesAndGrouping) {
  const std::string g = "root ::= (\"a\" | \"b\") \"c\" | \"xyz\"  # a comment\n";
  EXPECT_TRUE(matches(g, "ac"));
  EXPECT_TRUE(matches(g, "bc"));
  EXPECT_TRUE(matches(g, "xyz"));
  EXPECT_FALSE(matches(g, "c"));
  EXPECT_FALSE(matches(g, "abc"));
  EXPECT_FALSE(prefix_ok(g, "d"));
  EXPECT_TRUE(prefix_ok(g, "xy"));
  EXPECT_FALSE(matches(g, "xy"));  // a prefix is not a match
}

TEST(GbnfParser, RulesAcrossLinesAndNestedNewlines) {
  const std::string g =
      "# leading comment\n"
      "root ::= greeting \" \" name\n"
      "greeting ::= (\n  \"hi\" |\n  \"hello\"\n)\n"
      "name ::= [A-Z] [a-z]*\n";
  EXPECT_TRUE(matches(g, "hello Bob"));
  EXPECT_TRUE(matches(g, "hi X"));
  EXPECT_FALSE(matches(g, "hi bob"));
}

TEST(GbnfParser, Repetitions) {
  EXPECT_TRUE(matches("root ::= \"a\"*", ""));
  EXPECT_TRUE(matches("root ::= \"a\"*", "aaaa"));
  EXPECT_FALSE(matches("root ::= \"a\"+", ""));
  EXPECT_TRUE(matches("root ::= \"a\"+", "aaa"));
  EXPECT_TRUE(matches("root ::= \"a\"? \"b\"", "b"));
  EXPECT_TRUE(matches("root ::= \"a\"? \"b\"", "ab"));
  EXPECT_FALSE(matches("root ::= \"a\"? \"b\"", "aab"));
  const std::string r = "root ::= [0-9]{2,4}";
  EXPECT_FALSE(matches(r, "1"));
  EXPECT_TRUE(matches(r, "12"));
  EXPECT_TRUE(matches(r, "1234"));
  EXPECT_FALSE(prefix_ok(r, "12345"));
  EXPECT_TRUE(matches("root ::= \"ab\"{3}", "ababab"));
  EXPECT_FALSE(matches("root ::= \"ab\"{3}", "abab"));
  EXPECT_TRUE(matches("root ::= \"x\"{2,}", "xxxxxx"));
  EXPECT_FALSE(matches("root ::= \"x\"{2,}", "x"));
}

TEST(GbnfParser, CharacterClassesRangesAndNegation) {
  const std::string g = "root ::= [a-cx-z_] [^0-9\\]] .";
  EXPECT_TRUE(matches(g, "b!q"));
  EXPECT_TRUE(matches(g, "_a\xC3\xA9"));  // . matches any character: é
  EXPECT_FALSE(matches(g, "d!q"));
  EXPECT_FALSE(matches(g, "a5q"));
  EXPECT_FALSE(matches(g, "a]q"));
}

TEST(GbnfParser, EscapesInLiteralsAndClasses) {
  EXPECT_TRUE(matches(R"(root ::= "a\"b\\c\n\t\x41\u00e9")", "a\"b\\c\n\tA\xC3\xA9"));
  EXPECT_TRUE(matches(R"(root ::= [\x00-\x1F])", std::string(1, '\x07')));
  EXPECT_TRUE(matches(R"(root ::= "\U0001F600")", "\xF0\x9F\x98\x80"));
}

TEST(GbnfParser, RefusesBadGrammarsSayingWhere) {
  EXPECT_NE(error_of("root ::= foo").find("undefined rule 'foo'"), std::string::npos);
  EXPECT_NE(error_of("main ::= \"a\"").find("no 'root' rule"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"abc").find("unterminated string"), std::string::npos);
  EXPECT_NE(error_of("root ::= [abc").find("unterminated character class"), std::string::npos);
  EXPECT_NE(error_of("root ::= (\"a\"").find("expected ')'"), std::string::npos);
  EXPECT_NE(error_of("root = \"a\"").find("expected '::='"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"\nroot ::= \"b\"").find("defined twice"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"\\q\"").find("unknown escape"), std::string::npos);
  EXPECT_NE(error_of("root ::= [z-a]").find("range"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"{3,1}").find("n < m"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"{5000}").find("limit"), std::string::npos);
  EXPECT_NE(error_of("root ::= * \"a\"").find("nothing before it"), std::string::npos);
  EXPECT_NE(error_of("root ::= root \"a\" | \"b\"").find("left-recursive"), std::string::npos);
  EXPECT_NE(error_of("root ::= x \"a\"\nx ::= \"\" | root").find("left-recursive"), std::string::npos);
  EXPECT_NE(error_of("root ::= (\"\")*").find("left-recursive"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\" )").find("1:14"), std::string::npos) << error_of("root ::= \"a\" )");
  EXPECT_NE(error_of(std::string(kMaxGrammarBytes + 1, ' ')).find("limit"), std::string::npos);
  // Expansion is capped too: nested repetitions multiply.
  std::string big = "root ::=";
  for (int i = 0; i < 20; ++i) big += " (\"abcdefgh\"{1000})";
  EXPECT_NE(error_of(big).find("limit"), std::string::npos);
}

TEST(GrammarMatcher, Utf8SplitAcrossPiecesWaitsForItsLastByte) {
  auto g = parse_gbnf("root ::= [\xC3\xA0-\xC3\xBF] \"!\"");  // à..ÿ
  ASSERT_TRUE(g.ok());
  GrammarState s = GrammarState::start(*g);
  EXPECT_TRUE(s.accepts(*g, "\xC3"));          // could begin é
  EXPECT_FALSE(s.accepts(*g, "\xC4"));         // U+0100..: out of the class
  EXPECT_FALSE(s.accepts(*g, "\xA9"));         // a stray continuation byte
  ASSERT_TRUE(s.advance(*g, "\xC3"));
  EXPECT_FALSE(s.complete());
  ASSERT_TRUE(s.advance(*g, "\xA9!"));
  EXPECT_TRUE(s.complete());
  EXPECT_FALSE(s.can_continue());
}

TEST(GrammarMatcher, OverlongAndInvalidUtf8IsRefused) {
  auto g = parse_gbnf("root ::= [ -~]+ | [^a]+");  // printable ASCII, or anything but 'a'
  ASSERT_TRUE(g.ok());
  GrammarState s = GrammarState::start(*g);
  EXPECT_FALSE(s.accepts(*g, "\xC0"));       // C0, C1: only overlong forms begin so
  EXPECT_FALSE(s.accepts(*g, "\xC1\xA1"));  // an overlong 'a'
  EXPECT_FALSE(s.accepts(*g, "\xE0\x81"));  // a 3-byte form of a 2-byte character
  EXPECT_FALSE(s.accepts(*g, "\xF5"));
  EXPECT_FALSE(s.next_bytes(*g).test(0xC0));
  EXPECT_FALSE(s.next_bytes(*g).test(0xF8));
  EXPECT_TRUE(s.accepts(*g, "\xE2\x82\xAC"));  // the euro sign
}

TEST(GrammarMatcher, CompleteAndCanContinue) {
  auto g = parse_gbnf("root ::= \"a\" \"b\"?");
  ASSERT_TRUE(g.ok());
  GrammarState s = GrammarState::start(*g);
  EXPECT_FALSE(s.complete());
  ASSERT_TRUE(s.advance(*g, "a"));
  EXPECT_TRUE(s.complete());
  EXPECT_TRUE(s.can_continue());
  ASSERT_TRUE(s.advance(*g, "b"));
  EXPECT_TRUE(s.complete());
  EXPECT_FALSE(s.can_continue());
  EXPECT_FALSE(s.accepts(*g, "b"));
}

TEST(GrammarMatcher, NextBytesFilterAgreesWithAccepts) {
  auto g = parse_gbnf(R"(root ::= "{" [ \t]* ("\"k\"" | [0-9]+ | [^a-z{]) "}")");
  ASSERT_TRUE(g.ok());
  GrammarState s = GrammarState::start(*g);
  ASSERT_TRUE(s.advance(*g, "{ "));
  for (int b = 0; b < 256; ++b) {
    const std::string one(1, static_cast<char>(b));
    GrammarState copy = s;
    if (copy.advance(*g, one)) {
      EXPECT_TRUE(s.next_bytes(*g).test(b)) << b;
    }
  }
  EXPECT_FALSE(s.next_bytes(*g).test('a'));
  EXPECT_TRUE(s.next_bytes(*g).test('7'));
}

TEST(GrammarMatcher, ACopyIsAFork) {
  auto g = parse_gbnf("root ::= \"ab\" | \"ac\"");
  ASSERT_TRUE(g.ok());
  GrammarState s = GrammarState::start(*g);
  ASSERT_TRUE(s.advance(*g, "a"));
  GrammarState fork = s;
  ASSERT_TRUE(fork.advance(*g, "b"));
  EXPECT_TRUE(fork.complete());
  EXPECT_FALSE(s.complete());
  EXPECT_TRUE(s.accepts(*g, "c"));
}

}  // namespace
}  // namespace swarm
