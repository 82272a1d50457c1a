// A model's layers as a line of text, for `swarm status`: one character per
// layer (or per run of layers, for models deeper than the line), '#' where
// served, '.' where not, '+' where a run of layers is served only in part.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace swarm {

// The layers [first, last) of a model of n_layer layers, `width` characters at
// most.
std::string layer_bar(int n_layer, int first, int last, int width = 48);

// What all of `ranges` ([first, last) each) cover together.
std::string coverage_bar(int n_layer, const std::vector<std::pair<int, int>>& ranges, int width = 48);

}  // namespace swarm
