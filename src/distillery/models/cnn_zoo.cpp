#include "distillery/models/zoo.h"

namespace distillery {
// Filled in by the CNN model family.
void register_cnn_models(std::vector<ZooEntry>& zoo) {}
}  // namespace distillery
