// The grammar that makes a forced tool call certain: with tool_choice
// "required" or a named function, sampling is constrained (SamplingParams::
// grammar) to the format's call syntax (engine/chat_tools.h, tool_call_syntax),
// so the output is a well-formed call to an allowed function whose arguments
// follow the function's parameters schema.
#pragma once

#include <string>

#include "api/tool_calls.h"
#include "engine/status.h"

namespace swarm {

// GBNF text for `request`'s forced call in `format`; "" when the request does
// not force one. Parameters that use what the schema converter cannot enforce
// (engine/json_schema_grammar.h: `pattern`, `minimum`, ...) make that tool's
// arguments any JSON object instead: the call itself is still certain, its
// arguments are what the model writes. An error only when even that grammar is
// over the caps (engine/grammar.h); the caller then samples unconstrained.
//
// kMistral's [TOOL_CALLS] is a control token, which a grammar never lets the
// sampler choose: its grammar is the call array alone, which the reader of
// calls takes without the marker.
Result<std::string> forced_call_grammar(const ToolRequest& request, ToolFormat format);

}  // namespace swarm
