#include "distillery/models/zoo.h"

namespace distillery {
// Filled in by the Transformer model family.
void register_transformer_models(std::vector<ZooEntry>& zoo) {}
}  // namespace distillery
