// The largest message a stage server reads from a Session stream, sized from
// what the node serves rather than fixed: gRPC refuses a longer message by its
// length prefix, before the node buffers or parses any of it. Under the fixed
// 64 MiB limit (net/wire_format.h) a caller could make a small model's node
// receive and parse megabytes of token ids many times a second, only to refuse
// each step once it was parsed.
//
// The bound is what the largest legitimate request can be, plus slack:
//  - a Step of the node's whole context (a prompt, or a replay after a
//    failover), with its hidden states in F32, the widest wire dtype;
//  - or a step sampled at every position (at most `max_sampled_rows` tokens)
//    whose drafts each carry a q of at most kMaxDraftProbEntries entries, or
//    an audit run of as many rows with every row sketched;
//  - either with `max_hops` next hops, one timing and one commitment (with
//    per-row hashes and sketches) per earlier stage (at most one per layer)
//    and a session id;
//  - or an OpenSession biasing every token of the vocabulary.
// and never more than net::kMaxMessageBytes.
#pragma once

#include <cstddef>

namespace swarm::node {

// Entries one draft's q (DraftProbs) is sized for: drafters send the few
// likeliest tokens (the gateway's model drafter sends 32).
inline constexpr int kMaxDraftProbEntries = 256;

struct RequestShape {
  int context = 0;   // positions one session may hold: the most tokens one step has
  int d_model = 0;   // width of a hidden state row
  int n_vocab = 0;
  int n_layer = 0;   // the model's layers: a chain has at most this many stages
  int max_hops = 0;  // next hops one Step may name
  int max_sampled_rows = 0;  // tokens of a step sampled at every position
  int max_session_id_bytes = 0;
};

// Bytes; at least 64 KiB, at most net::kMaxMessageBytes.
size_t max_request_bytes(const RequestShape& shape);

}  // namespace swarm::node
