// Precompiled header: torch/torch.h alone costs ~20 s per translation unit.
#pragma once
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>
#include <fmt/format.h>
#include <map>
#include <memory>
#include <string>
#include <vector>
