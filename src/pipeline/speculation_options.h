// How a gateway speculates (swarm gateway --speculate, doc/speculation.md).
#pragma once

#include <memory>
#include <string>

#include "engine/status.h"
#include "pipeline/spec_controller.h"

namespace swarm {

class DraftModel;

enum class SpeculationMode {
  kOff,    // plain decoding
  kAuto,   // n-gram drafts; the controller decides whether to speculate at all
  kNgram,  // n-gram drafts, always (the controller sets width and depth)
  kDraft,  // a draft model's drafts, always (the controller sets width and depth)
};

struct SpeculationOptions {
  SpeculationMode mode = SpeculationMode::kOff;
  std::string draft_model;            // kDraft: the model file
  std::shared_ptr<DraftModel> draft;  // kDraft: that model, loaded
  int max_draft = 16;                 // unverified drafts in flight at most
  SpecConfig controller;
};

// "off", "auto", "ngram" or "draft:MODEL" (the model is not loaded here);
// InvalidArgument otherwise.
Result<SpeculationOptions> parse_speculate(const std::string& spec);
std::string mode_name(SpeculationMode mode);

}  // namespace swarm
