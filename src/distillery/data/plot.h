// Line plots rasterised to PNG (training curves) with the built-in bitmap font.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace distillery {

struct Series {
  std::string name;
  std::vector<double> x, y;  // same length; non-finite points break the line
};

// uint8 [height, width, 3]: axes with tick labels, light grid lines, one coloured line per
// series, title, axis labels and a legend. Ranges cover all finite points, rounded out to ticks.
torch::Tensor render_line_plot(const std::string& title, const std::string& x_label,
                               const std::string& y_label, const std::vector<Series>& series,
                               int64_t width = 800, int64_t height = 500);

void write_line_plot(const std::string& path, const std::string& title, const std::string& x_label,
                     const std::string& y_label, const std::vector<Series>& series,
                     int64_t width = 800, int64_t height = 500);

// "Nice" tick values (steps of 1, 2 or 5 times a power of ten) covering [low, high].
std::vector<double> nice_ticks(double low, double high, int max_ticks = 8);

}  // namespace distillery
