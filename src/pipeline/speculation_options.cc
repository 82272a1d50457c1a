#include "pipeline/speculation_options.h"

namespace swarm {

Result<SpeculationOptions> parse_speculate(const std::string& spec) {
  SpeculationOptions o;
  if (spec == "off") {
    o.mode = SpeculationMode::kOff;
  } else if (spec == "auto") {
    o.mode = SpeculationMode::kAuto;
  } else if (spec == "ngram") {
    o.mode = SpeculationMode::kNgram;
  } else if (spec.rfind("draft:", 0) == 0 && spec.size() > 6) {
    o.mode = SpeculationMode::kDraft;
    o.draft_model = spec.substr(6);
  } else {
    return Status::InvalidArgument("--speculate: '" + spec +
                                   "' is not auto, off, ngram or draft:MODEL");
  }
  return o;
}

std::string mode_name(SpeculationMode mode) {
  switch (mode) {
    case SpeculationMode::kOff:
      return "off";
    case SpeculationMode::kAuto:
      return "auto";
    case SpeculationMode::kNgram:
      return "ngram";
    case SpeculationMode::kDraft:
      return "draft";
  }
  return "?";
}

}  // namespace swarm
