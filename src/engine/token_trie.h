// The tokens of a vocabulary by their bytes, as a trie: tokens that share a
// prefix share its nodes, so a grammar checks the prefix once for all of them
// (GrammarState::allowed_tokens) and drops a whole subtree at its first
// impossible byte.
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace swarm {

struct TokenTrie {
  struct Node {
    std::vector<std::pair<unsigned char, uint32_t>> children;  // byte -> node index
    std::vector<int32_t> tokens;                               // tokens whose bytes end here
  };
  std::vector<Node> nodes{Node{}};  // nodes[0]: the root (the empty prefix)

  void add(std::string_view bytes, int32_t token) {
    uint32_t at = 0;
    for (char c : bytes) {
      const auto b = static_cast<unsigned char>(c);
      uint32_t next = 0;
      for (const auto& [byte, child] : nodes[at].children)
        if (byte == b) next = child;
      if (next == 0) {
        next = static_cast<uint32_t>(nodes.size());
        nodes[at].children.emplace_back(b, next);
        nodes.emplace_back();
      }
      at = next;
    }
    nodes[at].tokens.push_back(token);
  }
};

}  // namespace swarm
