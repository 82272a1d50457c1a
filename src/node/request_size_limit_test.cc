// The Session stream's message limit: a whole-context prompt or replay of the
// node's model fits, with room, and a message far beyond what the model can
// use does not; large models stay at the wire's fixed ceiling.
#include "node/request_size_limit.h"

#include <gtest/gtest.h>

#include "net/wire_format.h"
#include "swarm/v1/stage.pb.h"

namespace swarm::node {
namespace {

// The shipped kjv-target model's shape, with the stage server's caps.
RequestShape small_model() {
  return {.context = 1024, .d_model = 256, .n_vocab = 4096, .n_layer = 8, .max_hops = 64,
          .max_sampled_rows = 256, .max_session_id_bytes = 256};
}

TEST(RequestSizeLimit, AWholeContextStepWithEveryOptionalPartFits) {
  const RequestShape s = small_model();
  v1::StageRequest r;
  v1::Step* step = r.mutable_step();
  step->set_session_id(std::string(s.max_session_id_bytes, 's'));
  for (int i = 0; i < s.context; ++i) step->add_tokens(s.n_vocab - 1);
  step->mutable_hidden()->add_shape(s.context);
  step->mutable_hidden()->add_shape(s.d_model);
  step->mutable_hidden()->mutable_data()->assign(size_t(s.context) * s.d_model * 4, '\x7f');
  for (int i = 0; i < s.max_hops; ++i) {
    v1::Hop* h = step->add_next_hops();
    h->set_address(std::string(1024, 'a'));
    h->set_public_key(std::string(32, 'k'));
    h->set_first_layer(s.n_layer);
    h->set_last_layer(s.n_layer);
  }
  for (int i = 0; i < s.n_layer; ++i) {
    v1::StageTiming* t = step->add_timings();
    t->set_address(std::string(1024, 'a'));
    t->set_queue_us(INT64_MAX);
    t->set_compute_us(INT64_MAX);
    t->set_batch_tokens(INT32_MAX);
    // An audit step: every stage before commits with a hash per row.
    v1::Commitment* c = step->add_commitments();
    c->set_model_id(std::string(64, 'm'));
    c->set_session_id(std::string(256, 's'));
    c->set_step_id(UINT64_MAX);
    c->set_position(INT32_MAX);
    c->set_n_tokens(INT32_MAX);
    for (std::string* h : {c->mutable_prefix_hash(), c->mutable_input_hash(), c->mutable_output_hash(),
                           c->mutable_tokens_hash(), c->mutable_public_key()})
      *h = std::string(32, 'h');
    c->set_signature(std::string(64, 'g'));
    for (int row = 0; row < s.context; ++row) {
      c->add_input_rows(std::string(32, 'i'));
      c->add_output_rows(std::string(32, 'o'));
    }
  }
  EXPECT_LE(r.ByteSizeLong(), max_request_bytes(s));
}

TEST(RequestSizeLimit, TheMostDraftsWithTheirProbabilitiesFit) {
  const RequestShape s = small_model();
  v1::StageRequest r;
  v1::Step* step = r.mutable_step();
  step->set_session_id("d");
  for (int i = 0; i < s.max_sampled_rows; ++i) {
    step->add_tokens(s.n_vocab - 1);
    v1::DraftProbs* q = step->add_draft_probs();
    for (int j = 0; j < kMaxDraftProbEntries; ++j) {
      q->add_ids(s.n_vocab - 1 - j);
      q->add_probs(1.0f / kMaxDraftProbEntries);
    }
  }
  step->set_n_drafts(s.max_sampled_rows);
  step->mutable_hidden()->mutable_data()->assign(size_t(s.max_sampled_rows) * s.d_model * 4, 'x');
  EXPECT_LE(r.ByteSizeLong(), max_request_bytes(s));
}

// Commitments with sketches (chains with an inexact node): a whole-context
// step with one row in 32 sketched, and an audit run of the longest sketched
// length with every row sketched wide, both from every stage before.
TEST(RequestSizeLimit, StepsWithSketchesFit) {
  const RequestShape s = small_model();
  for (const bool audit_run : {false, true}) {
    const int n = audit_run ? s.max_sampled_rows : s.context;
    v1::StageRequest r;
    v1::Step* step = r.mutable_step();
    step->set_session_id("k");
    step->set_sketches(true);
    step->set_row_hashes(audit_run);
    for (int i = 0; i < n; ++i) step->add_tokens(s.n_vocab - 1);
    step->mutable_hidden()->mutable_data()->assign(size_t(n) * s.d_model * 4, 'x');
    for (int k = 0; k < s.n_layer; ++k) {
      v1::Commitment* c = step->add_commitments();
      c->set_signature(std::string(64, 'g'));
      for (int row = 0; row < n; ++row) {
        c->add_input_rows(std::string(32, 'i'));
        c->add_output_rows(std::string(32, 'o'));
        if (!audit_run && row % 32 != 31 && row != n - 1) continue;
        v1::RowSketch* sk = c->add_sketches();
        sk->set_position(INT32_MAX);
        for (int e = 0; e < (audit_run ? 32 : 16); ++e) {
          sk->add_indices(INT32_MAX);
          sk->add_values(1.0f);
        }
      }
    }
    EXPECT_LE(r.ByteSizeLong(), max_request_bytes(s)) << (audit_run ? "audit run" : "step");
  }
}

TEST(RequestSizeLimit, AnOpenSessionBiasingTheWholeVocabularyFits) {
  const RequestShape s = small_model();
  v1::StageRequest r;
  v1::OpenSession* o = r.mutable_open();
  o->set_session_id(std::string(s.max_session_id_bytes, 's'));
  for (int i = 0; i < s.n_vocab; ++i) {
    v1::LogitBias* b = o->mutable_sampling()->add_logit_bias();
    b->set_token(i);
    b->set_bias(-1e30f);
  }
  EXPECT_LE(r.ByteSizeLong(), max_request_bytes(s));
}

TEST(RequestSizeLimit, TwoMillionTokensDoNotFitASmallModel) {
  // The soak benchmark's `huge` step: 2M one-byte token ids, about 2 MB.
  EXPECT_LT(max_request_bytes(small_model()), size_t{2'000'000});
  EXPECT_GE(max_request_bytes({}), size_t{64} << 10);
}

TEST(RequestSizeLimit, ALargeModelGetsTheWiresCeiling) {
  RequestShape big = small_model();
  big.context = 8192;
  big.d_model = 8192;
  EXPECT_EQ(max_request_bytes(big), size_t(net::kMaxMessageBytes));
}

}  // namespace
}  // namespace swarm::node
